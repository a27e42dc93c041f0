"""WL804 adapter-zero-update: LoRA pairs whose update is exactly zero (never trained)."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL804",
    scope="run",
    adapter_only=True,
    name="adapter-zero-update",
    severity=Severity.WARNING,
    summary="A LoRA pair's lora_B (or lora_A) is all zero, so its update is zero: the module was never trained.",
    applies_to="PEFT LoRA adapters: each complete pair",
    what_it_does="""
Reports each module whose lora_B or lora_A is all zero (a warning), and, when that is every module
of the adapter, one error: the adapter was saved before any training step.
""",
    why_bad="""
PEFT initializes lora_B to zero, so that training starts from the base model. After any training
lora_B is non-zero wherever gradients reached. A zero pair does nothing: the module's gradient never
arrived (a detached branch, a layer the loss does not use, a frozen factor), or the file was saved
from the freshly initialized adapter. An adapter in which every pair is zero is the base model.
""",
    how_to_fix="""
Check that the adapter's parameters require gradients and are in the optimizer, and that the saved
file is the trained one (`save_pretrained` after training, not before). Remove modules the loss
never reaches from `target_modules`.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
adapter = {"base_model.model.layer.q.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
           "base_model.model.layer.q.lora_B.weight": rng.standard_normal((32, 4)).astype(np.float32),
           "base_model.model.layer.v.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
           "base_model.model.layer.v.lora_B.weight": np.zeros((32, 4), np.float32)}  # as initialized
adapter_config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q", "v"]}
""",
    example_output="""
WL804 warning base_model.model.layer.v.lora_B.weight: layer.v: lora_B is all zero, so the update is zero: this module was never trained
""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_adapter(adapter, context):
    measured = [pair for pair in adapter.pairs if pair.measures.get("finite")]
    zero = [pair for pair in measured if pair.measures["a_zero"] or pair.measures["b_zero"]]
    zero = [pair for pair in zero if context.options(RULE, pair.record) is not None]
    if zero and len(zero) == len(measured) and len(measured) > 1:
        return RULE.finding(f"all {len(zero)} LoRA pairs have a zero factor: the adapter is the base model, saved "
                            "before any training step", file=zero[0].record.file, severity=Severity.ERROR,
                            value=len(zero))
    findings = []
    for pair in zero:
        factor = "lora_B" if pair.measures["b_zero"] else "lora_A"
        findings.append(RULE.finding(f"{pair.module}: {factor} is all zero, so the update is zero: this module was "
                                     "never trained", tensor=pair.b if factor == "lora_B" else pair.a,
                                     module=pair.module))
    return findings
