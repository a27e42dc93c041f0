"""WL007 unsupported-tensor: a tensor weightlint can list but not turn into numbers to check."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL007",
    scope="run",
    name="unsupported-tensor",
    severity=Severity.INFO,
    summary="A tensor is stored in a type weightlint cannot decode, so its values are not checked.",
    applies_to="GGUF tensors of a quantization type the installed gguf package cannot dequantize; "
               "ONNX initializers of string or packed sub-byte types",
    what_it_does="""
Reports each tensor whose storage type weightlint cannot convert to numbers: a GGUF quantization
type for which the installed `gguf` package has no dequantizer (for example `Q8_1`, `Q8_K`, or a
type newer than the package), or an ONNX initializer holding strings or packed 4-bit/2-bit values.
The rest of the file is checked as usual.
""",
    why_bad="""
Nothing is wrong with the tensor as far as weightlint knows; the finding says that its values were
not checked, so a clean report does not vouch for it.
""",
    how_to_fix="""
Upgrade the `gguf` package (`pip install -U gguf`), which gains dequantizers as llama.cpp adds
types, or lint the float checkpoint the file was converted from.
""",
    references=("https://github.com/ggml-org/llama.cpp/blob/master/gguf-py/README.md",),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_file_problem(problem, context):
    if problem.kind != "unsupported-tensor" or context.options(RULE, problem) is None:
        return None
    return RULE.finding(problem.reason, file=problem.file, tensor=problem.tensor, **problem.detail)
