"""WL201 extreme-outliers: share of weights beyond 3σ (robust σ)."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL201",
    name="extreme-outliers",
    severity=Severity.ERROR,
    summary="Too many weights lie beyond 3σ of the bulk: int8 quantization will lose the bulk's precision.",
    statistics=("quantization", "dispersion"),
    scope="matrix",
    applies_to="weight matrices with at least `min_size` values, not already stored quantized (GGUF Q4_1, Q8_0 …)",
    thresholds={"error": 10.0, "warning": 1.0, "only_if_sqnr_below": 30.0, "dense_warning": 10.0,
                "dense_max_dispersion": 1.5, "min_size": 4096},
    profiles={"guide": {"only_if_sqnr_below": None, "dense_warning": None}},
    options_doc="`error`, `warning`: outlier shares (%) for each severity (the guide's 10% and 1%). "
                "`only_if_sqnr_below`: a finding also needs the per-channel int8 SQNR (dB) below this, i.e. "
                "outliers that no int8 scheme absorbs; `null` (as under `profile: guide`) judges the share "
                "alone. `dense_warning`: for dense matrices (Linear, Embedding, RNN; not conv kernels) a warning "
                "above this share (%) whatever the SQNR, when the values are scattered at random: rows and columns "
                "as even as i.i.d. entries give (dispersion below `dense_max_dispersion`). "
                "`min_size`: smaller tensors are skipped.",
    what_it_does="""
Measures `extreme_outlier_percentage`: the share of values farther than 3σ from the centre, where
the centre is the median and σ is 1.4826 × the median absolute deviation (equal to the standard
deviation for a Gaussian, but not inflated by the outliers themselves). When MAD is zero (more than
half the values equal), the mean and standard deviation are used. A Gaussian has 0.27% beyond 3σ.

Why robust: with a tensor's own mean and standard deviation, Chebyshev's inequality caps the share
beyond 3σ at 1/9 (11.1%), so the guide's 12.8% for GPT-2's `wpe` can only come from a robust scale.

Severity follows the guide's decision tree, where the share is read together with what int8
does to the layer: above 10% is an error and above 1% a warning, each only when the per-channel
int8 SQNR is also below 30 dB ("outliers > 1% and SQNR < 30 dB → keep fp16/bf16"). Under
`profile: guide` the share alone decides, as in the guide's health check.

Why the share alone is not the default: trained transformers routinely have 0.5–3% of their
weights beyond a robust 3σ (all-MiniLM-L6-v2: 0.26–3.03%), and peaked conv kernels, where ~40% of
the weights sit near zero and make the MAD tiny, have 10–43% (CREPE's `conv5` 42.6%, CRAFT's first
VGG block 23.7%, YOLOv8n's detection head 11%), yet every one of them quantizes at 31–46 dB per
channel. No robust scale separates them from corruption: a share of 15% means nothing for int8
until the SQNR says so.

Dense matrices are different. The weights of trained Linear, Embedding and RNN layers have a
Gaussian-like bulk with a modest excess tail: on the corpus 0.3–3% of a dense matrix typically
lies beyond a robust 3σ, at most 7.0% (Resemblyzer's projection; SmolLM2's first `attn_k` 6.3%),
except where the tail follows the structure: Resemblyzer's first LSTM input matrix has 13.4%, carried by some of its 40 mel-band
inputs, so its rows and columns are unequal (energy dispersion 1.94 and 1.65, see WL601). Values
scattered over random positions — a partial overwrite, a bad merge, a wrongly scaled shard — make
the rows and columns as even as i.i.d. entries (dispersion ≈ 1.0 for 15% planted outliers). So a
dense matrix with more than `dense_warning` (10%) beyond 3σ *and* both dispersions below
`dense_max_dispersion` (1.5) holds a second population of values: a warning even when int8 would
cope. Conv kernels (3-D and up, except an ONNX RNN's stacked weights) are left to the SQNR test. A
tensor corrupted by many extreme values also changes its norm, which WL301 compares with its
siblings.
""",
    why_bad="""
Symmetric absmax int8 spends its 255 levels on the range set by the largest values. When many
values are extreme, the scale is large and the bulk of small weights collapses onto a few levels:
the guide reports 20–50% accuracy drops after quantization (int8 perplexity 20.5 → 32.1 for GPT-2).
""",
    how_to_fix="""
Keep the layer in fp16/bf16, quantize per channel or per group, or use an outlier-aware method
(SmoothQuant, LLM.int8() mixed-precision decomposition, GPTQ/AWQ with small groups). `weightlint
--format json` lists the recommended precision per layer under `quantization.recommended`.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
weight = rng.normal(0, 0.02, (64, 1024)).astype(np.float32)
heavy = rng.random(weight.shape) < 0.02
weight[heavy] = np.sign(weight[heavy]) * 0.12  # 2% of the values at 6σ …
weight[np.arange(64), rng.integers(0, 1024, 64)] = 4.0  # … and one 200σ value per row sets its int8 scale
tensors = {"layer.weight": weight}
""",
    example_output="""
WL201 warning layer.weight: 2.313% of values lie beyond 3σ (σ = 0.0205, median/MAD) > 1%; int8 SQNR 22.97 dB per tensor, 22.97 dB per channel: keep it in fp16
""",
    references=("https://arxiv.org/abs/2211.10438", "https://arxiv.org/abs/2208.07339"),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.matrix_options(RULE, tensor)
    if options is None or tensor.stored_quantized:
        return None  # a GGUF Q4/Q8 tensor is already quantized: int8 advice does not apply
    quantization = stats.quantization
    share = quantization.get("extreme_outlier_percentage")
    graded = RULE.grade(share, options)
    if graded is None:
        return None
    severity, threshold = graded
    per_channel = quantization["sqnr_db_per_channel"]
    gate = options.get("only_if_sqnr_below")
    if gate is not None and (per_channel is None or per_channel >= gate):
        if not _second_population(tensor, share, stats.dispersion, options):
            return None
        dense = options["dense_warning"]
        return RULE.finding(
            f"{number(share)}% of values lie beyond 3σ (σ = {number(quantization['outlier_scale'])}, "
            f"{quantization['outlier_scale_method']}) > {number(dense)}%, scattered over rows and columns alike: a "
            f"second population of values in a dense matrix; int8 per channel still reaches {number(per_channel)} dB. "
            "Compare it with an earlier checkpoint or the original export",
            tensor=tensor, severity=Severity.WARNING, value=share, threshold=dense,
            recommended=quantization["recommended"])
    message = (f"{number(share)}% of values lie beyond 3σ (σ = {number(quantization['outlier_scale'])}, "
               f"{quantization['outlier_scale_method']}) > {number(threshold)}%; int8 SQNR "
               f"{number(quantization['sqnr_db'])} dB per tensor, {number(per_channel)} dB per channel: "
               f"keep it in {quantization['recommended']}")
    return RULE.finding(message, tensor=tensor, severity=severity, value=share, threshold=threshold,
                        recommended=quantization["recommended"])


def _second_population(tensor, share, dispersion, options) -> bool:
    """Many extreme values in a dense matrix, scattered as i.i.d. corruption is (not along features)."""
    dense, even = options.get("dense_warning"), options.get("dense_max_dispersion")
    if dense is None or share <= dense or (tensor.ndim >= 3 and not tensor.is_rnn_weight):
        return False
    rows, columns = dispersion.get("row_dispersion"), dispersion.get("column_dispersion")
    return even is None or (rows is not None and columns is not None and max(rows, columns) < even)
