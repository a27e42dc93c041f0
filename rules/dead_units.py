"""WL501 dead-units: all-zero output rows and input columns of weight matrices."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import indices as _indices

RULE = Rule(
    code="WL501",
    name="dead-units",
    severity=Severity.INFO,
    adapter_factors=False,
    summary="Output units (rows) or input features (columns) whose weights are all zero.",
    scope="matrix",
    applies_to="weight matrices (2-D and up; conv kernels as out × in·kh·kw; HF Conv1D transposed)",
    thresholds={"min_dead": 1, "listed": 10},
    options_doc="`min_dead`: report when at least this many rows or columns are zero. "
                "`listed`: how many indices the message shows (the report keeps them all).",
    what_it_does="""
Finds the output units of a weight matrix whose whole row is zero (the unit always outputs its
bias) and the input features whose whole column is zero (the layer ignores that input). Rows are
output units in PyTorch's (out, in) order; Hugging Face `Conv1D` weights, stored (in, out), are
transposed first; convolution kernels are flattened to out × (in·kh·kw).
""",
    why_bad="""
A dead unit costs compute and memory and contributes nothing. A few dead units are a pruning
opportunity (the guide rates them low risk); many, or a dead unit that should not be, point to a
bad initialization, a dying-ReLU collapse, over-strong weight decay, or a merge or pruning step that
zeroed the wrong rows.
""",
    how_to_fix="""
If the zeros are deliberate (structured pruning, a padding embedding row), suppress the finding or
prune the units for real. Otherwise re-initialize the units, check the optimizer's weight decay and
the activation function (LeakyReLU/GELU instead of ReLU).
""",
    references=("https://arxiv.org/abs/1903.06733",),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.matrix_options(RULE, tensor)
    if options is None:
        return None
    rows, columns = stats.sparsity["zero_rows"], stats.sparsity["zero_columns"]
    dead = max(len(rows), len(columns))
    if dead < options["min_dead"]:
        return None
    outputs, inputs = tensor.matrix_shape
    if len(rows) == outputs:
        return None  # the whole tensor is zero: WL503 constant-tensor reports it
    parts = []
    if rows:
        parts.append(f"{len(rows)} of {outputs} output units are all zero (rows {_indices(rows, options['listed'])})")
    if columns:
        parts.append(f"{len(columns)} of {inputs} input columns are all zero "
                     f"(columns {_indices(columns, options['listed'])})")
    message = "; ".join(parts)
    return RULE.finding(message, tensor=tensor, value=dead, threshold=options["min_dead"],
                        location={"rows": rows, "columns": columns})
