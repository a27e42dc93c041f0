"""WL805 adapter-structure: an adapter's tensors and its adapter_config.json disagree."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL805",
    scope="run",
    adapter_only=True,
    name="adapter-structure",
    severity=Severity.WARNING,
    summary="An adapter's tensors disagree with its adapter_config.json, or a LoRA pair is incomplete.",
    applies_to="PEFT LoRA adapters: the configuration against the tensors",
    what_it_does="""
Errors (PEFT cannot load the adapter as declared): a lora_A without its lora_B or the reverse; A and
B whose inner dimensions differ; an inner dimension other than the declared rank (`r`, or the
module's `rank_pattern` entry); `use_dora` without magnitude vectors.
Warnings (the adapter is not what its configuration says): a `target_modules` name that matches no
module with tensors; LoRA tensors for a module that `target_modules` does not name; DoRA
magnitudes in an adapter that does not declare `use_dora`.
""",
    why_bad="""
The configuration is what people read and what loaders trust. Tensors for modules it does not name
are loaded silently into places nobody reviewed (or dropped, so the adapter does less than it
claims); a target with no tensors means part of the fine-tune is missing; an incomplete pair or a
rank mismatch makes loading fail or, with lenient loaders, leaves a module half-initialized.
""",
    how_to_fix="""
Save the adapter with `save_pretrained` from the trained model (the configuration and tensors are
then written together); if it was edited by hand, make `target_modules`, `r` and `rank_pattern`
describe the tensors, or remove the stray tensors.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
adapter = {"base_model.model.layer.q.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
           "base_model.model.layer.q.lora_B.weight": rng.standard_normal((32, 4)).astype(np.float32)}
adapter_config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q", "v"]}  # no v tensors
""",
    example_output="""
WL805 warning None: target module 'v' of adapter_config.json matches no module with LoRA tensors
""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_adapter(adapter, context):
    config = adapter.config
    if not config.is_lora or not context.active(RULE):
        return None
    findings = [*_pair_errors(adapter, context)]
    if isinstance(config.target_modules, list):
        for target in config.target_modules:
            if target != "all-linear" and not any(config.targets(pair.module) and _named(pair.module, target)
                                                  for pair in adapter.pairs):
                findings.append(RULE.finding(f"target module '{target}' of adapter_config.json matches no module "
                                             "with LoRA tensors", file=adapter.source.files[0], target=target))
    for pair in adapter.pairs:
        if context.options(RULE, pair.record) is None:
            continue
        if config.target_modules is not None and not config.targets(pair.module):
            findings.append(RULE.finding(f"{pair.module}: LoRA tensors for a module that target_modules does not name",
                                         tensor=pair.record, module=pair.module))
        if pair.magnitude is not None and not config.use_dora:
            findings.append(RULE.finding(f"{pair.module}: a DoRA magnitude vector in an adapter that does not declare "
                                         "use_dora", tensor=pair.magnitude, module=pair.module))
    return findings


def _named(module: str, target: str) -> bool:
    return module == target or module.endswith("." + target)


def _pair_errors(adapter, context):
    for pair in adapter.pairs:
        if context.options(RULE, pair.record) is None:
            continue
        if pair.a is None or pair.b is None:
            have, missing = ("lora_A", "lora_B") if pair.b is None else ("lora_B", "lora_A")
            if pair.a is not None or pair.b is not None:
                yield RULE.finding(f"{pair.module}: {have} without its {missing}: the pair is incomplete",
                                   tensor=pair.record, severity=Severity.ERROR, module=pair.module)
            continue
        # PEFT's factors: A (r, in[, k, k]) and B (out, r[, 1, 1]) for linear and convolution layers.
        a_rank, b_rank = pair.a.shape[0], pair.b.shape[1] if len(pair.b.shape) > 1 else None
        if a_rank != b_rank:
            yield RULE.finding(f"{pair.module}: lora_A has {a_rank} rows but lora_B {b_rank} columns: the factors "
                               "do not multiply", tensor=pair.record, severity=Severity.ERROR, module=pair.module)
        elif a_rank != pair.declared_rank:
            yield RULE.finding(f"{pair.module}: the factors have rank {a_rank}, adapter_config.json declares "
                               f"{pair.declared_rank} (r or rank_pattern): PEFT cannot load them as declared",
                               tensor=pair.record, severity=Severity.ERROR, module=pair.module)
        if adapter.config.use_dora and pair.magnitude is None and not pair.embedding:
            yield RULE.finding(f"{pair.module}: use_dora is declared but the module has no magnitude vector",
                               tensor=pair.record, severity=Severity.ERROR, module=pair.module)
