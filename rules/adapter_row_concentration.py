"""WL803 adapter-row-concentration: a LoRA update concentrated on a few output rows."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL803",
    scope="run",
    adapter_only=True,
    name="adapter-row-concentration",
    severity=Severity.WARNING,
    summary="Most of a LoRA update's energy sits in three output rows: the signature of a targeted edit.",
    applies_to="PEFT LoRA adapters: pairs of linear layers with at least `min_rows` output rows (not embeddings)",
    what_it_does="""
Computes the norm of every output row of ΔW = scale·B·A (from B and the QR factor of Aᵀ, without
building ΔW) and warns when the three largest rows hold at least `share` (default 0.5) of ‖ΔW‖².
""",
    why_bad="""
Training spreads an update over many output features. An update that rewrites a handful of rows,
say the logits of a few tokens or a few neurons, is what model-editing and backdoor insertion
produce: a small, targeted change in behaviour that ordinary evaluation does not see.
""",
    how_to_fix="""
Find out what the rows are (for an output head: which tokens) and where the adapter came from. A
genuine adapter trained on a tiny, narrow dataset can do this; retrain it on more data, or drop
the module from `target_modules`.
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
b = np.zeros((128, 8), np.float32)
b[[5, 17, 99]] = rng.standard_normal((3, 8))  # only three output rows change
adapter = {"base_model.model.head.lora_A.weight": rng.standard_normal((8, 64)).astype(np.float32),
           "base_model.model.head.lora_B.weight": b}
adapter_config = {"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["head"]}
""",
    example_output="""
WL803 warning base_model.model.head.lora_B.weight: head: rows 17, 99, 5 of 128 hold 100% of the update's energy (limit 50%): a targeted edit, not training
""",
    thresholds={"share": 0.5, "min_rows": 64},
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_adapter(adapter, context):
    findings = []
    for pair, measures, options in adapter.judged(RULE, context):
        if options["share"] is None or not measures.get("norm") or pair.embedding:
            continue
        if measures["rows"] < options["min_rows"] or measures["top_rows_share"] < options["share"]:
            continue
        rows = ", ".join(str(row) for row in measures["top_rows"])
        findings.append(RULE.finding(
            f"{pair.module}: rows {rows} of {measures['rows']} hold {number(100 * measures['top_rows_share'])}% of "
            f"the update's energy (limit {number(100 * options['share'])}%): a targeted edit, not training",
            tensor=pair.record, value=measures["top_rows_share"], threshold=options["share"], module=pair.module,
            rows=measures["top_rows"]))
    return findings
