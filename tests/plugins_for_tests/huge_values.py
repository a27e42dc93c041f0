"""A third-party rule, written only with the public API: weightlint.Rule + weightlint.hookimpl."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL990",
    name="huge-values",
    severity=Severity.WARNING,
    summary="A value's magnitude exceeds max_abs (test plugin).",
    applies_to="floating-point tensors",
    thresholds={"max_abs": 100.0},
    what_it_does="Flags tensors whose largest finite magnitude exceeds `max_abs`.",
    why_bad="Test plugin: huge weights saturate activations.",
    how_to_fix="Test plugin: rescale the tensor.",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.options(RULE)
    if options is None or not tensor.is_judged:
        return None
    max_abs = stats.norms["max_abs"]
    if max_abs <= options["max_abs"]:
        return None
    return RULE.finding(f"max |w| = {max_abs:g} exceeds {options['max_abs']:g}", tensor=tensor,
                        value=max_abs, threshold=options["max_abs"])
