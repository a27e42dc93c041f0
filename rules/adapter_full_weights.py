"""WL806 adapter-full-weights: full tensors in an adapter replace the base model's weights."""

from weightlint import Rule, Severity, hookimpl
from weightlint.adapter.update import module_of

RULE = Rule(
    code="WL806",
    scope="run",
    adapter_only=True,
    name="adapter-full-weights",
    severity=Severity.INFO,
    summary="An adapter ships full tensors (modules_to_save, embeddings, heads) that replace base weights: review them.",
    applies_to="PEFT adapters: every tensor that is no LoRA factor",
    what_it_does="""
Lists every tensor of the adapter that is not a LoRA factor (lora_A, lora_B, their biases, DoRA
magnitudes): an info for those `modules_to_save` declares (a classifier head, resized embeddings),
a warning for those it does not.
""",
    why_bad="""
A LoRA update is small and low-rank by construction; a full tensor is not: when loaded it replaces
the base model's weight entirely, so it can change anything the module does. Declared copies are
normal (a new classification head) but deserve the review a full model gets; undeclared ones are
either leftovers or weights smuggled in where nobody looks.
""",
    how_to_fix="""
Review the declared tensors like any weights (the other rules check their values). Remove tensors
that `modules_to_save` does not declare, or declare them.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
adapter = {"base_model.model.layer.q.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
           "base_model.model.layer.q.lora_B.weight": rng.standard_normal((32, 4)).astype(np.float32),
           "base_model.model.classifier.weight": rng.standard_normal((2, 32)).astype(np.float32),
           "base_model.model.embeddings.word_embeddings.weight": rng.standard_normal((100, 32)).astype(np.float32)}
adapter_config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"], "modules_to_save": ["classifier"]}
""",
    example_output="""
WL806 info base_model.model.classifier.weight: replaces the base model's classifier.weight in full (declared in modules_to_save): review it like any weight
WL806 warning base_model.model.embeddings.word_embeddings.weight: replaces the base model's embeddings.word_embeddings.weight in full, and modules_to_save does not declare it
""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_adapter(adapter, context):
    findings = []
    for record in adapter.full_tensors:
        if context.options(RULE, record) is None:
            continue
        name = module_of(record.name)
        if adapter.config.saves(name.rsplit(".", 1)[0]):
            findings.append(RULE.finding(f"replaces the base model's {name} in full (declared in modules_to_save): "
                                         "review it like any weight", tensor=record))
        else:
            findings.append(RULE.finding(f"replaces the base model's {name} in full, and modules_to_save does not "
                                         "declare it", tensor=record, severity=Severity.WARNING))
    return findings
