"""WL808 adapter-base-mismatch: an adapter does not fit the base model given with --base-model."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL808",
    scope="run",
    adapter_only=True,
    name="adapter-base-mismatch",
    severity=Severity.ERROR,
    summary="A LoRA pair's module has no weight in the base model, or its update has another shape.",
    applies_to="PEFT LoRA adapters checked with `--base-model PATH`: each complete pair",
    what_it_does="""
Finds the weight each pair modifies in the base model (`module.weight`, or the one base tensor whose
name ends with it, as model classes prefix names differently) and reports an error when there is
none, or when the update's shape (out × in; transposed for `fan_in_fan_out` and embeddings) is not
the weight's.
""",
    why_bad="""
An adapter trained on another base model (another size, another revision, another vocabulary)
either fails to load or, when shapes happen to agree, applies updates to weights it was never
trained with: the merged model is broken in ways no single tensor shows.
""",
    how_to_fix="""
Use the base model named in `base_model_name_or_path` of `adapter_config.json`, at the revision the
adapter was trained on; retrain the adapter for a new base.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
adapter = {"base_model.model.layer.q.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
           "base_model.model.layer.q.lora_B.weight": rng.standard_normal((48, 4)).astype(np.float32)}
adapter_config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"]}
base = {"layer.q.weight": rng.standard_normal((32, 32)).astype(np.float32)}
""",
    example_output="""
WL808 error base_model.model.layer.q.lora_B.weight: layer.q: the update is 48×32 but the base weight layer.q.weight is 32×32
""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_adapter(adapter, context):
    if adapter.base is None:
        return None
    findings = []
    for pair in adapter.pairs:
        measures = pair.measures
        if "base_weight" not in measures or context.options(RULE, pair.record) is None:
            continue
        if measures["base_weight"] is None:
            findings.append(RULE.finding(f"{pair.module}: the base model {adapter.base} has no weight for this module",
                                         tensor=pair.record, module=pair.module))
        elif not measures["shape_matches"]:
            update = "×".join(str(size) for size in measures["update_shape"])
            weight = "×".join(str(size) for size in measures["base_shape"])
            findings.append(RULE.finding(f"{pair.module}: the update is {update} but the base weight "
                                         f"{measures['base_weight']} is {weight}", tensor=pair.record,
                                         module=pair.module))
    return findings
