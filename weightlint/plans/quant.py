"""``weightlint plan quant``: per weight matrix, the decision tree on outliers and SQNR, with the
numbers that decided it, the module it belongs to, and what the whole plan costs in bits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlint.config.plans import QuantThresholds, quant_thresholds
from weightlint.quantization import decide

DECISIONS = ("int8", "int8-per-channel", "int16", "fp16", "special")
# The guide's names for the lists of its quantization config.
GUIDE_LISTS = {"int8": "int8_layers", "int8-per-channel": "int8_per_channel_layers", "int16": "int16_layers",
               "fp16": "fp16_layers", "special": "special_layers"}


@dataclass
class QuantDecision:
    tensor: str
    module: str  # the module's name in the model class (``encoder.layer.0.attention.self.query``)
    tied: list[str]  # other modules that share this weight (a tied output head)
    shape: tuple[int, ...]
    module_type: str | None  # Linear, Conv1D, Embedding … when config.json told
    decision: str
    reason: str
    outliers: float
    sqnr_db: float | None
    sqnr_db_per_channel: float | None
    rows: int = 1  # output channels (a Conv1D stores them as its second dimension)

    @property
    def parameters(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def is_linear(self) -> bool:
        return self.module_type in (None, "Linear", "Conv1D") or (self.module_type or "").endswith("Linear")

    @property
    def bits_per_weight(self) -> float:
        """Storage per weight: 8 bits plus a float32 scale per tensor (per output row per channel)."""
        rows = self.rows
        if self.decision == "int8":
            return 8 + 32 / self.parameters
        if self.decision == "int8-per-channel":
            return 8 + 32 * rows / self.parameters
        return 16.0

    def describe(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "module": self.module, "tied": self.tied, "shape": list(self.shape),
                "module_type": self.module_type, "decision": self.decision, "reason": self.reason,
                "extreme_outlier_percentage": self.outliers, "sqnr_db": self.sqnr_db,
                "sqnr_db_per_channel": self.sqnr_db_per_channel}


@dataclass
class QuantPlan:
    profile: str
    thresholds: QuantThresholds
    decisions: list[QuantDecision] = field(default_factory=list)

    def modules(self, *decisions: str, linear_only: bool = False) -> list[str]:
        """Module names (tied ones included) whose weight got one of ``decisions``; ``linear_only``:
        only linear layers (``Linear``, HF ``Conv1D``, or of unknown type), what quantizers convert."""
        names = []
        for entry in self.decisions:
            if entry.decision in decisions and (not linear_only or entry.is_linear):
                names += [entry.module, *entry.tied]
        return list(dict.fromkeys(names))

    def summary(self) -> dict[str, Any]:
        total = sum(entry.parameters for entry in self.decisions) or 1
        parameters = {decision: sum(e.parameters for e in self.decisions if e.decision == decision) for decision in DECISIONS}
        linear = [e for e in self.decisions if e.is_linear]
        linear_total = sum(e.parameters for e in linear) or 1
        return {
            "matrices": len(self.decisions),
            "parameters": parameters,
            "int8_share": (parameters["int8"] + parameters["int8-per-channel"]) / total,
            "linear_int8_share": sum(e.parameters for e in linear if e.decision.startswith("int8")) / linear_total,
            "average_bits_per_weight": sum(e.bits_per_weight * e.parameters for e in self.decisions) / total,
        }

    def to_json(self) -> dict[str, Any]:
        """The guide's quantization config (tensor names), with every decision and its numbers."""
        return {
            **{GUIDE_LISTS[decision]: [e.tensor for e in self.decisions if e.decision == decision]
               for decision in DECISIONS if decision != "special" or self.thresholds.special_outliers is not None},
            "profile": self.profile,
            "thresholds": vars(self.thresholds),
            "summary": self.summary(),
            "decisions": [entry.describe() for entry in self.decisions],
        }


def module_of(record) -> str:
    """The module a weight belongs to, as the model class names it (the skeleton's key when
    config.json gave one, else the tensor name), without ``.weight``."""
    key = record.metadata.get("architecture_key") or record.name
    return key[: -len(".weight")] if key.endswith(".weight") else key


def quant_plan(report) -> QuantPlan:
    """The plan from a report whose matrices carry the ``quantization`` statistics."""
    config = report.config
    tree = "guide" if config.profile == "guide" else "default"
    thresholds = quant_thresholds(config.profile, config.plan_quant)
    plan = QuantPlan(config.profile, thresholds)
    for record in report.records:
        stats = report.tensors.get(record.name, {}).get("quantization")
        if not stats or not record.is_matrix:
            continue
        outliers = stats.get("extreme_outlier_percentage") or 0.0
        decision, reason = decide(outliers, stats.get("sqnr_db"), stats.get("sqnr_db_per_channel"), thresholds, tree)
        tied = [name[: -len(".weight")] if name.endswith(".weight") else name
                for name in record.metadata.get("tied_with", ())]
        plan.decisions.append(QuantDecision(record.name, module_of(record), tied, tuple(record.shape),
                                            record.metadata.get("module_type"), decision, reason, outliers,
                                            stats.get("sqnr_db"), stats.get("sqnr_db_per_channel"),
                                            record.matrix_shape[0]))
    return plan
