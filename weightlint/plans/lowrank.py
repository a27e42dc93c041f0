"""``weightlint plan lowrank``: per weight matrix, the smallest rank whose truncated SVD stays within
WL401's ``max_relative_error`` (default 0.1), and what factorizing at that rank saves (maybe nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlint.plans.quant import module_of

# The guide's compression tiers by stable-rank ratio (profile: guide only): ratio < bound → advice.
GUIDE_TIERS = ((0.1, "LoRA rank 4"), (0.2, "LoRA rank 8"), (0.5, "low-rank rank 32"))


@dataclass
class LowRankEntry:
    tensor: str
    module: str
    shape: tuple[int, int]  # (outputs, inputs)
    suggested_rank: int
    predicted_relative_error: float
    stable_rank_ratio: float | None
    max_relative_error: float = 0.1
    module_type: str | None = None
    guide_tier: str | None = None

    @property
    def parameters(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def parameters_at_rank(self) -> int:
        return self.suggested_rank * (self.shape[0] + self.shape[1])

    @property
    def parameters_saved(self) -> int:
        """What (m × r)(r × n) saves over m × n; 0 when it saves nothing (then keep the layer)."""
        return max(0, self.parameters - self.parameters_at_rank)

    def describe(self) -> dict[str, Any]:
        saved = self.parameters_saved
        return {"tensor": self.tensor, "module": self.module, "shape": list(self.shape),
                "max_relative_error": self.max_relative_error,
                "suggested_rank": self.suggested_rank, "predicted_relative_error": self.predicted_relative_error,
                "parameters": self.parameters, "parameters_at_rank": self.parameters_at_rank,
                "parameters_saved": saved,
                # A linear layer does a multiply-add per parameter and input vector; an embedding looks up.
                "flops_saved_per_token": 0 if self.module_type == "Embedding" else 2 * saved,
                "factorize": saved > 0,
                **({"guide_tier": self.guide_tier} if self.guide_tier else {})}


@dataclass
class LowRankPlan:
    max_relative_error: float
    profile: str
    entries: list[LowRankEntry] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        total = sum(entry.parameters for entry in self.entries)
        saved = sum(entry.parameters_saved for entry in self.entries)
        return {"matrices": len(self.entries), "factorized": sum(1 for e in self.entries if e.parameters_saved),
                "parameters": total, "parameters_saved": saved, "saved_share": saved / total if total else 0.0}

    def to_json(self) -> dict[str, Any]:
        return {"max_relative_error": self.max_relative_error, "profile": self.profile, "summary": self.summary(),
                "matrices": [entry.describe() for entry in self.entries]}


def lowrank_plan(report) -> LowRankPlan:
    """The plan from a report whose matrices carry the ``lowrank`` statistics (see Session); the
    plan's bound is WL401's configured one (an override may set another for some matrices)."""
    entries = []
    rule = report.rules.get("WL401")
    bound = report.config.rule_options(rule).get("max_relative_error") if rule else None
    for record in report.records:
        stats = report.tensors.get(record.name, {}).get("lowrank")
        if not stats or not record.is_matrix:
            continue
        ratio = stats.get("stable_rank_ratio")
        tier = None
        if report.config.profile == "guide" and ratio is not None:
            tier = next((advice for limit, advice in GUIDE_TIERS if ratio < limit), None)
        entries.append(LowRankEntry(record.name, module_of(record), tuple(record.matrix_shape),
                                    stats["suggested_rank"], stats["predicted_relative_error"], ratio,
                                    stats["max_relative_error"], record.metadata.get("module_type"), tier))
    return LowRankPlan(bound if bound is not None else 0.1, report.config.profile, entries)
