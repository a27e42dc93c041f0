"""A plugin that declares a rule code a built-in already owns (WL100): a usage error."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL100",
    name="my-non-finite",
    severity=Severity.ERROR,
    summary="Conflicts with the built-in WL100 (test plugin).",
    applies_to="nothing",
    what_it_does="Nothing.",
    why_bad="Nothing.",
    how_to_fix="Nothing.",
)


@hookimpl
def weightlint_rules():
    return [RULE]
