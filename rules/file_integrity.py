"""WL001 unreadable-file, WL002 unsafe-pickle, WL006 index-mismatch: problems with the files."""

from weightlint import Rule, Severity, hookimpl

UNREADABLE_FILE = Rule(
    code="WL001",
    scope="file",
    name="unreadable-file",
    severity=Severity.ERROR,
    summary="A checkpoint file (or one tensor in it) cannot be read.",
    applies_to="every file named on the command line or found in a folder",
    what_it_does="""
Reports a file that weightlint cannot read as a checkpoint: a truncated or corrupt safetensors file,
a bad header, a pickle that is not a PyTorch checkpoint, a format this build cannot read. The other
files of the run are still scanned.
""",
    why_bad="""
A checkpoint that weightlint cannot read will most likely fail to load in training or serving too,
or it is not the file you think it is (an interrupted upload, a Git LFS pointer, an HTML error page
saved under a `.bin` name).
""",
    how_to_fix="""
Re-download or re-export the file and compare its size and hash with the source. For Git LFS
checkouts run `git lfs pull`. Convert exotic formats to safetensors.
""",
    references=("https://huggingface.co/docs/safetensors/index",),
)

UNSAFE_PICKLE = Rule(
    code="WL002",
    scope="file",
    name="unsafe-pickle",
    severity=Severity.ERROR,
    summary="Loading the pickle would import or call code outside plain tensors and containers.",
    applies_to="PyTorch pickles (.bin .pt .pth .ckpt)",
    what_it_does="""
Loads PyTorch pickles only through PyTorch's restricted unpickler (`weights_only=True`), which
refuses every global that is not a tensor, a storage or a plain container. When the file asks for
another global (for example `os.system`, `builtins.exec`, a class of your training code), weightlint
reports the offending global and never executes it.
""",
    why_bad="""
A pickle can run arbitrary code when it is loaded with `torch.load(weights_only=False)`. A
checkpoint that needs such globals is either a malicious file or one that ties its loading to
code that may not exist where it is loaded.
""",
    how_to_fix="""
Never load the file with `weights_only=False` unless you trust its origin. Re-export the weights
alone: `torch.save(model.state_dict(), path)`, or better `safetensors.torch.save_file`.
""",
    references=(
        "https://pytorch.org/docs/stable/generated/torch.load.html",
        "https://huggingface.co/docs/hub/security-pickle",
    ),
)

INDEX_MISMATCH = Rule(
    code="WL006",
    scope="file",
    name="index-mismatch",
    severity=Severity.ERROR,
    summary="A shard index and its shards disagree.",
    applies_to="sharded checkpoints with a `*.index.json`",
    what_it_does="""
Compares a sharded checkpoint's index (`model.safetensors.index.json`,
`pytorch_model.bin.index.json`) with its shards: a shard the index names that does not exist
(error), a tensor the index maps to a shard that does not contain it (error), and a tensor in a
shard that the index does not map there (warning: loaders read the index and will ignore it).
""",
    why_bad="""
Loaders trust the index. A missing shard or tensor makes loading fail or silently leaves weights at
their random initialization; a tensor missing from the index is silently dropped.
""",
    how_to_fix="""
Re-save the checkpoint with `save_pretrained`, or regenerate the index from the shards.
""",
    references=("https://huggingface.co/docs/transformers/big_models",),
)

_RULES = {"unreadable": UNREADABLE_FILE, "unsafe-pickle": UNSAFE_PICKLE, "index-mismatch": INDEX_MISMATCH}


@hookimpl
def weightlint_rules():
    return list(_RULES.values())


@hookimpl
def weightlint_file_problem(problem, context):
    rule = _RULES.get(problem.kind)
    if rule is None or context.options(rule, problem) is None:
        return None
    severity = (Severity.WARNING if problem.detail.get("not_in_index")
                else Severity.INFO if problem.detail.get("inert") else None)
    return rule.finding(problem.reason, file=problem.file, tensor=problem.tensor, severity=severity,
                        **problem.detail)
