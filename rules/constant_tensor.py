"""WL503 constant-tensor: a weight matrix (or norm scale) that is all zero or constant."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number
from weightlint.roles import is_norm_scale

RULE = Rule(
    code="WL503",
    name="constant-tensor",
    severity=Severity.ERROR,
    adapter_factors=False,
    summary="A whole weight matrix is zero or a single repeated value: never initialized or not loaded.",
    applies_to="weight matrices, and 1-D norm scales that are all zero",
    what_it_does="""
Reports a weight matrix whose every value is equal (all zero, or one constant), and a
LayerNorm/RMSNorm scale vector that is all zero. Biases and norm scales that are constant are
normal (zeros, ones) and are not reported.
""",
    why_bad="""
A constant matrix has rank at most one: the layer maps every input to the same direction, or to
zero. It is the signature of weights that were never loaded (a key mismatch filled with zeros), a
failed initialization, or a conversion that lost the data. An all-zero norm scale zeroes the
whole residual branch.
""",
    how_to_fix="""
Check that the checkpoint's keys match the model's (see the loading warnings), re-export or
re-download the checkpoint, or initialize the layer properly.
""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    if context.options(RULE, tensor) is None or not tensor.is_judged or stats.finite["nonfinite_count"]:
        return None
    norms = stats.norms
    if norms["min"] != norms["max"]:
        return None
    value = norms["max"]
    if tensor.is_matrix:
        what = "every value is 0" if value == 0 else f"every value is {number(value)}"
        return RULE.finding(f"{what} ({tensor.numel} values): the weights were never initialized or not loaded",
                            tensor=tensor, value=value)
    if value == 0 and is_norm_scale(tensor.name, tensor.ndim):
        return RULE.finding("the norm scale is all zero: this normalization outputs zeros", tensor=tensor, value=0.0)
    return None
