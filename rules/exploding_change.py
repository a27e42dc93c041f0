"""WL701 exploding-change: a tensor's norm grew more than tenfold between checkpoints, or went NaN."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL701",
    scope="run",
    diff_only=True,
    name="exploding-change",
    severity=Severity.ERROR,
    summary="Between two checkpoints a tensor's L2 norm grew more than tenfold, or its values became NaN/Inf.",
    applies_to="`weightlint diff`: every floating tensor present, with one shape, in both checkpoints",
    what_it_does="""
Compares each tensor of the new checkpoint with the same tensor of the old one. Reports an error
when the ratio of L2 norms ‖NEW‖/‖OLD‖ (the guide's `l2_norm_ratio`) exceeds `error` (default 10),
or when the new tensor holds NaN or ±Inf values that the old one did not. A tensor whose old norm
is zero (a zero-initialized bias, a LoRA B matrix) has no ratio and is not judged here.
""",
    why_bad="""
Weights that grow tenfold between two checkpoints are the signature of a diverging run: the
learning rate is too high, gradients exploded, or a loss spike corrupted the optimizer state. The
checkpoints after it are usually lost; stopping early saves the compute.
""",
    how_to_fix="""
Stop the run and resume from the last healthy checkpoint with the learning rate lowered (the guide
says 10×), gradient clipping (`max_grad_norm`), and a longer warm-up.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
old = {"layer.weight": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32)}
new = {"layer.weight": old["layer.weight"] * 12}  # twelve times the norm one interval later
""",
    example_output="""
WL701 error layer.weight: L2 norm grew 12× (> 10×) since the old checkpoint (1.277 → 15.32): the run is diverging
""",
    thresholds={"error": 10.0, "matrices_only": 1},
    options_doc="""`matrices_only` (1: on) judges the ratio on weight matrices only: biases and norm parameters
start at 0 or 1 and move by large factors early in a healthy run (a GPT-2 `ln_f.bias` doubles
between steps 10 and 20 at learning rate 1e-3). NaN/Inf is reported for every tensor.""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_pair(pair, context):
    options = context.options(RULE, pair.new)
    if options is None:
        return None
    stats = pair.stats
    if not stats["finite"] and not stats["new_finite"]:
        return RULE.finding("the new checkpoint has NaN or ±Inf values in this tensor: the run diverged",
                            tensor=pair.new, value="non-finite")
    ratio = stats.get("l2_norm_ratio")
    if options["matrices_only"] and not pair.new.is_matrix:
        return None
    if ratio is None or options["error"] is None or ratio <= options["error"]:
        return None
    return RULE.finding(f"L2 norm grew {number(ratio)}× (> {number(options['error'])}×) since the old checkpoint "
                        f"({number(stats['old_l2'])} → {number(stats['new_l2'])}): the run is diverging",
                        tensor=pair.new, value=ratio, threshold=options["error"])
