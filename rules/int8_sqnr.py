"""WL202 int8-sqnr: signal-to-quantization-noise ratio of symmetric int8."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL202",
    name="int8-sqnr",
    severity=Severity.WARNING,
    summary="int8 quantization of this matrix loses too much signal (SQNR in dB).",
    statistics=("quantization",),
    scope="matrix",
    applies_to="weight matrices with at least `min_size` values, not already stored quantized (GGUF Q4_1, Q8_0 …)",
    thresholds={"warning": 30.0, "min_size": 4096},
    options_doc="`warning`: per-tensor SQNR (dB) below which the rule reports. "
                "`min_size`: smaller tensors are skipped.",
    what_it_does="""
Quantizes the matrix to symmetric absmax int8 — scale = max|w|/127, q = clamp(round(w/scale),
−127, 127)·scale — and measures `sqnr_db = 10·log10(Σw² / Σ(w − q)²)`, the formula torch.ao and
torchao use. It also measures `sqnr_db_per_channel`, with one scale per output channel (row).

When the per-tensor SQNR is below 30 dB the rule reports, with the guide's decision tree as
advice: per-channel SQNR ≥ 30 dB → **info**, "use per-channel int8"; per-channel SQNR also below
30 dB → **warning**, "keep fp16/bf16 (or int16, SmoothQuant)". Above 40 dB with fewer than 0.1%
outliers, per-tensor int8 is safe (`quantization.recommended = "int8"` in the JSON).
""",
    why_bad="""
30 dB means the quantization noise carries 1/1000 of the signal's energy; below it, errors
accumulate layer after layer and accuracy drops measurably (the guide: SQNR 25.8 dB on GPT-2's
`wpe`, int8 perplexity 20.5 → 32.1).
""",
    how_to_fix="""
Quantize this layer per channel (most int8 backends support it for weights), per group, or keep
it in fp16/bf16. Outlier-aware methods (SmoothQuant, LLM.int8()) move or isolate the outliers.
""",
    references=("https://pytorch.org/ao/stable/index.html", "https://arxiv.org/abs/2211.10438"),
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
    per_tensor, per_channel = quantization.get("sqnr_db"), quantization.get("sqnr_db_per_channel")
    graded = RULE.grade(per_tensor, options, below=True)
    if graded is None:
        return None
    _, threshold = graded
    if per_channel is not None and per_channel >= threshold:
        severity, advice = Severity.INFO, f"per-channel int8 reaches {number(per_channel)} dB: quantize per channel"
    else:
        severity, advice = Severity.WARNING, (f"per-channel int8 only {number(per_channel)} dB: "
                                              "keep fp16/bf16, or use int16 or SmoothQuant")
    return RULE.finding(f"int8 SQNR {number(per_tensor)} dB per tensor < {number(threshold)} dB; {advice}",
                        tensor=tensor, severity=severity, value=per_tensor, threshold=threshold,
                        sqnr_db_per_channel=per_channel, recommended=quantization["recommended"])
