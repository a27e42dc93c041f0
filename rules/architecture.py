"""WL003 missing-weights, WL004 unexpected-weights, WL005 shape-mismatch: the checkpoint against
the model its ``config.json`` describes.

The model is built by ``transformers`` on the meta device (``weightlint/architecture.py``): no
weights, no download, no checkpoint code. Only folders (or files next to) a ``config.json`` with a
``model_type`` are compared, and only safetensors / PyTorch checkpoints, whose tensor names are the
model's state-dict keys.
"""

from weightlint import Rule, Severity, hookimpl
from weightlint.architecture import annotate_sources, checkpoints, matches

_REFERENCES = ("https://huggingface.co/docs/transformers/main_classes/model#transformers.PreTrainedModel.from_pretrained",)
_LISTED = 5  # names shown in a summary message

MISSING_WEIGHTS = Rule(
    code="WL003",
    scope="run",
    name="missing-weights",
    severity=Severity.ERROR,
    summary="A tensor the model's config.json requires is not in the checkpoint.",
    applies_to="safetensors and PyTorch checkpoints with a config.json that transformers can build",
    what_it_does="""
Builds the model named in `config.json` (`architectures`, else the `model_type`'s base model) with
`transformers` on the meta device and lists every persistent tensor it expects. Each expected
tensor that the checkpoint lacks is reported by name. Not reported: tied tensors that
`save_pretrained` drops on purpose (`lm_head.weight` when `tie_word_embeddings` is true), buffers
(recomputed by the model), the keys the model class declares ignorable, and the head of a model
saved as its base model (names without the `transformer.` / `model.` / `bert.` prefix). When no
expected tensor is present at all, a single finding says so, with example names. A shard named
alone, without its index, is not checked for missing tensors.
""",
    why_bad="""
`from_pretrained` fills a missing tensor with random initialization and only logs a warning: the
model loads and produces garbage (an `lm_head` or a whole layer dropped by a bad export or merge).
""",
    how_to_fix="""
Re-export the checkpoint from the full model (`model.save_pretrained(folder)`), check the export or
merge script's key mapping, or fix `config.json` if it describes a different model.
""",
    references=_REFERENCES,
)

UNEXPECTED_WEIGHTS = Rule(
    code="WL004",
    scope="run",
    name="unexpected-weights",
    severity=Severity.WARNING,
    summary="A checkpoint tensor has no place in the model its config.json describes.",
    applies_to="safetensors and PyTorch checkpoints with a config.json that transformers can build",
    what_it_does="""
Reports each checkpoint tensor that the model built from `config.json` does not have (after
matching the base-model prefix), except buffers and keys the model class declares ignorable
(`_keys_to_ignore_on_load_unexpected`).
""",
    why_bad="""
`from_pretrained` silently drops unexpected tensors. They are usually a sign of a mismatch: a
config for another variant (more layers than configured), a renamed module, or training leftovers
(adapters, EMA copies) shipped by mistake.
""",
    how_to_fix="""
Check that `config.json` matches the weights (layer count, model type); remove leftovers, or merge
adapters before exporting.
""",
    references=_REFERENCES,
)

SHAPE_MISMATCH = Rule(
    code="WL005",
    scope="run",
    name="shape-mismatch",
    severity=Severity.ERROR,
    summary="A checkpoint tensor's shape differs from what the model's config.json implies.",
    applies_to="safetensors and PyTorch checkpoints with a config.json that transformers can build",
    what_it_does="""
Compares each checkpoint tensor's shape with the shape of the same tensor in the model built from
`config.json`.
""",
    why_bad="""
`from_pretrained` refuses to load a tensor of the wrong shape (or, with
`ignore_mismatched_sizes=True`, re-initializes it at random). A mismatch means the config and the
weights disagree: a resized vocabulary without `vocab_size` updated, a different hidden size, a
transposed export.
""",
    how_to_fix="""
Update `config.json` to the checkpoint (e.g. `vocab_size` after `resize_token_embeddings`), or
re-export the weights from the model the config describes.
""",
    references=_REFERENCES,
)

RULES = (MISSING_WEIGHTS, UNEXPECTED_WEIGHTS, SHAPE_MISMATCH)


@hookimpl
def weightlint_rules():
    return list(RULES)


@hookimpl
def weightlint_check_model(model, context):
    selected = {rule.code for rule in RULES if context.active(rule)}
    if not selected:
        return None
    annotate_sources(model.sources, model.records)  # idempotent; the runner may already have done it
    findings = []
    for checkpoint in checkpoints(model.sources, model.records):
        skeleton = checkpoint.architecture.skeleton
        if skeleton is not None and checkpoint.records:
            findings.extend(_compare(checkpoint, skeleton, selected))
    return findings


def _compare(checkpoint, skeleton, selected):
    alignment = checkpoint.alignment()
    keys = {record.name: alignment.key(record.name) for record in checkpoint.records}
    present = {key for key in keys.values() if key is not None}
    architecture = f"{skeleton.architecture} ({checkpoint.architecture.config_path})"
    if not present & set(skeleton.expected):
        return _nothing_matches(checkpoint, skeleton, selected)
    findings = []
    if MISSING_WEIGHTS.code in selected and checkpoint.complete:
        for key in alignment.required(present):
            if key in present or key in skeleton.buffers or matches(key, skeleton.ignore_missing):
                continue
            if any(partner in present for partner in skeleton.tied.get(key, ())):
                continue  # tied: loading fills it from its partner
            findings.append(MISSING_WEIGHTS.finding(
                f"{architecture} expects this tensor, shape {_shape(skeleton.expected[key])}; "
                "the checkpoint does not have it", tensor=alignment.name(key), file=checkpoint.file,
                expected_shape=list(skeleton.expected[key]), architecture=skeleton.architecture))
    for record in checkpoint.records:
        key = keys[record.name]
        if key is None:
            if UNEXPECTED_WEIGHTS.code in selected and not matches(record.name, skeleton.ignore_unexpected):
                findings.append(UNEXPECTED_WEIGHTS.finding(
                    f"not a tensor of {architecture}; from_pretrained would ignore it",
                    tensor=record, value=list(record.shape), architecture=skeleton.architecture))
        elif SHAPE_MISMATCH.code in selected and key in skeleton.expected and not alignment.converted(record.name):
            expected = skeleton.expected[key]
            if tuple(record.shape) != expected:
                findings.append(SHAPE_MISMATCH.finding(
                    f"shape {_shape(record.shape)}, but {architecture} expects {_shape(expected)}",
                    tensor=record, value=list(record.shape), threshold=list(expected),
                    expected_shape=list(expected), architecture=skeleton.architecture))
    return findings


def _nothing_matches(checkpoint, skeleton, selected):
    if MISSING_WEIGHTS.code not in selected:
        return []
    names = sorted(record.name for record in checkpoint.records)
    wanted = sorted(skeleton.expected)
    return [MISSING_WEIGHTS.finding(
        f"none of the {len(wanted)} tensors {skeleton.architecture} ({checkpoint.architecture.config_path}) "
        "expects is in the checkpoint: "
        f"it has {_sample(names)}, the model expects {_sample(wanted)} (a different prefix, or another model?)",
        file=checkpoint.file, value=len(wanted), architecture=skeleton.architecture)]


def _shape(shape) -> str:
    return "[" + ", ".join(str(side) for side in shape) + "]"  # as the JSON report's "shape"


def _sample(names) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" … ({len(names)} in all)" if len(names) > _LISTED else "")
