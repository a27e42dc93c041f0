"""WL101 ill-conditioned: condition number σmax/σmin of weight matrices."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL101",
    name="ill-conditioned",
    severity=Severity.WARNING,
    adapter_factors=False,
    summary="The live part of a weight matrix has collapsed in rank, or (guide profile) its condition number is too large.",
    statistics=("spectral",),
    scope="matrix",
    applies_to="weight matrices (2-D and up; conv kernels as out × in·kh·kw; HF Conv1D transposed)",
    thresholds={"warning_if_rank_below": 0.5, "error": None, "warning": None},
    profiles={"guide": {"warning_if_rank_below": None, "error": 1e5, "warning": 1e4}},
    options_doc="`warning_if_rank_below`: a warning when the numerical rank of the live part is below "
                "this share of its full rank (rank collapse). `error`, `warning`: condition numbers above "
                "which the finding has that severity; off by default, the guide's 1e5 and 1e4 under "
                "`profile: guide`. Set a level to `null` to turn it off.",
    what_it_does="""
Computes every singular value of the weight matrix once (float64; a real SVD where the spectrum
spans more than 1e6, since a Gram matrix cannot resolve σmin there). All-zero rows and columns
(dead units, reported by WL501) are left out: they only add zero singular values.

By default it reports **rank collapse**: the rank of the live part below half of its full rank,
counting the singular values above what rounding the stored entries can produce (4·‖W‖F·u, u the
storage format's unit roundoff: 2^-24 for float32, 2^-8 for bfloat16). That bound does not grow
with σmax, so one huge weight does not make the rest of the matrix look like rounding noise. Such a matrix has lost most of its
capacity: a layer planted with its best rank-6 approximation (of 384) is reported, while no
healthy model of the calibration corpus comes near (the lowest ratio there is 0.98, in CRAFT's
VGG blocks, where BatchNorm switched off a few filters).

Under `profile: guide` it reports the condition number σmax/σmin itself: above 1e5 an error,
above 1e4 a warning, as the guide does.
""",
    why_bad="""
A matrix whose rank has collapsed maps its inputs onto a few directions: the layer has lost
capacity outright, usually through a bad merge, pruning, a factorization applied with too small a
rank, or a training collapse.

Why the condition number alone is not the default: the error that fp16 rounding or int8
quantization adds to a layer's *output* grows with the quantization step relative to the weights,
not with σmax/σmin. On the calibration corpus (docs/calibration.md) matrices with κ up to 3.9e7
(CRAFT, YOLOv8n, SmolLM2) lose no more output SQNR under fp16 or per-channel int8 than matrices
with κ ≈ 1e4; their large κ comes from filters that a following BatchNorm scales to almost zero,
or from one weak direction. κ matters when the matrix is *inverted* or trained further at a high
learning rate, which is why the guide's profile keeps it.
""",
    how_to_fix="""
For a rank collapse: find what produced it (a merge, a pruning or factorization step, a training
divergence) and restore the matrix from an earlier checkpoint or retrain it. If the low rank is by
design (a merged low-rank adapter), raise or turn off `warning_if_rank_below` for those tensors.

For a large condition number (guide profile): in training, keep the layer in fp32 under mixed
precision, wrap it in LayerNorm/RMSNorm and clip gradients; for a shipped checkpoint, measure the
layer's output error under the target precision before keeping it in fp32: κ alone does not
predict it.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
# A 64 × 64 layer collapsed onto 4 directions (a bad merge or factorization).
weight = rng.standard_normal((64, 4)) @ rng.standard_normal((4, 64))
tensors = {"layer.weight": weight.astype(np.float32)}
""",
    example_output="""
WL101 warning layer.weight: rank collapse: rank 4 of 64 above rounding noise (6.2% < 50%); the layer maps its inputs onto a few directions: restore it from an earlier checkpoint or retrain it
""",
    references=("https://en.wikipedia.org/wiki/Condition_number",
                "https://en.wikipedia.org/wiki/Rank_(linear_algebra)#Numerical_rank",
                "https://pytorch.org/docs/stable/amp.html"),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.matrix_options(RULE, tensor)
    if options is None or stats.norms["min"] == stats.norms["max"]:
        return None  # a constant matrix is WL503's finding
    spectral = stats.spectral
    if spectral.get("condition_number") is None:
        return None  # all zero, or skipped (non-finite values: WL100's finding)
    return _condition_finding(tensor, spectral, options) or _rank_finding(tensor, spectral, options)


def _condition_finding(tensor, spectral, options):
    condition = spectral["condition_number"]
    graded = RULE.grade(condition, options)
    if graded is None:
        return None
    severity, threshold = graded
    rank, total = spectral["numerical_rank"], spectral["total_rank"]
    if condition == float("inf"):
        message = f"σmin is 0: the matrix is rank-deficient (numerical rank {rank} of {total})"
    else:
        message = (f"condition number {number(condition)} > {number(threshold)} "
                   f"(σmax {number(spectral['sv_max'])}, σmin {number(spectral['sv_min'])})")
        if rank < total:
            message += f"; numerical rank {rank} of {total}"
    message += ("; in training keep it in fp32 and clip gradients; before shipping it in fp16/int8, "
                "measure the layer's output error (κ alone does not predict it)")
    return RULE.finding(message, tensor=tensor, severity=severity, value=condition, threshold=threshold)


def _rank_finding(tensor, spectral, options):
    bound = options.get("warning_if_rank_below")
    live = spectral.get("live_rank", spectral["total_rank"])
    rank = min(spectral["rank_above_noise"], live)
    if bound is None or rank >= bound * live:
        return None
    return RULE.finding(
        f"rank collapse: rank {rank} of {live} above rounding noise ({100 * rank / live:.1f}% < {100 * bound:g}%); "
        "the layer maps its inputs onto a few directions: restore it from an earlier checkpoint or retrain it",
        tensor=tensor, severity=Severity.WARNING, value=rank / live, threshold=bound,
        rank_above_noise=rank, live_rank=live)
