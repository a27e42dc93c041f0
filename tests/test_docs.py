"""Documentation that is generated must stay in sync with the code."""


def test_docs_rules_md_is_generated_from_the_rules():
    from pathlib import Path

    from weightlint import rulesdoc
    from weightlint.plugins import build_plugin_manager, collect_rules

    expected = rulesdoc.render(collect_rules(build_plugin_manager(load_entry_points=False)))
    actual = (Path(__file__).parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/rules.md is stale: python -m weightlint.rulesdoc > docs/rules.md"


def test_vendored_sarif_schema_is_the_official_one():
    from pathlib import Path

    import pytest

    tests = Path(__file__).parent
    official = tests.parent.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json"
    if not official.is_file():
        pytest.skip("the official SARIF schema of the design documents (../shared/schemas/) is not beside "
                    "this checkout; tests/data holds the vendored copy the reporter tests validate against")
    assert (tests / "data" / "sarif-schema-2.1.0.json").read_bytes() == official.read_bytes()
