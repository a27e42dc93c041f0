"""WL301 norm-anomaly: a tensor whose scale is far from its siblings' across depth."""

import math
import statistics
from collections import defaultdict

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number
from weightlint.roles import sibling_role

RULE = Rule(
    code="WL301",
    name="norm-anomaly",
    severity=Severity.WARNING,
    summary="A layer's weight norm is far above (exploding) or below (vanishing) its siblings at other depths.",
    scope="matrix",
    applies_to="weight matrices that have at least `min_siblings` − 1 siblings of the same role and shape",
    thresholds={"z": 3.5, "ratio": 3.0, "min_siblings": 4, "min_scale": 0.05},
    options_doc="`z`: robust z-score above which a norm is anomalous. `ratio`: it must also differ from the "
                "siblings' median by this factor (either way). `min_siblings`: smallest group judged. "
                "`min_scale`: floor of the robust spread of log-norms (5%), so that near-identical siblings do "
                "not turn tiny differences into large z-scores.",
    what_it_does="""
Groups tensors by role — the name with its layer index replaced (`layers.*.mlp.down_proj.weight`)
— and shape, within one checkpoint. For each member, it compares the log of its RMS (‖W‖F/√n) with
the median of the *other* members, scaled by their median absolute deviation (×1.4826, floored at
`min_scale`): a robust z-score that one anomalous layer cannot mask. A tensor is reported when
|z| > `z` and its RMS differs from the siblings' median by more than `ratio`×.

Members with non-finite values or an all-zero tensor are left out of every comparison (WL100 and
WL503 report them), so a broken layer does not shift its siblings' statistics.
""",
    why_bad="""
The guide's "vanishing / exploding gradients" symptom: a layer whose weights grew far beyond its
peers (a learning-rate spike, missing weight decay, a bad merge scaling one layer) or collapsed
toward zero (dead layer, over-strong decay). Either breaks the residual stream's balance and
training's convergence.
""",
    how_to_fix="""
Find where the layer diverged (compare checkpoints); for an exploding layer lower the learning
rate and clip gradients, for a collapsing one check weight decay and the layer's gradient flow. A
merge or conversion bug that scaled one layer is fixed by re-exporting.
""",
    references=("https://arxiv.org/abs/1211.5063",),
)


@hookimpl
def weightlint_rules():
    return [RULE]


def _groups(model):
    groups = defaultdict(list)
    for record in model.records:
        if not record.is_matrix:
            continue
        stats = model.stats_of(record)
        norms, finite = stats.get("norms", {}), stats.get("finite", {})
        if finite.get("nonfinite_count", 1) or not norms.get("rms"):
            continue
        key = (record.metadata.get("source"), sibling_role(record.name), record.shape)
        groups[key].append((record, math.log(norms["rms"])))
    return groups


@hookimpl
def weightlint_check_model(model, context):
    if not context.active(RULE):
        return None
    options = context.options(RULE) or RULE.thresholds
    findings = []
    for (_, role, _), members in _groups(model).items():
        if len(members) < options["min_siblings"]:
            continue
        for index, (record, log_rms) in enumerate(members):
            local = context.options(RULE, record)
            if local is None:
                continue
            others = [value for j, (_, value) in enumerate(members) if j != index]
            center = statistics.median(others)
            spread = max(1.4826 * statistics.median(abs(v - center) for v in others), local["min_scale"])
            z = (log_rms - center) / spread
            ratio = math.exp(log_rms - center)
            if abs(z) <= local["z"] or 1 / local["ratio"] <= ratio <= local["ratio"]:
                continue
            direction = "exploding" if ratio > 1 else "vanishing"
            findings.append(RULE.finding(
                f"RMS {number(math.exp(log_rms))} is {number(ratio)}× the median of its {len(others)} siblings "
                f"{role} ({number(math.exp(center))}); robust z = {number(z)}: {direction}",
                tensor=record, value=ratio, threshold=local["ratio"] if ratio > 1 else 1 / local["ratio"],
                z_score=z, siblings=len(others), role=role))
    return findings
