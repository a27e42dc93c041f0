"""The session: resolve paths, stream tensors through the rules, collect a report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch

from weightlint.config import CheckContext, Config
from weightlint.exitcodes import ExitCode
from weightlint.finding import Finding, Severity
from weightlint.plugins import build_plugin_manager, collect_rules
from weightlint.record import TensorRecord
from weightlint.rule import Rule
from weightlint.sources import MemorySource, Problem, Source, resolve
from weightlint.stats import TensorStats

if TYPE_CHECKING:
    from weightlint.configfile import RawConfig

# Cheap groups every judged tensor reports, whatever rules ran (one pass over the data each).
ALWAYS_COMPUTED = ("finite", "norms", "sparsity")
HEALTH_VERDICTS = ((80, "good: deploy"), (60, "fix before deploying"), (0, "do not deploy"))


class UsageError(Exception):
    """Bad invocation: exit code 4."""


class RuleError(Exception):
    """A plugin raised while checking: exit code 3."""

    def __init__(self, plugin: str, where: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed on {where}: {type(error).__name__}: {error}")
        self.original = error


@dataclass
class ModelView:
    """What model-level rules see: every record and its computed statistics, no tensor data."""

    records: list[TensorRecord]
    tensor_stats: dict[str, dict[str, Any]]
    findings: list[Finding]
    sources: list[Source] = field(default_factory=list)

    def stats_of(self, record: TensorRecord) -> dict[str, Any]:
        return self.tensor_stats.get(_key(record), {})


def _key(record: TensorRecord) -> str:
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
    baselined: list[Finding] = field(default_factory=list)
    baseline_fixed: int = 0

    @property
    def parameter_count(self) -> int:
        return sum(record.numel for record in self.records)

    def counts(self) -> dict[str, int]:
        counts = {str(severity): 0 for severity in reversed(Severity)}
        for finding in self.findings:
            counts[str(finding.severity)] += 1
        return counts

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            code = ExitCode.INTERRUPTED
        elif any(f.severity >= self.config.fail_on for f in self.findings):
            code = ExitCode.FINDINGS
        elif not self.records:
            code = ExitCode.NO_TENSORS
        else:
            code = ExitCode.OK
        return ExitCode.OK if self.config.exit_zero else code

    @property
    def formats(self) -> list[str]:
        return sorted({source.format for source in self.sources})

    @property
    def health_score(self) -> int:
        """The guide's score: 100 − 10 × errors − 3 × warnings, floor 0."""
        counts = self.counts()
        return max(0, 100 - 10 * counts["error"] - 3 * counts["warning"])

    @property
    def verdict(self) -> str:
        return next(text for floor, text in HEALTH_VERDICTS if self.health_score >= floor)

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
            "paths": self.paths,
            "format": self.formats[0] if len(self.formats) == 1 else self.formats,
            "sources": [source.describe() for source in self.sources],
            "tensor_count": len(self.records),
            "parameter_count": self.parameter_count,
        }


def resolve_device(device: str) -> str:
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device {device}: expected auto, cpu or cuda")
    return device


def _sources_for(targets: Iterable[Any]) -> tuple[list[str], list[Source]]:
    paths, sources = [], []
    for target in targets:
        if isinstance(target, (str, os.PathLike)):
            try:
                found = resolve(target)
            except FileNotFoundError:
                raise UsageError(f"{os.fspath(target)}: no such file or directory") from None
            paths.append(os.fspath(target))
            sources.extend(found)
        else:
            source = MemorySource(target)
            paths.append(source.path)
            sources.append(source)
    return paths, sources


def _flatten(results: Iterable[Any]) -> list[Finding]:
    findings: list[Finding] = []
    for result in results:
        if result is None:
            continue
        if isinstance(result, Finding):
            findings.append(result)
        else:
            findings.extend(result)
    return findings


