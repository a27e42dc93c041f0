"""The session: resolve paths, stream tensors through the rules, collect a report."""

from __future__ import annotations

import copy
import glob
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from weightlint.architecture import annotate_sources
from weightlint.config import PROFILES, CheckContext, Config, selector_matches
from weightlint.exitcodes import ExitCode
from weightlint.finding import Finding, Severity
from weightlint.plugins import build_plugin_manager, collect_rules
from weightlint.record import TensorRecord
from weightlint.rule import Rule
from weightlint import limits
from weightlint.rules import BUILTIN
from weightlint.sources import MemorySource, Problem, Source, resolve
from weightlint.sources.base import display_path, limit_problem, short_reason
from weightlint.stats import TensorStats

if TYPE_CHECKING:
    from weightlint.configfile import RawConfig

# Cheap groups every judged tensor reports, whatever rules ran (one pass over the data each).
ALWAYS_COMPUTED = ("finite", "norms", "sparsity")
# The guide's bands of the health score (``profile: guide``); the default verdict follows the gate.
GUIDE_VERDICTS = ((80, "good: deploy"), (60, "fix before deploying"), (0, "do not deploy"))


class UsageError(Exception):
    """Bad invocation: exit code 4."""


class RuleError(Exception):
    """A plugin raised while checking: exit code 3 for a third-party plugin, WL008 for a built-in."""

    def __init__(self, plugin: str, where: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed on {where}: {type(error).__name__}: {error}")
        self.original = error
        self.builtin = plugin in BUILTIN


def internal_problem(file: str, error: BaseException, tensor: str | None = None) -> Problem:
    """WL008: weightlint's own code failed on this file or tensor; the run goes on without it."""
    if isinstance(error, MemoryError):
        reason = "out of memory while checking it"
    else:
        reason = f"{type(error).__name__}: {short_reason(error)}"
    return Problem("internal-error", file, f"not checked: weightlint failed ({reason})", tensor=tensor)


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
    # Why each suppressed finding was accepted (same order): the entry's reason and where it is.
    suppression_reasons: list[str] = field(default_factory=list)
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
            "paths": self.paths,
            "format": self.formats[0] if len(self.formats) == 1 else self.formats,
            "sources": [source.describe() for source in self.sources],
            "tensor_count": len(self.records),
            "parameter_count": self.parameter_count,
        }


def _gpu_driver_present() -> bool:
    """An NVIDIA or ROCm driver on this machine (checked without importing torch)."""
    return (os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))
            or os.path.exists("/dev/kfd"))


def cuda_available() -> bool:
    """Whether torch can use a GPU. Without a GPU driver torch is not imported to find out."""
    if "torch" not in sys.modules and not _gpu_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device {device}: expected auto, cpu or cuda")
    return device


def _sources_for(targets: Iterable[Any], architecture: bool = True) -> tuple[list[str], list[Source]]:
    paths, sources = [], []
    for target in targets:
        if isinstance(target, (str, os.PathLike)):
            try:
                found = resolve(target, architecture=architecture)
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


def _check_selectors(config: Config, rules: dict[str, Rule]) -> None:
    """A malformed code or an unknown rule name in a selection is the user's mistake, not an empty
    selection. A well-formed code or prefix (``WL990``) may name a plugin's rule that this run did
    not load (or blocked with ``-p no:``), and is accepted."""
    import difflib
    import re

    names = [*rules, *(rule.name for rule in rules.values())]
    for option, selectors in (("select", config.select), ("extend-select", config.extend_select),
                              ("ignore", config.ignore)):
        for selector in selectors:
            well_formed_code = re.fullmatch(r"WL\d{1,3}", selector.strip().upper())
            if not well_formed_code and not any(selector_matches(selector, rule) for rule in rules.values()):
                word = selector.strip().upper() if selector.strip().upper().startswith("WL") else selector.strip()
                close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else " (`weightlint rules` lists them)"
                raise UsageError(f"--{option} {selector}: no rule has this code or name{hint}")


def _scan_only_problems(source: Source) -> list[Problem]:
    """WL002 (or why not) for the pickles beside a source that are only checked for unsafe globals;
    one that pickles nothing but inert trainer state gets a note instead."""
    from weightlint.sources.torch_pickle import scan_problem

    problems = []
    for path in source.scan_only:
        try:
            problem = scan_problem(path)
        except limits.LimitExceeded as error:
            problem = limit_problem(display_path(path), error)
        except Exception as error:
            problem = internal_problem(path, error)
        if problem is not None and problem.detail.get("inert"):  # healthy trainer state: a note, not a finding
            source.notes.append(f"{problem.file}: {problem.reason}")
        elif problem is not None:
            problems.append(problem)
    return problems


