"""WL203 dynamic-range: max|w| / mean|w| and kurtosis."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL203",
    name="dynamic-range",
    severity=Severity.INFO,
    adapter_factors=False,  # an info for int8: LoRA factors are kept in 16-bit; WL803 judges their shape
    summary="The largest weight is far larger than the typical one (max|w| / mean|w|), or a few values are isolated spikes.",
    statistics=("quantization",),
    scope="matrix",
    applies_to="weight matrices with at least `min_size` values",
    thresholds={"info": 100.0, "spike_warning": 100.0, "min_size": 4096},
    options_doc="`info`: dynamic range above which the rule reports. `spike_warning`: a warning when the largest "
                "deviation from the median is more than this many times the 8th largest (an isolated spike). "
                "`min_size`: smaller tensors are skipped.",
    what_it_does="""
Reports `dynamic_range = max|w| / mean|w|` (the guide's "135× the mean" for GPT-2's `wpe`) with the
tensor's Pearson kurtosis E[(w−μ)⁴]/σ⁴ (3 for a Gaussian). A Gaussian matrix of a million values
has a dynamic range of about 6.

It also looks for **isolated spikes**: `spike_ratio`, the largest distance from the median over
the 8th largest. Tails of trained weights are continuous, so a few top values stand close together:
on the 529 matrices of the calibration corpus the ratio is at most 23.8 (a Silero VAD reparam
conv), 12.9 on MiniLM. Above `spike_warning` (100) a handful of values stand apart from everything
else: a warning.
""",
    why_bad="""
A few very large weights force a coarse quantization scale on every other weight and dominate the
layer's output; they often mark "outlier features" that quantization must treat specially. This
is information, not a defect: many healthy transformers have such layers (all-MiniLM-L6-v2's FFN
output projections reach 100–230).

An isolated spike is different: one value (a flipped exponent bit, a corrupted write, a training
step that blew up one weight) that alone sets the per-tensor int8 scale, so every other weight of
the tensor rounds to a handful of levels, and that dominates the layer's output.
""",
    how_to_fix="""
Nothing, if the model works; when quantizing, treat the layer per channel or keep it in fp16
(see WL201/WL202 for the quantitative verdict). For an isolated spike: compare the value with an
earlier checkpoint or the original export; restore it, or clip it to the tail of the others.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
weight = rng.normal(0, 0.02, (128, 128)).astype(np.float32)
weight[7, 11] = 1000 * np.abs(weight).max()  # one corrupted value
tensors = {"layer.weight": weight}
""",
    example_output="""
WL203 warning layer.weight: isolated spike: the largest |w − median| is 1,149× the 8th largest (> 100×); max|w| 80.46: it alone sets the int8 scale; compare it with an earlier checkpoint or the original export
""",
    references=("https://arxiv.org/abs/2105.06990",),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.matrix_options(RULE, tensor)
    if options is None:
        return None
    quantization = stats.quantization
    spike, limit = quantization.get("spike_ratio"), options.get("spike_warning")
    if spike is not None and limit is not None and spike > limit:
        return RULE.finding(
            f"isolated spike: the largest |w − median| is {number(spike)}× the 8th largest (> {number(limit)}×); "
            f"max|w| {number(stats.norms['max_abs'])}: it alone sets the int8 scale; compare it with an earlier "
            "checkpoint or the original export",
            tensor=tensor, severity=Severity.WARNING, value=spike, threshold=limit)
    dynamic_range = quantization.get("dynamic_range")
    graded = RULE.grade(dynamic_range, options)
    if graded is None:
        return None
    severity, threshold = graded
    return RULE.finding(
        f"max|w| is {number(dynamic_range)}× mean|w| (> {number(threshold)}×), kurtosis {number(quantization['kurtosis'])}",
        tensor=tensor, severity=severity, value=dynamic_range, threshold=threshold,
        kurtosis=quantization["kurtosis"])
