"""WL801 adapter-rank-deficient: a LoRA update uses far fewer directions than its declared rank."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL801",
    scope="run",
    adapter_only=True,
    name="adapter-rank-deficient",
    severity=Severity.WARNING,
    summary="A LoRA pair's update ΔW = scale·B·A has far lower rank than the rank the adapter declares.",
    applies_to="PEFT LoRA adapters (a folder with `adapter_config.json`): each complete lora_A/lora_B pair",
    what_it_does="""
Computes the singular values of each module's update ΔW = scale·B·A from the r×r core of the QR
factorizations of B and Aᵀ (ΔW itself is never built), counts those above the rounding level of the
stored type (1e-4 of the largest for float32, 1e-2 for 16-bit floats), and warns when that rank is
below `min_ratio` (default 0.5) of the declared `r` (`rank_pattern` honoured). An update whose
energy sits in a few output rows is WL803's finding, not this one's.
""",
    why_bad="""
A trained LoRA update spreads over most of its r directions. One that uses two of sixteen was
either trained far too briefly, collapsed (a learning rate too high, A and B aligned), or was
built by hand as a low-rank edit and declared with a larger rank to look ordinary. It also wastes
memory and compute on directions that do nothing.
""",
    how_to_fix="""
If the adapter is genuine, retrain it with a lower `r` (the actual rank is enough), or train longer.
If you did not train it, treat it as a targeted edit and compare it with a known-good adapter.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
a = rng.standard_normal((16, 64)).astype(np.float32)
b = (rng.standard_normal((64, 2)) @ rng.standard_normal((2, 16))).astype(np.float32)  # rank 2 of 16
adapter = {"base_model.model.layer.q.lora_A.weight": a, "base_model.model.layer.q.lora_B.weight": b}
adapter_config = {"peft_type": "LORA", "r": 16, "lora_alpha": 16, "target_modules": ["q"]}
""",
    example_output="""
WL801 warning base_model.model.layer.q.lora_B.weight: layer.q: declared rank 16, actual rank 2 (singular values of ΔW above 0.0001 of the largest): the update uses 2 of its 16 directions
""",
    thresholds={"min_ratio": 0.5},
)


@hookimpl
def weightlint_rules():
    return [RULE]


def _left_to_row_concentration(pair, context) -> bool:
    """An update that lives in its top rows has at most that rank: WL803 reports it, once."""
    concentration = context.rules.get("WL803")
    options = context.options(concentration, pair.record) if concentration else None
    return (options is not None and options["share"] is not None and pair.measures["rows"] >= options["min_rows"]
            and pair.measures["top_rows_share"] >= options["share"] and not pair.embedding)


@hookimpl
def weightlint_check_adapter(adapter, context):
    findings = []
    for pair, measures, options in adapter.judged(RULE, context):
        if options["min_ratio"] is None or not measures.get("norm"):
            continue
        rank, declared = measures["rank"], pair.declared_rank
        if _left_to_row_concentration(pair, context):
            continue
        if declared > 0 and rank < options["min_ratio"] * declared:
            findings.append(RULE.finding(
                f"{pair.module}: declared rank {declared}, actual rank {rank} (singular values of ΔW above "
                f"{measures['rank_resolution']:g} of the largest): the update uses {rank} of its {declared} directions",
                tensor=pair.record, value=rank, threshold=options["min_ratio"] * declared, module=pair.module))
    return findings
