"""What a run produces: the report reporters format, and the view model-level rules get."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlint.config import Config
from weightlint.exitcodes import ExitCode
from weightlint.finding import Finding, Severity
from weightlint.record import TensorRecord
from weightlint.rule import Rule
from weightlint.sources import Source

# The guide's bands of the health score (``profile: guide``); the default verdict follows the gate.
GUIDE_VERDICTS = ((80, "good: deploy"), (60, "fix before deploying"), (0, "do not deploy"))


@dataclass
class ModelView:
    """What model-level rules see: every record and its computed statistics, no tensor data."""

    records: list[TensorRecord]
    tensor_stats: dict[str, dict[str, Any]]
    findings: list[Finding]
    sources: list[Source] = field(default_factory=list)

    def stats_of(self, record: TensorRecord) -> dict[str, Any]:
        return self.tensor_stats.get(record_key(record), {})


def record_key(record: TensorRecord) -> str:
    return f"{record.file}::{record.name}"


@dataclass
class Report:
    """Everything a reporter needs; reporters format it, they compute nothing."""

    paths: list[str]
    sources: list[Source]
    records: list[TensorRecord]
    findings: list[Finding]
    tensors: dict[str, dict[str, Any]]
    rules: dict[str, Rule]
    config: Config
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    suppressed: list[Finding] = field(default_factory=list)
    # Why each suppressed finding was accepted (same order): the entry's reason and where it is.
    suppression_reasons: list[str] = field(default_factory=list)
    baselined: list[Finding] = field(default_factory=list)
    baseline_fixed: int = 0
    # "check", or "diff" for ``weightlint diff`` (``compared``: the old and the new paths).
    mode: str = "check"
    compared: dict[str, list[str]] | None = None
    # One entry per PEFT adapter checked: its configuration and what each module's update measures.
    adapters: list[dict[str, Any]] = field(default_factory=list)
    # The plans asked for (``--plan`` / ``plans=``): name → QuantPlan or LowRankPlan.
    plans: dict[str, Any] = field(default_factory=dict)
    # ``weightlint watch``: per checkpoint, the median norm ratio of each layer group.
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        return sum(record.numel for record in self.records)

    def counts(self) -> dict[str, int]:
        counts = {str(severity): 0 for severity in reversed(Severity)}
        for finding in self.findings:
            counts[str(finding.severity)] += 1
        return counts

    @property
    def gate_failed(self) -> bool:
        """Whether a finding reaches ``--fail-on`` (whatever ``--exit-zero`` does to the exit code)."""
        return any(f.severity >= self.config.fail_on for f in self.findings)

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            code = ExitCode.INTERRUPTED
        elif self.gate_failed:
            code = ExitCode.FINDINGS
        elif not self.records:
            code = ExitCode.NO_TENSORS
        else:
            code = ExitCode.OK
        return ExitCode.OK if self.config.exit_zero else code

    @property
    def applicable_rules(self) -> list[str]:
        """Codes of the rules that can fire in this kind of run: ``check`` rules (the WL8xx ones
        only when a path is a PEFT adapter), or for a diff the WL7xx rules and those about files."""
        adapter = any(source.adapter is not None for source in self.sources)
        return [code for code, rule in self.rules.items()
                if rule.always_reported or rule.scope == "file"
                or (rule.diff_only == (self.mode == "diff") and (adapter or not rule.adapter_only))]

    @property
    def selected_rules(self) -> list[str]:
        """Codes of the applicable rules this run's selection can reach (overrides included)."""
        return [code for code in self.applicable_rules
                if self.rules[code].always_reported or self.config.may_select(self.rules[code])]

    @property
    def formats(self) -> list[str]:
        return sorted({source.format for source in self.sources})

    @property
    def health_score(self) -> int:
        """The guide's score: 100 − 10 × errors − 3 × warnings, floor 0 (every profile)."""
        counts = self.counts()
        return max(0, 100 - 10 * counts["error"] - 3 * counts["warning"])

    @property
    def verdict(self) -> str:
        """What to do with the model; it never contradicts the gate.

        Nothing checked (no tensors, an interrupted run) is never "deploy". By default a run that
        fails ``--fail-on`` is "do not deploy" and any other is "deploy". Under ``profile: guide``
        the verdict is the band of the score, except that a failing run is at best "fix before
        deploying" (one NaN: score 90, not "good: deploy").
        """
        if self.interrupted or not self.records:
            return "nothing checked"
        if self.config.profile != "guide":
            return "do not deploy" if self.gate_failed else "deploy"
        band = next(text for floor, text in GUIDE_VERDICTS if self.health_score >= floor)
        return GUIDE_VERDICTS[1][1] if self.gate_failed and band == GUIDE_VERDICTS[0][1] else band

    def quantization_plan(self) -> dict[str, list[str]]:
        """The guide's quantization config: which layers can go int8, need per-channel/int16, stay fp16."""
        plan: dict[str, list[str]] = {"int8": [], "int8-per-channel": [], "int16": [], "fp16": []}
        for name, entry in self.tensors.items():
            recommended = entry.get("quantization", {}).get("recommended")
            if recommended:
                plan[recommended].append(name)
        return plan

    def summary(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "health_score": self.health_score,
            "verdict": self.verdict,
            "profile": self.config.profile,
            "exit_code": int(self.exit_code),
            "fail_on": str(self.config.fail_on),
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "interrupted": self.interrupted,
            "suppressed": len(self.suppressed),
            **({"config": self.config.source} if self.config.source else {}),
            **({"baseline": {"file": self.config.baseline, "known": len(self.baselined),
                             "disappeared": self.baseline_fixed}} if self.config.baseline else {}),
        }

    def model(self) -> dict[str, Any]:
        return {
            **({"compared": self.compared} if self.compared else {}),
            "paths": self.paths,
            "format": self.formats[0] if len(self.formats) == 1 else self.formats,
            "sources": [source.describe() for source in self.sources],
            "tensor_count": len(self.records),
            "parameter_count": self.parameter_count,
        }
