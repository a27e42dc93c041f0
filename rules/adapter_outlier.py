"""WL802 adapter-update-outlier: one module's update is far larger than its family's across depth."""

import math

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL802",
    scope="run",
    adapter_only=True,
    name="adapter-update-outlier",
    severity=Severity.WARNING,
    summary="A LoRA update's norm is far above those of the same module at other depths.",
    applies_to="PEFT LoRA adapters: families of at least `min_family` pairs (one module name at every depth)",
    what_it_does="""
Groups the pairs by module family (`layers.*.self_attn.q_proj`), fits the trend of log‖ΔW‖ across
depth robustly (the Theil–Sen slope: the median of pairwise slopes), and warns for an update whose
norm lies more than `ratio` (default 5) times above the trend **and** more than `z` (default 5)
robust standard deviations (MAD) from the family's other residuals.
""",
    why_bad="""
Real adapters vary a lot in update size, from layer to layer and from adapter to adapter, but
smoothly across depth. A single module whose update is many times its neighbours' was scaled
after training (a merge gone wrong, a tampered adapter that amplifies one layer), or trained with
a broken learning rate for that module; it dominates the model's behaviour where it sits.
""",
    how_to_fix="""
Compare the module with the same module in a known-good version of the adapter. If the adapter was
scaled by hand, restore the scale; if it was trained so, retrain with gradient clipping.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
adapter = {}
for i in range(6):
    prefix = f"base_model.model.layers.{i}.q"
    adapter[f"{prefix}.lora_A.weight"] = (rng.standard_normal((4, 64)) * 0.1).astype(np.float32)
    adapter[f"{prefix}.lora_B.weight"] = (rng.standard_normal((64, 4)) * 0.01 * (20 if i == 3 else 1)).astype(np.float32)
adapter_config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"]}
""",
    example_output="""
WL802 warning base_model.model.layers.3.q.lora_B.weight: layers.3.q: update norm 5.507 is 21.84× the trend of layers.*.q across depth (robust z 80.61; limits 5× and z 5)
""",
    thresholds={"ratio": 5.0, "z": 5.0, "min_family": 4},
)


@hookimpl
def weightlint_rules():
    return [RULE]


def _median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def residuals(points):
    """log-norm residuals from the Theil–Sen line through (depth, log norm) points."""
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 != x1]
    slope = _median(slopes) if slopes else 0.0
    intercept = _median([y - slope * x for x, y in points])
    return [y - (intercept + slope * x) for x, y in points]


@hookimpl
def weightlint_check_adapter(adapter, context):
    if not context.active(RULE):
        return None
    families = {}
    for pair in adapter.pairs:
        if pair.measures.get("norm") and pair.depth is not None:
            families.setdefault(pair.family, []).append(pair)
    findings = []
    for family, pairs in families.items():
        options = context.options(RULE, pairs[0].record)
        if options is None or len(pairs) < options["min_family"]:
            continue
        fitted = residuals([(pair.depth, math.log(pair.measures["norm"])) for pair in pairs])
        for index, pair in enumerate(pairs):
            others = fitted[:index] + fitted[index + 1:]
            center = _median(others)
            spread = 1.4826 * _median([abs(value - center) for value in others])
            excess = fitted[index] - center
            z = excess / spread if spread > 0 else math.inf
            options = context.options(RULE, pair.record)
            if options is None or excess <= math.log(options["ratio"]) or z <= options["z"]:
                continue
            findings.append(RULE.finding(
                f"{pair.module}: update norm {number(pair.measures['norm'])} is {number(math.exp(excess))}× the trend "
                f"of {family} across depth (robust z {number(z)}; limits {number(options['ratio'])}× and z "
                f"{number(options['z'])})", tensor=pair.record, value=math.exp(excess), threshold=options["ratio"],
                module=pair.module))
    return findings
