"""A plan as text: one line per matrix with its decision and the numbers that decided it."""

from __future__ import annotations

from weightlint.formatting import number
from weightlint.plans.lowrank import LowRankPlan
from weightlint.plans.quant import QuantPlan


def render_plan(plan, report) -> str:
    return quant_text(plan) if isinstance(plan, QuantPlan) else lowrank_text(plan)


def quant_text(plan: QuantPlan) -> str:
    width = max((len(entry.tensor) for entry in plan.decisions), default=10)
    lines = [f"quantization plan ({plan.profile} profile): {len(plan.decisions)} weight matrices", ""]
    for entry in plan.decisions:
        lines.append(f"{entry.tensor:<{width}}  {entry.decision:<16}  {entry.reason.split(': ', 1)[-1]}  "
                     f"[{number(entry.outliers)}% outliers, {_db(entry.sqnr_db)} / {_db(entry.sqnr_db_per_channel)} per channel]")
    summary = plan.summary()
    counts = ", ".join(f"{decision} {count:,}" for decision, count in summary["parameters"].items() if count)
    lines += ["", f"parameters: {counts}",
              f"int8: {100 * summary['int8_share']:.1f}% of the parameters ({100 * summary['linear_int8_share']:.1f}% of "
              f"linear layers'); {summary['average_bits_per_weight']:.2f} bits per weight on average",
              "emit it for a tool: --emit json | transformers | llmcompressor | torchao | llamacpp"]
    return "\n".join(lines) + "\n"


def lowrank_text(plan: LowRankPlan) -> str:
    width = max((len(entry.tensor) for entry in plan.entries), default=10)
    lines = [f"low-rank plan: the smallest rank within {100 * plan.max_relative_error:g}% relative Frobenius error", ""]
    for entry in plan.entries:
        shape = "×".join(str(size) for size in entry.shape)
        saving = (f"saves {entry.parameters_saved:,} of {entry.parameters:,} parameters "
                  f"({100 * entry.parameters_saved / entry.parameters:.0f}%)" if entry.parameters_saved
                  else f"saves nothing (rank {entry.suggested_rank} needs {entry.parameters_at_rank:,} ≥ "
                       f"{entry.parameters:,}): keep it")
        tier = f"; guide: {entry.guide_tier}" if entry.guide_tier else ""
        lines.append(f"{entry.tensor:<{width}}  {shape:>11}  rank {entry.suggested_rank:>5}  "
                     f"error {100 * entry.predicted_relative_error:5.1f}%  {saving}{tier}")
    summary = plan.summary()
    lines += ["", f"{summary['factorized']} of {summary['matrices']} matrices worth factorizing; "
                  f"{summary['parameters_saved']:,} of {summary['parameters']:,} parameters saved "
                  f"({100 * summary['saved_share']:.1f}%)"]
    return "\n".join(lines) + "\n"


def _db(value) -> str:
    return "n/a" if value is None else f"{value:.1f} dB"
