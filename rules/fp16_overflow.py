"""WL102 fp16-overflow: values beyond fp16's range, and non-zeros that flush to zero in fp16."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number
from weightlint.stats import FP16_ZERO_AT_OR_BELOW

RULE = Rule(
    code="WL102",
    name="fp16-overflow",
    severity=Severity.ERROR,
    summary="Values that become ±Inf (|w| ≥ 65520) or 0 (|w| ≤ 2^-25) when cast to fp16.",
    statistics=("precision",),
    applies_to="floating-point tensors not already stored in fp16",
    thresholds={"overflow_count": 0, "underflow_percentage": 1.0, "underflow_energy": 1e-4},
    options_doc="`overflow_count`: error when more values than this exceed ±65504. "
                "`underflow_percentage` and `underflow_energy`: a warning when more than this share (%) of "
                "the non-zero values would round to zero in fp16 *and* they may carry more than this "
                "fraction of the tensor's energy Σw² (`null` turns either condition off).",
    what_it_does="""
Counts the values that a cast to fp16 turns into ±Inf (error): fp16's largest finite value is
65504 and round-to-nearest sends every |w| ≥ 65520 to Inf. Also reports the share of non-zero
values at or below 2^-25, half of fp16's smallest subnormal, which round to exactly zero
(warning), when they matter: together they may carry more than `underflow_energy` (1e-4, −40 dB)
of the tensor's energy. Their energy is bounded by count × 2^-50, so no extra pass is needed.
The JSON also reports the share that would become fp16 subnormals (below 2^-14), where
precision degrades.

Why the energy: trained CNNs hold filters that a following BatchNorm switched off, with weights
of 1e-8 and below. On CRAFT 1–31% of the non-zero values of 11 tensors flush to zero, yet they
carry at most 4e-15 of the energy: the cast changes the layer's output by far less than fp16's own
rounding (2^-24 ≈ 6e-8 relative). A layer scaled down wholesale, whose values mostly sit below
2^-25, is still reported.
""",
    why_bad="""
Casting such a checkpoint to fp16 for inference or mixed-precision training silently turns the
large values into Inf, and the first matmul into NaN. Values that flush to zero lose information
and can zero out whole units.
""",
    how_to_fix="""
Use bf16 (same range as fp32) instead of fp16, keep the layer in fp32, or rescale it (fold the
scale into the following norm layer). Look for the training instability that produced the
extreme values.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
overflow = rng.normal(0, 0.02, (64, 64)).astype(np.float32)
overflow[3, 5] = 1e5  # beyond fp16's 65504
scaled_down = rng.normal(0, 1e-8, (64, 64)).astype(np.float32)  # a layer scaled below fp16's range
tensors = {"big.weight": overflow, "tiny.weight": scaled_down}
""",
    example_output="""
WL102 error big.weight: 1 value is beyond fp16's range (|w| ≥ 65520, max |w| 100,000) and become ±Inf in fp16
WL102 warning tiny.weight: 99.68% of the non-zero values (4083) are at or below 2^-25 and round to 0 in fp16, up to 1 of the tensor's energy: keep it in bf16/fp32 or rescale it
""",
    references=("https://en.wikipedia.org/wiki/Half-precision_floating-point_format",),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.options(RULE, tensor)
    if options is None or not tensor.is_judged or tensor.dtype == "float16":
        return None
    precision = stats.precision
    findings = []
    overflow = precision["fp16_overflow_count"]
    if options.get("overflow_count") is not None and overflow > options["overflow_count"]:
        findings.append(RULE.finding(
            f"{overflow} {'value is' if overflow == 1 else 'values are'} beyond fp16's range (|w| ≥ 65520, max |w| {number(stats.norms['max_abs'])}) and become ±Inf in fp16",
            tensor=tensor, value=overflow, threshold=options["overflow_count"]))
    underflow = precision["fp16_underflow_percentage"]
    energy = _underflow_energy_bound(precision["fp16_underflow_count"], stats.norms["l2"])
    share_limit, energy_limit = options.get("underflow_percentage"), options.get("underflow_energy")
    enabled = share_limit is not None or energy_limit is not None
    if (enabled and underflow > 0 and (share_limit is None or underflow > share_limit)
            and (energy_limit is None or energy > energy_limit)):
        findings.append(RULE.finding(
            f"{number(underflow)}% of the non-zero values ({precision['fp16_underflow_count']}) are at or below 2^-25 "
            f"and round to 0 in fp16, up to {number(energy)} of the tensor's energy: keep it in bf16/fp32 or "
            "rescale it", tensor=tensor, severity=Severity.WARNING, value=underflow, threshold=share_limit,
            underflow_energy=energy))
    return findings


def _underflow_energy_bound(count: int, l2: float) -> float:
    """At most what the flushed values carry of Σw²: each is at most 2^-25 in magnitude."""
    if not count:
        return 0.0
    return min(1.0, count * FP16_ZERO_AT_OR_BELOW**2 / l2**2) if l2 > 0 else 1.0
