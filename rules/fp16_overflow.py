"""WL102 fp16-overflow: values beyond fp16's range, and non-zeros that flush to zero in fp16."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL102",
    name="fp16-overflow",
    severity=Severity.ERROR,
    summary="Values that become ±Inf (|w| ≥ 65520) or 0 (|w| ≤ 2^-25) when cast to fp16.",
    statistics=("precision",),
    applies_to="floating-point tensors not already stored in fp16",
    thresholds={"overflow_count": 0, "underflow_percentage": 1.0},
    options_doc="`overflow_count`: error when more values than this exceed ±65504. "
                "`underflow_percentage`: warning when more than this share (%) of the non-zero values "
                "would round to zero in fp16.",
    what_it_does="""
Counts the values that a cast to fp16 turns into ±Inf (error): fp16's largest finite value is
65504 and round-to-nearest sends every |w| ≥ 65520 to Inf. Also reports the share of non-zero
values at or below 2^-25, half of fp16's smallest subnormal, which round to exactly zero
(warning). The JSON also reports the share that would become fp16
subnormals (below 2^-14), where precision degrades.
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
    if options.get("underflow_percentage") is not None and underflow > options["underflow_percentage"]:
        findings.append(RULE.finding(
            f"{number(underflow)}% of the non-zero values ({precision['fp16_underflow_count']}) are at or below 2^-25 "
            "and round to 0 in fp16", tensor=tensor, severity=Severity.WARNING, value=underflow,
            threshold=options["underflow_percentage"]))
    return findings
