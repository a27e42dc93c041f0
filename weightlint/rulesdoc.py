"""docs/rules.md, generated from the rules' own documentation (``python -m weightlint.rulesdoc``)."""

from __future__ import annotations

import sys

HEADER = """# Rules

Generated from each rule's declaration by `python -m weightlint.rulesdoc > docs/rules.md`; the
same text is what `weightlint explain CODE` prints and what the SARIF report carries. A test keeps
this file in sync.

| code | name | default severity | summary |
|---|---|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(rules) -> str:
    table = "".join(f"| [{r.code}](#{r.code.lower()}-{r.name}) | {r.name} | {r.severity} | {_cell(r.summary)} |\n"
                    for r in rules.values())
    sections = "\n".join(rule.documentation().replace("# ", "## ", 1).replace("\n## ", "\n### ")
                         for rule in rules.values())
    return HEADER + table + "\n" + sections


def main() -> None:
    from weightlint.plugins import build_plugin_manager, collect_rules

    sys.stdout.write(render(collect_rules(build_plugin_manager(load_entry_points=False))))


if __name__ == "__main__":
    main()