def _inside_targets(config_path: str, targets: Sequence[Any]) -> bool:
    """Whether a configuration file lies in a scanned folder (or beside a scanned file): then it
    may have come with the download it configures."""
    config_folder = os.path.dirname(os.path.abspath(config_path))
    for target in targets:
        if not isinstance(target, (str, os.PathLike)):
            continue
        path = os.path.abspath(os.fspath(target))
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        if config_folder == folder or config_folder.startswith(folder + os.sep):
            return True
    return False


class _Budget:
    """A counting semaphore over tensor sizes (number of values in flight)."""

    def __init__(self, capacity: int) -> None:
        import threading

        self.capacity = capacity
        self.free = capacity
        self.condition = threading.Condition()

    def acquire(self, weight: int) -> None:
        weight = min(weight, self.capacity)
        with self.condition:
            while self.free < weight:
                self.condition.wait(timeout=0.2)  # a timeout keeps Ctrl-C responsive
            self.free -= weight

    def release(self, weight: int) -> None:
        with self.condition:
            self.free += min(weight, self.capacity)
            self.condition.notify_all()


class _thread_limit:
    """BLAS (and, when imported, PyTorch) threads per job while ``limit`` holds, so that N jobs do
    not oversubscribe the cores; restored afterwards."""

    def __init__(self, threads: int, limit: bool) -> None:
        self.threads, self.limit = threads, limit
        self._torch_threads: int | None = None
        self._limiter: Any = None

    def __enter__(self) -> "_thread_limit":
        torch = sys.modules.get("torch")
        if torch is not None:
            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        if self.limit:
            import scipy.linalg  # noqa: F401 - its BLAS must be loaded for the limit to reach it
            from threadpoolctl import threadpool_limits

            self._limiter = threadpool_limits(limits=self.threads, user_api="blas")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
        torch = sys.modules.get("torch")
        if torch is not None and self._torch_threads is not None:
            torch.set_num_threads(self._torch_threads)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Session:
    """One run over some targets with one configuration."""

    # Values (not bytes) that may be in flight at once, beyond the largest tensor: ~32M float32
    # values with their temporaries stay well under 1 GB.
    budget_values = 1 << 25

    def __init__(self, targets: Sequence[Any], config: Config | None = None,
                 progress: Callable[[TensorRecord | None, int, int], None] | None = None,
                 config_file: "RawConfig | None" = None) -> None:
        from weightlint import configfile

        self.config = config or Config()
        if self.config.profile not in PROFILES:
            raise UsageError(f"unknown profile {self.config.profile!r}: expected one of {', '.join(PROFILES)}")
        self.manager = build_plugin_manager(
            self.config.plugins, config_plugins=configfile.plugins_of(config_file),
            config_folder=os.path.dirname(os.path.abspath(config_file.path)) if config_file is not None else None)
        self.rules = collect_rules(self.manager)
        # What the command line (or the API) alone asked for: the only say over unsafe-pickle
        # findings when the configuration file lies inside a scanned folder.
        self.command_line = copy.deepcopy(self.config)
        self.untrusted_config = config_file is not None and _inside_targets(config_file.path, targets)
        self.protection_notes: list[str] = []
        if config_file is not None:
            configfile.apply(config_file, self.config, self.rules)
        _check_selectors(self.config, self.rules)
        self.device = resolve_device(self.config.device)
        self.cores = available_cores()
        # Default: one job per two cores on the CPU, each with two BLAS threads, plus a reader
        # thread when that is one job. LAPACK's symmetric eigensolvers scale poorly past a few
        # threads, so independent tensors use a large machine better; but one BLAS thread per job
        # was measured slowest on two cores (shard 2 of the 1.1B checkpoint: 12.1 s with two jobs
        # of one thread, 10.4 s with one job of two). Two jobs on a GPU (one computing while the
        # next tensor is read and copied over).
        default_jobs = 2 if self.device.startswith("cuda") else max(1, self.cores // 2)
        self.jobs = max(1, self.config.jobs or default_jobs)
        self.context = CheckContext(self.config, self.rules, self.device)
        if self.untrusted_config:
            self.context.pinned["WL002"] = self.command_line
        self.groups = tuple(dict.fromkeys(ALWAYS_COMPUTED + tuple(
            group for rule in self.rules.values() if self.config.may_select(rule) for group in rule.statistics)))
        # The model skeleton from config.json — module types, layouts and ties for every rule, and
        # WL003–WL005 — unless the architecture plugin is blocked (`-p no:architecture`), which also
        # spares the import of transformers.
        architecture = self.manager.get_plugin("architecture") is not None
        with limits.using(self.config.limits):
            self.paths, self.sources = _sources_for(targets, architecture)
        self.progress = progress

    def run(self) -> Report:
        with limits.using(self.config.limits):
            return self._run()

    def _read_sources(self) -> tuple[list[TensorRecord], list[Problem]]:
        """Every source's records and problems. A source that fails half-way keeps what it yielded,
        and its failure is one WL009 (a limit) or WL008 (anything else) finding: the next source is
        still read."""
        records: list[TensorRecord] = []
        problems: list[Problem] = []
        for source in self.sources:
            problems.extend(source.problems)
            where = source.files[0] if source.files else source.path
            try:
                for item in source.items():
                    if isinstance(item, TensorRecord):
                        item.metadata.setdefault("source", source.path)
                        records.append(item)
                    else:
                        problems.append(item)
            except limits.LimitExceeded as error:
                problems.append(limit_problem(where, error))
            except Exception as error:
                problems.append(internal_problem(where, error))
            problems.extend(_scan_only_problems(source))
        return records, problems

    def _run(self) -> Report:
        started = time.perf_counter()
        records, problems = self._read_sources()
        annotate_sources(self.sources, records)  # module types, layouts and ties from config.json, before any rule
        report = Report(paths=self.paths, sources=self.sources, records=records, findings=[],
                        tensors={}, rules=self.rules, config=self.config, device=self.device, seconds=0.0,
                        notes=[note for source in self.sources for note in source.notes])
        stats_by_key: dict[str, dict[str, Any]] = {}
        try:
            for record, (findings, computed, problem) in self._stream(records):
                report.findings.extend(findings)
                if problem is not None:
                    problems.append(problem)
                stats_by_key[_key(record)] = computed
                report.tensors[self._tensor_key(record, report.tensors)] = {**record.describe(), **computed}
        except KeyboardInterrupt:
            report.interrupted = True
        # Problems with files are known before any tensor is checked: report them even when interrupted.
        for problem in problems:
            report.findings.extend(self._call_builtin_safe("weightlint_file_problem", problem.file,
                                                           dict(problem=problem), problem.file))
        if not report.interrupted:  # model-level rules need every tensor
            view = ModelView(records=records, tensor_stats=stats_by_key, findings=list(report.findings),
                             sources=self.sources)
            report.findings.extend(self._call_builtin_safe("weightlint_check_model", "the model", dict(model=view),
                                                           self.paths[0] if self.paths else "the model"))
        report.findings = self._suppress(self._filter(report.findings), report)
        if self.config.baseline:
            report.findings = self._apply_baseline(report.findings, report)
        if self.untrusted_config and self.config.exit_zero and "exit_zero" not in self.config.explicit and any(
                self._protected(f) for f in report.findings):
            self.config.exit_zero = False
            self.protection_notes.append(f"{self.config.source}: lies inside a scanned folder and set exit-zero while "
                                         "an unsafe pickle was found; not honoured")
        report.notes.extend(self.protection_notes)
        report.findings.sort(key=lambda f: f.sort_key)
        report.seconds = time.perf_counter() - started
        return report

    def _stream(self, records: list[TensorRecord]) -> Iterator[tuple[TensorRecord, tuple]]:
        """Check every record, ``jobs`` at a time, yielding results in record order.

        Tensors in flight are bounded by a budget of values (at least the largest tensor), so peak
        memory grows with the largest tensor and the number of jobs, not with the model. One more
        task than jobs runs so that reading the next tensor overlaps computing the current one.
        """
        total = sum(record.numel for record in records) or 1
        done = 0

        def advance(record: TensorRecord | None) -> None:
            nonlocal done
            if record is not None:
                done += record.numel
            if self.progress:
                self.progress(record, done, total)

        with _thread_limit(max(1, self.cores // self.jobs), self.jobs > 1):
            if self.jobs == 1:
                yield from self._stream_read_ahead(records, advance)
            else:
                yield from self._stream_parallel(records, advance)
            advance(None)

    def _stream_read_ahead(self, records, advance) -> Iterator[tuple[TensorRecord, tuple]]:
        """One tensor at a time with every core, while a reader thread loads the next one."""
        from concurrent.futures import ThreadPoolExecutor

        def load(record: TensorRecord):
            try:
                return TensorStats.load_values(record, self.device), None
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as error:  # reported as the file's problem by _check_tensor
                return None, error

        judged = list(records)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="weightlint-reader") as reader:
            upcoming = reader.submit(load, judged[0]) if judged and judged[0].is_judged else None
            for index, record in enumerate(judged):
                current = upcoming
                following = judged[index + 1] if index + 1 < len(judged) else None
                upcoming = reader.submit(load, following) if following is not None and following.is_judged else None
                loaded = current.result() if current is not None else (None, None)
                result = self._check_tensor(record, *loaded)
                advance(record)
                yield record, result

    def _stream_parallel(self, records, advance) -> Iterator[tuple[TensorRecord, tuple]]:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        largest = max((r.numel for r in records if r.is_judged), default=0)
        budget = _Budget(max(largest, self.budget_values))
        pool = ThreadPoolExecutor(max_workers=self.jobs + 1, thread_name_prefix="weightlint")
        pending: deque = deque()

        def task(record: TensorRecord, weight: int):
            try:
                return self._check_tensor(record)
            finally:
                budget.release(weight)

        try:
            for record in records:
                weight = record.numel if record.is_judged else 0
                budget.acquire(weight)
                pending.append((record, pool.submit(task, record, weight)))
                while pending and pending[0][1].done():
                    head, future = pending.popleft()
                    advance(head)
                    yield head, future.result()
            while pending:
                head, future = pending.popleft()
                result = future.result()
                advance(head)
                yield head, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _check_tensor(self, record: TensorRecord, values: Any = None,
                      load_error: Exception | None = None) -> tuple[list[Finding], dict, Problem | None]:
        """Statistics and per-tensor rules for one record: (findings, computed statistics, problem)."""
        if not record.is_judged:
            return [], {}, None
        stats = TensorStats(record, self.device, values=values)
        try:
            if load_error is not None:
                raise load_error
            stats.values  # noqa: B018 - reads the data; a failure here is the file's, not ours
        except MemoryError as error:
            return [], {}, internal_problem(record.file, error, tensor=record.name)
        except Exception as error:
            return [], {}, Problem("unreadable", record.file, f"tensor data unreadable: {error}", tensor=record.name)
        try:
            for group in self.groups:
                getattr(stats, group)
            findings = self._call("weightlint_check_tensor", f"tensor {record.name}",
                                  [dict(tensor=record, stats=stats)])
            computed = stats.computed()
        except RuleError as error:
            if not error.builtin:
                raise
            return [], {}, internal_problem(record.file, error.original, tensor=record.name)
        except Exception as error:  # the statistics themselves
            return [], {}, internal_problem(record.file, error, tensor=record.name)
        finally:
            stats.release()
        return findings, computed, None

    def _call_builtin_safe(self, hook_name: str, where: str, kwargs: dict, file: str) -> list[Finding]:
        """One hook call; a built-in rule's failure becomes a WL008 finding on ``file``."""
        try:
            return self._call(hook_name, where, [kwargs])
        except RuleError as error:
            if not error.builtin:
                raise
            problem = internal_problem(file, error.original)
            return self._call("weightlint_file_problem", "an internal error", [dict(problem=problem)])

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
            rule = self.rules.get(finding.code)
            if rule is not None and rule.always_reported:
                kept.append(finding)
                continue
            if self._protected(finding):
                base = self.command_line.for_tensor(finding.tensor, finding.file, self.rules)
                if base.is_selected(rule) and self._file_would_hide(finding, rule):
                    self._protection_note(finding, "deselect or downgrade")
                config = base
            else:
                config = self.config.for_tensor(finding.tensor, finding.file, self.rules)
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
            match = None if self._always_reported(finding) else next(
                (s for s in active if s.matches(finding, self.rules)), None)
            if match is not None and self._protected(finding):
                self._protection_note(finding, "suppress")
                match.used += 1  # it matched; the note says why it did not apply (not WL010)
                match = None
            if match is None:
                kept.append(finding)
            else:
                match.used += 1
                report.suppressed.append(finding)
                report.suppression_reasons.append(f"{match.reason} ({match.where})" if match.where else match.reason)
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
        trusted_baseline = "baseline" in self.config.explicit or not self.untrusted_config
        for finding in findings:
            if finding_key(finding) in known and self._protected(finding) and not trusted_baseline:
                self._protection_note(finding, "baseline")
        kept = [f for f in findings if finding_key(f) not in known or self._always_reported(f)
                or (self._protected(f) and not trusted_baseline)]
        report.baselined = [f for f in findings if f not in kept]
        report.baseline_fixed = len(known - {finding_key(f) for f in findings})
        return kept

    def _protected(self, finding: Finding) -> bool:
        """An unsafe-pickle finding while the configuration file lies inside a scanned folder: a
        downloaded model must not be able to silence the warning about itself."""
        return self.untrusted_config and finding.code == "WL002"

    def _file_would_hide(self, finding: Finding, rule: Rule | None) -> bool:
        config = self.config.for_tensor(finding.tensor, finding.file, self.rules)
        severity = config.severity_for(finding.code)
        return (rule is not None and not config.is_selected(rule)) or (severity is not None and severity < finding.severity)

    def _protection_note(self, finding: Finding, attempt: str) -> None:
        note = (f"{self.config.source}: lies inside a scanned folder and tried to {attempt} the unsafe-pickle "
                f"finding on {finding.file}; not honoured (only the command line or a configuration outside "
                "the scanned folders can)")
        if note not in self.protection_notes:
            self.protection_notes.append(note)

    def _always_reported(self, finding: Finding) -> bool:
        rule = self.rules.get(finding.code)
        return rule is not None and rule.always_reported

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