class Session:
    """One run over some targets with one configuration."""

    def __init__(self, targets: Sequence[Any], config: Config | None = None,
                 progress: Callable[[TensorRecord | None, int, int], None] | None = None,
                 config_file: "RawConfig | None" = None) -> None:
        from weightlint import configfile

        self.config = config or Config()
        self.manager = build_plugin_manager(self.config.plugins + configfile.plugins_of(config_file))
        self.rules = collect_rules(self.manager)
        if config_file is not None:
            configfile.apply(config_file, self.config, self.rules)
        self.device = resolve_device(self.config.device)
        self.context = CheckContext(self.config, self.rules, self.device)
        self.groups = tuple(dict.fromkeys(ALWAYS_COMPUTED + tuple(
            group for rule in self.rules.values() if self.config.may_select(rule) for group in rule.statistics)))
        self.paths, self.sources = _sources_for(targets)
        self.progress = progress

    def run(self) -> Report:
        started = time.perf_counter()
        records: list[TensorRecord] = []
        problems: list[Problem] = []
        for source in self.sources:
            for item in source.items():
                if isinstance(item, TensorRecord):
                    item.metadata.setdefault("source", source.path)
                    records.append(item)
                else:
                    problems.append(item)
        report = Report(paths=self.paths, sources=self.sources, records=records, findings=[],
                        tensors={}, rules=self.rules, config=self.config, device=self.device, seconds=0.0,
                        notes=[note for source in self.sources for note in source.notes])
        stats_by_key: dict[str, dict[str, Any]] = {}
        try:
            for position, record in enumerate(records):
                if self.progress:
                    self.progress(record, position, len(records))
                computed = self._check_tensor(record, report.findings, problems)
                stats_by_key[_key(record)] = computed
                report.tensors[self._tensor_key(record, report.tensors)] = {**record.describe(), **computed}
            if self.progress:
                self.progress(None, len(records), len(records))
        except KeyboardInterrupt:
            report.interrupted = True
        # Problems with files are known before any tensor is checked: report them even when interrupted.
        report.findings.extend(self._call("weightlint_file_problem", "file problems",
                                          [dict(problem=p) for p in problems]))
        if not report.interrupted:  # model-level rules need every tensor
            view = ModelView(records=records, tensor_stats=stats_by_key, findings=list(report.findings),
                             sources=self.sources)
            report.findings.extend(self._call("weightlint_check_model", "the model", [dict(model=view)]))
        report.findings = self._suppress(self._filter(report.findings), report)
        if self.config.baseline:
            report.findings = self._apply_baseline(report.findings, report)
        report.findings.sort(key=lambda f: f.sort_key)
        report.seconds = time.perf_counter() - started
        return report

    def _check_tensor(self, record: TensorRecord, findings: list[Finding], problems: list[Problem]) -> dict:
        if not record.is_judged:
            return {}
        stats = TensorStats(record, self.device)
        try:
            for group in self.groups:
                getattr(stats, group)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as error:  # the data itself could not be read
            problems.append(Problem("unreadable", record.file, f"tensor data unreadable: {error}", tensor=record.name))
            return {}
        findings.extend(self._call("weightlint_check_tensor", f"tensor {record.name}",
                                   [dict(tensor=record, stats=stats)]))
        computed = stats.computed()
        stats.release()
        return computed

    def _call(self, hook_name: str, where: str, calls: list[dict]) -> list[Finding]:
        hook = getattr(self.manager.hook, hook_name)
        findings: list[Finding] = []
        for kwargs in calls:
            kwargs = {**kwargs, "context": self.context}
            for impl in reversed(hook.get_hookimpls()):
                try:
                    # As pluggy does: an implementation receives only the arguments it names.
                    result = impl.function(*(kwargs[name] for name in impl.argnames))
                except KeyboardInterrupt:
                    raise
                except Exception as error:
                    raise RuleError(impl.plugin_name, where, error) from error
                findings.extend(_flatten([result]))
        return findings

    def _filter(self, findings: list[Finding]) -> list[Finding]:
        """Selection and severity overrides, per tensor (overrides apply in order)."""
        kept = []
        for finding in findings:
            config = self.config.for_tensor(finding.tensor, finding.file, self.rules)
            rule = self.rules.get(finding.code)
            if rule is not None and not config.is_selected(rule):
                continue
            severity = config.severity_for(finding.code)
            if severity is not None:
                finding.severity = severity
            kept.append(finding)
        return kept

    def _suppress(self, findings: list[Finding], report: "Report") -> list[Finding]:
        """Drop findings a suppression accepts; report unused (WL010) and expired (WL011) entries."""
        if not self.config.suppress:
            return findings
        active = [s for s in self.config.suppress if not s.expired()]
        kept = []
        for finding in findings:
            match = next((s for s in active if s.matches(finding, self.rules)), None)
            if match is None:
                kept.append(finding)
            else:
                match.used += 1
                report.suppressed.append(finding)
        file = self.config.source
        for entry in self.config.suppress:
            rule = self.rules.get("WL011" if entry.expired() else "WL010")
            if rule is None or not self.config.is_selected(rule) or (entry.used and not entry.expired()):
                continue
            what = f"suppression of {entry.rule} for {entry.tensor.text}"
            message = (f"{what} expired on {entry.expires.isoformat()}; its findings are reported again"
                       if entry.expired() else f"{what} matched no finding")
            kept.append(rule.finding(f"{message} ({entry.where})", file=file, reason=entry.reason))
        return kept

    def _apply_baseline(self, findings: list[Finding], report: "Report") -> list[Finding]:
        from weightlint.baseline import finding_key, read_baseline

        known = read_baseline(self.config.baseline)
        kept = [f for f in findings if finding_key(f) not in known]
        report.baselined = [f for f in findings if finding_key(f) in known]
        report.baseline_fixed = len(known - {finding_key(f) for f in findings})
        return kept

    @staticmethod
    def _tensor_key(record: TensorRecord, existing: dict) -> str:
        return record.name if record.name not in existing else _key(record)


def check(*targets: Any, config: Config | None = None, config_file: str | None = None, **settings: Any) -> Report:
    """Lint checkpoints from Python: paths, ``nn.Module`` objects or dicts of tensors.

    ``settings`` are :class:`Config` fields (``fail_on="warning"``, ``device="cpu"`` …), which
    override ``config_file`` (a ``weightlint.yaml`` or ``pyproject.toml``; the API does not search
    for one unless told: pass ``config_file="auto"`` to discover it as the command line does).
    """
    from weightlint import configfile

    if config is None:
        if "fail_on" in settings:
            settings["fail_on"] = Severity.parse(settings["fail_on"])
        config = Config(**settings)
        config.explicit = set(settings)
    raw = None
    if config_file == "auto":
        raw = configfile.resolve(None, isolated=False)
    elif config_file is not None:
        raw = configfile.resolve(config_file, isolated=False)
    return Session(list(targets), config, config_file=raw).run()


__all__ = ["Session", "Report", "ModelView", "check", "UsageError", "RuleError"]
