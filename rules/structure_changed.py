"""WL707 structure-changed: tensors added, removed, reshaped or re-typed between checkpoints."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL707",
    scope="run",
    diff_only=True,
    name="structure-changed",
    severity=Severity.WARNING,
    summary="Tensors were added, removed, reshaped or re-typed between two checkpoints.",
    applies_to="`weightlint diff`: the names, shapes and types of both checkpoints",
    what_it_does="""
Lists every tensor only in the new checkpoint (added, info), only in the old one (removed, info),
with another shape (reshaped, warning) or another element type (re-typed, warning). Tensors are
matched by name.
""",
    why_bad="""
Consecutive checkpoints of one run have the same tensors. A reshaped tensor means the two files are
not the same model (a changed config, a resized vocabulary); a re-typed one, a precision change
(fp32 → bf16) that the comparison must take into account; added or removed tensors, a changed
architecture or a save that dropped part of the model.
""",
    how_to_fix="""
Compare checkpoints of one run and one configuration. If the change is intended (a resized
embedding, a cast), suppress the finding for those tensors.
""",
    example="""
import numpy as np

old = {"embed.weight": np.ones((100, 16), np.float32), "head.weight": np.ones((10, 16), np.float32)}
new = {"embed.weight": np.ones((120, 16), np.float32), "head.weight": np.ones((10, 16), np.float32),
       "extra.bias": np.zeros(16, np.float32)}
""",
    example_output="""
WL707 warning embed.weight: reshaped: [100, 16] → [120, 16]
WL707 info extra.bias: added: only in the new checkpoint ([16] float32)
""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_diff(diff, context):
    findings = []
    for kind, records, severity in (("added", diff.added, Severity.INFO), ("removed", diff.removed, Severity.INFO)):
        for record in records:
            if context.options(RULE, record) is not None:
                other = "new" if kind == "added" else "old"
                findings.append(RULE.finding(f"{kind}: only in the {other} checkpoint ({list(record.shape)} "
                                             f"{record.dtype_name})", tensor=record, severity=severity, change=kind))
    for kind, pairs in (("reshaped", diff.reshaped), ("re-typed", diff.retyped)):
        for old, new in pairs:
            if context.options(RULE, new) is not None:
                before, after = ((list(old.shape), list(new.shape)) if kind == "reshaped"
                                 else (old.dtype_name, new.dtype_name))
                findings.append(RULE.finding(f"{kind}: {before} → {after}", tensor=new, change=kind))
    return findings
