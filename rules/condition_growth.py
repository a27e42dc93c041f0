"""WL703 condition-growth: a matrix's condition number grew more than a hundredfold between checkpoints."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL703",
    scope="run",
    diff_only=True,
    name="condition-growth",
    severity=Severity.WARNING,
    summary="Between two checkpoints a weight matrix's condition number grew more than a hundredfold.",
    applies_to="`weightlint diff` with spectra (the default of the command line): weight matrices in both checkpoints",
    what_it_does="""
Compares the condition number σmax/σmin of each weight matrix in the two checkpoints and warns when
the new one is more than `warning` (default 100) times the old one.
""",
    why_bad="""
A condition number that grows by orders of magnitude between checkpoints means a few directions are
taking over the matrix: the layer is becoming unstable, and fp16 or int8 will lose its small
singular directions first.
""",
    how_to_fix="""
Lower the learning rate, add weight decay or spectral normalization for the layer, and compare with
earlier checkpoints (`weightlint watch`) to find where the growth started.
""",
    thresholds={"warning": 100.0},
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_pair(pair, context):
    options = context.options(RULE, pair.new)
    ratio = pair.stats.get("condition_number_ratio")
    if options is None or ratio is None or options["warning"] is None or ratio <= options["warning"]:
        return None
    return RULE.finding(f"condition number grew {number(ratio)}× (> {number(options['warning'])}×): "
                        f"{number(pair.stats['old_condition_number'])} → {number(pair.stats['new_condition_number'])}",
                        tensor=pair.new, value=ratio, threshold=options["warning"])
