"""WL101 ill-conditioned: condition number σmax/σmin of weight matrices."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL101",
    name="ill-conditioned",
    severity=Severity.ERROR,
    summary="Condition number σmax/σmin of a weight matrix is too large (numerical instability).",
    statistics=("spectral",),
    scope="matrix",
    applies_to="weight matrices (2-D and up; conv kernels as out × in·kh·kw; HF Conv1D transposed)",
    thresholds={"error": 1e5, "warning": 1e4},
    options_doc="`error`, `warning`: condition numbers above which the finding has that severity "
                "(the guide's 1e5 critical and 1e4 warning). Set a level to `null` to turn it off.",
    what_it_does="""
Computes every singular value of the weight matrix once (float64; a real SVD where the spectrum
spans more than 1e6, since a Gram matrix cannot resolve σmin there) and reports the condition
number σmax/σmin. A σmin that is zero to float64 precision gives an infinite condition number; the
message then gives the numerical rank (singular values above σmax·max(m, n)·eps(float32)).
All-zero rows and columns (dead units, reported by WL501) are left out: they only add zero singular
values, and the condition number is that of the live part of the matrix.
""",
    why_bad="""
A large condition number means the layer amplifies some input directions enormously more than
others. Small relative errors (fp16 rounding, int8 quantization, a slightly high learning rate)
in the weak directions are magnified in the strong ones: the guide lists NaN/Inf in fp16 mixed
precision, weights that blow up at moderate learning rates, fine-tuning that needs ~1e-6 learning
rates, and large int8 error. A rank-deficient matrix (infinite condition number) has lost
capacity outright.

Calibration: trained transformers do reach the warning level. On the real all-MiniLM-L6-v2 five
of 37 square attention matrices lie between 1e4 and 1e5 (the largest 81,822) and none above 1e5,
so that healthy model gets warnings but no error. The guide reports 129,498 for GPT-2's
`h.9.attn.c_proj`.
""",
    how_to_fix="""
Wrap the layer in LayerNorm/RMSNorm, keep it in fp32 under mixed precision (autocast exclusion),
clip gradients (`max_norm=1.0`) and lower the learning rate. For a rank-deficient matrix, find
what zeroed or duplicated its rows (pruning, a bad merge) and re-initialize or retrain them.
""",
    references=("https://en.wikipedia.org/wiki/Condition_number",
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
    condition = spectral.get("condition_number")
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
        if severity is Severity.ERROR and rank < total:
            message += f"; numerical rank {rank} of {total}"
    message += ": fp16/int8 risk; keep it in fp32, add a norm layer, clip gradients, lower the learning rate"
    return RULE.finding(message, tensor=tensor, severity=severity, value=condition, threshold=threshold)
