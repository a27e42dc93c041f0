"""WL809 adapter-update-size: an update too large for the weight it modifies (with --base-model)."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL809",
    scope="run",
    adapter_only=True,
    name="adapter-update-size",
    severity=Severity.WARNING,
    summary="A LoRA update is as large as the base weight it modifies, rescales it wildly (DoRA), or breaks its conditioning.",
    applies_to="PEFT LoRA adapters checked with `--base-model PATH`: each pair whose base weight has the update's shape",
    what_it_does="""
Judges each update against the base weight W it modifies, read one tensor at a time:

- ‖ΔW‖/‖W‖ above `max_relative_norm` (default 1): the update is as large as the weight itself;
- for DoRA, the magnitude vector m against the row norms of W+ΔW: a row rescaled by more than
  `dora_scale` (default 10) times, or by less than its inverse;
- where W is ill-conditioned (condition number above `ill_conditioned`, default 1e4; matrices up
  to 2048 on a side), a condition number of W+ΔW more than `condition_growth` (default 10) times
  larger.
""",
    why_bad="""
Fine-tuning adapts a model; an update the size of the weight replaces it, and the merged model
keeps little of what the base learned (and fp16 or int8 versions of it will differ more). A DoRA
magnitude that rescales rows by orders of magnitude amplifies features the base barely used. Where
the base weight is already close to singular, an update that pushes it further makes the merged
layer numerically fragile.
""",
    how_to_fix="""
Lower `lora_alpha` (or the learning rate) and retrain; check the adapter was trained on this base.
For DoRA, compare the magnitudes with the base's row norms at initialization.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
adapter = {"base_model.model.layer.q.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
           "base_model.model.layer.q.lora_B.weight": rng.standard_normal((32, 4)).astype(np.float32)}
adapter_config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"]}
base = {"layer.q.weight": (rng.standard_normal((32, 32)) * 0.05).astype(np.float32)}
""",
    example_output="""
WL809 warning base_model.model.layer.q.lora_B.weight: layer.q: ‖ΔW‖/‖W‖ = 82.83 (> 1): the update is larger than the weight it modifies
""",
    thresholds={"max_relative_norm": 1.0, "dora_scale": 10.0, "ill_conditioned": 1e4, "condition_growth": 10.0},
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_adapter(adapter, context):
    findings = []
    for pair, measures, options in adapter.judged(RULE, context):
        if "base_norm" not in measures:
            continue
        relative = measures["relative_norm"]
        if options["max_relative_norm"] is not None and relative > options["max_relative_norm"]:
            findings.append(RULE.finding(
                f"{pair.module}: ‖ΔW‖/‖W‖ = {number(relative)} (> {number(options['max_relative_norm'])}): the update "
                "is larger than the weight it modifies", tensor=pair.record, value=relative,
                threshold=options["max_relative_norm"], module=pair.module, check="relative_norm"))
        low, high = measures.get("dora_scale_range", (1.0, 1.0))
        limit = options["dora_scale"]
        if limit is not None and (high > limit or low < 1 / limit):
            findings.append(RULE.finding(
                f"{pair.module}: the DoRA magnitudes rescale rows of W+ΔW by {number(low)}–{number(high)}× "
                f"(limits {number(1 / limit)}–{number(limit)}×)", tensor=pair.magnitude or pair.record,
                value=high if high > limit else low, threshold=limit, module=pair.module, check="dora_scale"))
        before, after = measures.get("base_condition_number"), measures.get("merged_condition_number")
        if (before is not None and after is not None and options["ill_conditioned"] is not None
                and before > options["ill_conditioned"] and after > options["condition_growth"] * before):
            findings.append(RULE.finding(
                f"{pair.module}: the base weight is ill-conditioned (condition number {number(before)}) and the "
                f"update multiplies it by {number(after / before)} (to {number(after)})", tensor=pair.record,
                value=after / before, threshold=options["condition_growth"], module=pair.module, check="condition"))
    return findings
