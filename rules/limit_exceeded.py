"""WL009 limit-exceeded: a file asks weightlint to read, allocate or build more than a documented limit."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL009",
    scope="file",
    name="limit-exceeded",
    severity=Severity.ERROR,
    summary="A file exceeds one of weightlint's limits on headers, counts, nesting or sizes, and is not read further.",
    applies_to="every file: safetensors headers, GGUF metadata, pickles inside zips, indexes, config.json",
    what_it_does="""
Bounds the time and memory one input can cost. A safetensors header longer than `header_bytes`, a
file with more than `tensors_per_file` tensors, a GGUF metadata array of more than `metadata_items`
items, a tensor with more than `tensor_dims` dimensions, a pickle that decompresses to more than
`pickle_bytes`, or a config.json asking for more than `skeleton_layers` layers is reported here and
not read further. The other files of the run are read as usual.
""",
    why_bad="""
No real checkpoint comes near these limits (docs/security.md lists the largest real values seen).
A file that exceeds one is broken or built to exhaust the memory or time of whoever opens it, and
the loader you use in training or serving will most likely not cope with it either.
""",
    how_to_fix="""
Check where the file comes from. If it is trusted and really that large, raise the limit under
`limits:` in weightlint.yaml (for example `limits: {tensors_per_file: 500000}`).
""",
    references=("docs/security.md",),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_file_problem(problem, context):
    if problem.kind != "limit-exceeded" or context.options(RULE, problem) is None:
        return None
    return RULE.finding(problem.reason, file=problem.file, tensor=problem.tensor, **problem.detail)
