"""WL100 non-finite: NaN and ±Inf values."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL100",
    name="non-finite",
    severity=Severity.ERROR,
    summary="The tensor contains NaN or ±Inf values.",
    applies_to="floating-point tensors (buffers excluded)",
    what_it_does="""
Counts NaN, +Inf and -Inf values in every floating-point tensor and reports the counts and the
index of the first non-finite value.
""",
    why_bad="""
One NaN poisons every activation it touches: the forward pass returns NaN, the loss is NaN and
training diverges for good. Inf usually comes from an overflow (fp16 training, a bad optimizer step)
and turns into NaN at the next operation.
""",
    how_to_fix="""
Go back to the last checkpoint without non-finite values and resume with a lower learning rate,
gradient clipping (`max_norm=1.0`), and bf16 or fp32 instead of fp16 for the layer that overflowed.
If the file was converted, re-run the conversion: values beyond ±65504 become Inf when cast to fp16.
""",
    references=("https://pytorch.org/docs/stable/amp.html",),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    if context.options(RULE, tensor) is None or not tensor.is_judged:
        return None
    finite = stats.finite
    if finite["nonfinite_count"] == 0:
        return None
    parts = [f"{finite[key]} {label}" for key, label in
             (("nan_count", "NaN"), ("posinf_count", "+Inf"), ("neginf_count", "-Inf")) if finite[key]]
    first = finite["first_nonfinite_index"]
    return RULE.finding(
        f"{' and '.join(parts)} of {tensor.numel} values; first at index {first}",
        tensor=tensor,
        value=finite["nonfinite_count"],
        threshold=0,
        location={"index": first},
    )
