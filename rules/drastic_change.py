"""WL702 drastic-change: a tensor's norm more than doubled or more than halved between checkpoints."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL702",
    scope="run",
    diff_only=True,
    name="drastic-change",
    severity=Severity.WARNING,
    summary="Between two checkpoints a tensor's L2 norm more than doubled or fell below half.",
    applies_to="`weightlint diff`: every floating tensor present, with one shape, in both checkpoints",
    what_it_does="""
Reports a warning when the ratio of L2 norms ‖NEW‖/‖OLD‖ is above `above` (default 2) or below
`below` (default 0.5), unless WL701 already reports it as exploding (above 10).
""",
    why_bad="""
Between consecutive checkpoints of a healthy run a tensor's norm moves by a few percent. A doubling
or halving means the optimizer took very large steps (learning rate, a loss spike), weight decay
collapsed the tensor, or the two files are not consecutive checkpoints of one run.
""",
    how_to_fix="""
Look at the loss curve around the new checkpoint. Lower the learning rate or add gradient clipping
if the run is unstable; check that the two files belong to one run.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
old = {"layer.weight": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32)}
new = {"layer.weight": old["layer.weight"] * 3}
""",
    example_output="""
WL702 warning layer.weight: L2 norm grew to 3× its old value (1.277 → 3.831; limits 0.5–2×)
""",
    thresholds={"above": 2.0, "below": 0.5, "exploding": 10.0, "matrices_only": 1},
    options_doc="""`exploding` is WL701's threshold: a larger ratio is left to WL701. `matrices_only` (1: on)
judges weight matrices only, as WL701 does: biases and norm parameters of a healthy run move by
large factors early on.""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_pair(pair, context):
    options = context.options(RULE, pair.new)
    ratio = pair.stats.get("l2_norm_ratio")
    if options is None or ratio is None or (options["exploding"] is not None and ratio > options["exploding"]):
        return None
    if options["matrices_only"] and not pair.new.is_matrix:
        return None
    if options["above"] is not None and ratio > options["above"]:
        threshold, verb = options["above"], "grew"
    elif options["below"] is not None and ratio < options["below"]:
        threshold, verb = options["below"], "fell"
    else:
        return None
    return RULE.finding(f"L2 norm {verb} to {number(ratio)}× its old value ({number(pair.stats['old_l2'])} → "
                        f"{number(pair.stats['new_l2'])}; limits {number(options['below'])}–{number(options['above'])}×)",
                        tensor=pair.new, value=ratio, threshold=threshold)
