"""Documentation that is generated must stay in sync with the code."""


def test_docs_rules_md_is_generated_from_the_rules():
    from pathlib import Path

    from weightlint import rulesdoc
    from weightlint.plugins import build_plugin_manager, collect_rules

    expected = rulesdoc.render(collect_rules(build_plugin_manager(load_entry_points=False)))
    actual = (Path(__file__).parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/rules.md is stale: python -m weightlint.rulesdoc > docs/rules.md"
