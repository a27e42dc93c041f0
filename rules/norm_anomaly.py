"""WL301 norm-anomaly: a tensor whose scale is far from its siblings' across depth."""

import math
import statistics
from collections import defaultdict
from itertools import combinations

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number
from weightlint.roles import stack_role

RULE = Rule(
    code="WL301",
    name="norm-anomaly",
    severity=Severity.WARNING,
    adapter_factors=False,
    summary="A layer's weight norm is far above (exploding) or below (vanishing) its siblings at other depths.",
    scope="matrix",
    applies_to="weight matrices that have at least `min_siblings` − 1 siblings of the same role",
    thresholds={"z": 3.5, "ratio": 3.0, "min_siblings": 4, "min_mixed_siblings": 6, "min_scale": 0.05},
    options_doc="`z`: robust z-score above which a norm is anomalous. `ratio`: it must also differ from the "
                "depth trend of its siblings by this factor (either way). `min_siblings`: smallest group judged. "
                "`min_mixed_siblings`: the same for a group of conv kernels of different widths, whose "
                "√fan-in scaling is only an approximation. "
                "`min_scale`: floor of the robust spread of log-norms (5%), so that near-identical siblings do "
                "not turn tiny differences into large z-scores.",
    what_it_does="""
Groups the weight matrices of one checkpoint by role: the name with its numbers replaced
(`layers.*.mlp.down_proj.weight`, `basenet.slice*.*.weight`), the same number of dimensions and,
for 2-D matrices, the same shape; for conv kernels the same spatial kernel size, since a CNN's
stages differ in width (such a group of different widths needs `min_mixed_siblings`, 6, members:
CREPE-tiny's five 64-tap convs, 16 to 256 channels wide, vary 3× in that scale on their own). Each member's scale is log(RMS·√fan-in), the RMS that He/Xavier
initialization would give every width alike.

Scales drift with depth in healthy models (SmolLM2's value projections grow 6× from the first
layer to the last), so the members are ordered by depth (the numbers in their names) and each one
is compared with a robust line through the *other* members (Theil–Sen: the median of the
pairwise slopes; with fewer than 5 others, their median). A member is reported when its distance
from that line, divided by the robust spread of the others' distances (1.4826 × MAD, floored at
`min_scale`), exceeds `z`, and it is more than `ratio`× above or below the line.

Members with non-finite values or an all-zero tensor are left out of every comparison (WL100 and
WL503 report them), so a broken layer does not shift its siblings' statistics. Names without
letters (ONNX's anonymous initializers) have no role and are not grouped. A CNN's stem, the first
conv of a group when it reads at most 4 channels (RGB, audio) and the others read features, is
left out too: its scale follows the units of the raw input (YOLOv8n's `model.0` with BatchNorm
folded in is 5.5× its successors).
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
    example="""
import numpy as np

rng = np.random.default_rng(0)
# Twelve layers whose scale grows steadily with depth, and one scaled ×5 off that trend.
tensors = {f"layers.{i}.mlp.down_proj.weight": rng.normal(0, 0.01 * 1.1**i, (32, 64)).astype(np.float32)
           for i in range(12)}
tensors["layers.6.mlp.down_proj.weight"] *= 5
""",
    example_output="""
WL301 warning layers.6.mlp.down_proj.weight: RMS 0.0883 is 5.039× what its 11 siblings layers.*.mlp.down_proj.weight predict at its depth; robust z = 32.35: exploding. A shipped checkpoint: check the export or merge that scaled it; in training: clip gradients and check the learning rate and weight decay
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
        role = stack_role(record.name)
        if finite.get("nonfinite_count", 1) or not norms.get("rms") or role is None:
            continue
        name, depth = role
        shape = record.shape if record.ndim == 2 else record.shape[2:]
        fan_in = record.matrix_shape[1]
        groups[(record.metadata.get("source"), name, record.ndim, shape)].append(
            (record, depth, math.log(norms["rms"] * math.sqrt(fan_in))))
    return groups


# Fewer siblings than this are compared with their median: a line through 3–4 points is noise.
MIN_FOR_TREND = 5


def _is_stem(members) -> bool:
    """Whether the first conv of the group reads the raw input (≤ 4 channels: RGB, audio) while the
    others read features: its scale follows the input's units, not the network's activations."""
    first, rest = members[0][0], [record for record, _, _ in members[1:]]
    return first.ndim >= 3 and first.shape[1] <= 4 and all(record.shape[1] > 4 for record in rest)


def theil_sen(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Intercept and slope of the robust line through (x, y): the median of the pairwise slopes."""
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in combinations(points, 2) if x2 != x1]
    slope = statistics.median(slopes) if slopes else 0.0
    return statistics.median(y - slope * x for x, y in points), slope


@hookimpl
def weightlint_check_model(model, context):
    if not context.active(RULE):
        return None
    options = context.options(RULE) or RULE.thresholds
    findings = []
    for (_, role, _, _), members in _groups(model).items():
        mixed = len({record.shape for record, _, _ in members}) > 1
        if len(members) < options["min_mixed_siblings" if mixed else "min_siblings"]:
            continue
        members.sort(key=lambda member: member[1])
        if _is_stem(members):
            members = members[1:]
        points = [(position, value) for position, (_, _, value) in enumerate(members)]
        for index, (record, _, _) in enumerate(members):
            local = context.options(RULE, record)
            if local is None:
                continue
            others = points[:index] + points[index + 1:]
            # The line through the *other* members: an anomalous layer cannot bend its own prediction.
            intercept, slope = theil_sen(others) if len(others) >= MIN_FOR_TREND else (0.0, 0.0)
            residuals = [y - (intercept + slope * x) for x, y in others]
            residual = points[index][1] - (intercept + slope * index)
            center = statistics.median(residuals)
            spread = max(1.4826 * statistics.median(abs(r - center) for r in residuals), local["min_scale"])
            z = (residual - center) / spread
            ratio = math.exp(residual - center)
            if abs(z) <= local["z"] or 1 / local["ratio"] <= ratio <= local["ratio"]:
                continue
            direction = "exploding" if ratio > 1 else "vanishing"
            rms = model.stats_of(record)["norms"]["rms"]
            findings.append(RULE.finding(
                f"RMS {number(rms)} is {number(ratio)}× what its {len(others)} siblings {role} predict at its "
                f"depth; robust z = {number(z)}: {direction}. A shipped checkpoint: check the export or merge "
                "that scaled it; in training: clip gradients and check the learning rate and weight decay",
                tensor=record, value=ratio, threshold=local["ratio"] if ratio > 1 else 1 / local["ratio"],
                z_score=z, siblings=len(others), role=role))
    return findings
