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
    example="""
import numpy as np

rng = np.random.default_rng(0)
old = {"layer.weight": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32)}
u, s, vh = np.linalg.svd(old["layer.weight"].astype(np.float64))
s[-1] /= 1e4  # the smallest direction collapses: same norm, 10,000 times the condition number
new = {"layer.weight": (u @ np.diag(s) @ vh).astype(np.float32)}
""",
    example_output="""
WL703 warning layer.weight: condition number grew 10,015× (> 100×): 205.2 → 2,054,963
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
