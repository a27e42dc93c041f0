"""WL704 stagnation: most tensors did not move between two checkpoints."""

from weightlint import Rule, Severity, hookimpl
from weightlint.diff.measures import movement
from weightlint.formatting import number

RULE = Rule(
    code="WL704",
    scope="run",
    diff_only=True,
    name="stagnation",
    severity=Severity.INFO,
    summary="Between two checkpoints most tensors did not move: the learning rate is zero or too low, or the model is frozen.",
    applies_to="`weightlint diff`: the whole model (one finding, with the share of tensors that did not move)",
    what_it_does="""
Counts the tensors that did not move between the two checkpoints and reports one finding when
their share reaches `min_share` (default 0.9). By default a tensor did not move when its relative
change ‖NEW−OLD‖/‖OLD‖ is at most `max_relative_change` (default 1e-6: rounding, not training).
Under `profile: guide` the guide's band on the norm ratio is used instead: 0.99 < ‖NEW‖/‖OLD‖ < 1.01
(`norm_ratio_band` 0.01), which also counts healthy fine-tuning steps as stalled.
""",
    why_bad="""
Checkpoints that do not differ cost a run its compute for nothing: the learning rate is zero (a
scheduler at its end, a typo), every layer is frozen, or the optimizer is not stepping (gradient
accumulation misconfigured, a `requires_grad=False` model, NaN gradients skipped by a scaler).
""",
    how_to_fix="""
Check the learning-rate schedule, which parameters require gradients, and that the optimizer holds
the model's parameters. Name the tensors meant to stay frozen under WL705's `frozen` option.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
old = {f"h.{i}.weight": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32) for i in range(4)}
new = {name: value.copy() for name, value in old.items()}  # learning rate 0: nothing moved
""",
    example_output="""
WL704 info None: 4 of 4 tensors (100%) did not move between the checkpoints (h.0.weight, h.1.weight, h.2.weight …): learning rate zero or too low, or the model frozen
""",
    thresholds={"max_relative_change": 1e-6, "norm_ratio_band": None, "min_share": 0.9},
    profiles={"guide": {"max_relative_change": None, "norm_ratio_band": 0.01}},
)


def did_not_move(stats: dict, options: dict) -> bool:
    """Whether a pair counts as not moving under these options."""
    change, ratio = movement(stats), stats.get("l2_norm_ratio")
    if options.get("max_relative_change") is not None and change is not None:
        return change <= options["max_relative_change"]
    if options.get("norm_ratio_band") is not None and ratio is not None:
        return abs(ratio - 1) < options["norm_ratio_band"]
    return False


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_diff(diff, context):
    if not context.active(RULE) or not diff.pairs:
        return None
    options = context.options(RULE)
    still = [pair for pair in diff.pairs if did_not_move(pair.stats, options)]
    share = len(still) / len(diff.pairs)
    if options["min_share"] is None or share < options["min_share"]:
        return None
    examples = ", ".join(pair.name for pair in still[:3]) + (" …" if len(still) > 3 else "")
    return [RULE.finding(f"{len(still)} of {len(diff.pairs)} tensors ({number(100 * share)}%) did not move between "
                         f"the checkpoints ({examples}): learning rate zero or too low, or the model frozen",
                         file=diff.pairs[0].file, value=share, threshold=options["min_share"],
                         still=len(still), compared=len(diff.pairs))]
