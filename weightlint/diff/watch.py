"""``weightlint watch``: the checkpoints of a run, ordered by step, each compared with the one before.

Checkpoints are found among the children of the given folders (or given directly) by their names:
``checkpoint-200/``, ``step_100.pt``, ``step-100.safetensors``, ``global_step300/``,
``epoch=3-step=1200.ckpt`` …: the step is the number after ``step``, else the last number of the
name. ``follow`` keeps watching for new checkpoints (a checkpoint still being written is waited
for: its files must stop growing and parse) until the timeout or Ctrl-C.
"""

from __future__ import annotations

import copy
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from weightlint.config import Config
from weightlint.execution.report import Report
from weightlint.formatting import number
from weightlint.sources import CHECKPOINT_SUFFIXES

_STEP = re.compile(r"step[_=-]?(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+)")
_CHECKPOINT_NAME = re.compile(r"(checkpoint|step|ckpt|epoch|iter)", re.IGNORECASE)


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip(os.sep))


def step_of(name: str) -> int | None:
    """The training step a checkpoint's name gives (``epoch=3-step=1200.ckpt`` → 1200), or None."""
    stem = name
    for suffix in CHECKPOINT_SUFFIXES:
        stem = stem.removesuffix(suffix)
    match = _STEP.search(stem)
    if match:
        return int(match.group(1))
    numbers = _NUMBER.findall(stem)
    return int(numbers[-1]) if numbers and _CHECKPOINT_NAME.search(stem) else None


def discover(paths: Sequence[str]) -> list[Checkpoint]:
    """The checkpoints in (or named by) ``paths``, ordered by step (then name)."""
    found: dict[str, Checkpoint] = {}
    for path in paths:
        candidates = ([os.path.join(path, entry) for entry in sorted(os.listdir(path))]
                      if os.path.isdir(path) and step_of(os.path.basename(os.path.abspath(path))) is None else [path])
        for candidate in candidates:
            name = os.path.basename(candidate.rstrip(os.sep))
            step = step_of(name)
            is_checkpoint = os.path.isdir(candidate) or name.endswith(CHECKPOINT_SUFFIXES)
            if step is not None and is_checkpoint:
                found[os.path.abspath(candidate)] = Checkpoint(step, candidate)
    return sorted(found.values(), key=lambda checkpoint: (checkpoint.step, checkpoint.name))


def _size(path: str) -> int:
    """Bytes on disk now (0 for a checkpoint deleted meanwhile, as ``save_total_limit`` does)."""
    try:
        if os.path.isfile(path):
            return os.path.getsize(path)
        return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    except FileNotFoundError:
        return 0


def complete(checkpoints: list[Checkpoint], settle_seconds: float) -> list[Checkpoint]:
    """The checkpoints whose files stopped growing over ``settle_seconds`` (one wait for all) and
    whose weights parse: a save in progress is neither."""
    from weightlint.sources import resolve
    from weightlint.sources.base import Problem

    if not checkpoints:
        return []
    before = {checkpoint: _size(checkpoint.path) for checkpoint in checkpoints}
    time.sleep(settle_seconds)
    settled = [c for c in checkpoints if before[c] and _size(c.path) == before[c]]
    ready = []
    for checkpoint in settled:
        try:
            sources = resolve(checkpoint.path, architecture=False)
        except FileNotFoundError:
            continue
        if sources and not any(isinstance(item, Problem) and item.kind == "unreadable"
                               for source in sources for item in source.items()):
            ready.append(checkpoint)
    return ready


class Watch:
    """Compares consecutive checkpoints; the merged report names the first checkpoint of each alarm.

    Each checkpoint is read once: the first is checked for broken files and NaN/Inf and summarized,
    every later one is compared with the summary of the one before (:mod:`weightlint.diff.summary`),
    so a checkpoint deleted since (``save_total_limit``) still counts. ``exact`` reads both files of
    each pair instead (every checkpoint but the first and last twice) for an exact relative change;
    a checkpoint deleted before its successor was read then ends the comparison chain (a note says so).
    ``on_checkpoint`` is called with each checkpoint and its report as soon as it is linted.
    """

    def __init__(self, paths: Sequence[str], config: Config, config_file: Any = None, spectra: bool = False,
                 follow: bool = False, timeout: float | None = None, poll_seconds: float = 2.0, exact: bool = False,
                 on_checkpoint: Callable[[Checkpoint, Report], None] | None = None) -> None:
        self.paths, self.config, self.config_file = list(paths), config, config_file
        self.spectra, self.follow, self.timeout, self.poll_seconds = spectra, follow, timeout, poll_seconds
        self.exact, self.on_checkpoint = exact, on_checkpoint
        self.screened: list[tuple[Checkpoint, Report]] = []  # checkpoints checked alone (the first)
        self.compared: list[tuple[Checkpoint, Checkpoint, Report]] = []
        self.summary: Any = None  # the CheckpointSummary of the last checkpoint linted
        self.notes: list[str] = []

    def run(self) -> Report:
        from weightlint.execution.errors import UsageError

        started = time.perf_counter()
        done: list[Checkpoint] = []
        interrupted = False
        try:
            while True:
                pending = [c for c in discover(self.paths) if c not in done]
                if self.follow:
                    pending = complete(pending, min(self.poll_seconds, 1.0))
                if self.config.executor == "ray":
                    if pending:
                        self._lint_on_ray(done[-1] if done else None, pending, done)
                else:
                    for checkpoint in pending:
                        self._lint(done[-1] if done else None, checkpoint)
                        done.append(checkpoint)
                if not self.follow or (self.timeout is not None and time.perf_counter() - started > self.timeout):
                    break
                time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            interrupted = True
        if not self.compared:
            raise UsageError(f"{' '.join(self.paths)}: found {len(done)} checkpoint(s) named by step "
                             "(checkpoint-200/, step_100.pt, epoch=3-step=1200.ckpt …); two are needed to compare")
        report = self._merged(done, time.perf_counter() - started)
        report.interrupted = interrupted
        return report

    def _lint(self, previous: Checkpoint | None, checkpoint: Checkpoint) -> None:
        """The first checkpoint checked and summarized; a later one compared with the one before."""
        from weightlint.diff.engine import DiffSession, SummarySession, screening

        if previous is not None and self.exact and not os.path.exists(previous.path):
            self.notes.append(f"{previous.name} was deleted before {checkpoint.name} was read (--exact needs both "
                              "files): compared from the next checkpoint on")
            previous = None
        if previous is None:
            session = SummarySession([checkpoint.path], screening(self.config), config_file=self.config_file,
                                     spectra=self.spectra)
        else:
            old = [previous.path] if self.exact else self.summary
            session = DiffSession(old, [checkpoint.path], copy.deepcopy(self.config), config_file=self.config_file,
                                  spectra=self.spectra)
        report = session.run()
        self.summary = session.summary
        self._record(previous, checkpoint, report)

    def _lint_on_ray(self, previous: Checkpoint | None, pending: list[Checkpoint], done: list[Checkpoint]) -> None:
        """Every pending checkpoint at once on Ray, taken in step order as the results come in.

        As locally, each checkpoint is read once: a task summarizes it (the run's first is also
        checked for broken files and NaN/Inf), and the driver compares each summary with the one
        before (the WL7xx rules; no tensor read again). With ``exact``, each pair of consecutive
        checkpoints is a task comparing both files instead. A task that fails is done here, as
        locally; a checkpoint gone since it was found is left out with a note. Ctrl-C keeps the
        checkpoints compared so far."""
        from contextlib import closing

        from weightlint.execution.ray_executor import TaskRunner, run_session

        config = copy.deepcopy(self.config)
        config.executor = "local"  # inside a task, and for the comparisons here
        jobs, calls = self._ray_jobs(previous, pending, config)
        runner = TaskRunner(self.config.ray_address, run_session)
        results: dict[int, Any] = {}
        next_position = 0
        with closing(runner.run(calls, [len(jobs) - index for index in range(len(jobs))])) as finished:
            for index, result in finished:
                results[index] = result
                while next_position in results:
                    before, checkpoint = jobs[next_position]
                    self._take(before, checkpoint, results.pop(next_position), config)
                    done.append(checkpoint)
                    next_position += 1

    def _ray_jobs(self, previous: Checkpoint | None, pending: list[Checkpoint], config: Config) -> tuple[list, list]:
        """(previous, checkpoint) per pending checkpoint, and the task call for each."""
        from weightlint.diff.engine import screening

        jobs, calls = [], []
        for checkpoint in pending:
            if self.exact and previous is not None and not os.path.exists(previous.path):
                self.notes.append(f"{previous.name} was deleted before {checkpoint.name} was read (--exact needs "
                                  "both files): compared from the next checkpoint on")
                previous = None
            if previous is None:
                call = ("screen", ([checkpoint.path],), screening(config))
            elif self.exact:
                call = ("diff", ([previous.path], [checkpoint.path]), config)
            else:
                call = ("summarize", ([checkpoint.path],), config)
            jobs.append((previous, checkpoint))
            calls.append((*call, self.config_file, self.spectra))
            previous = checkpoint
        return jobs, calls

    def _take(self, previous: Checkpoint | None, checkpoint: Checkpoint, result: Any, config: Config) -> None:
        """One task's result, in step order: a report to record, or a summary to compare with the last."""
        from weightlint.diff.engine import DiffSession
        from weightlint.diff.summary import CheckpointSummary
        from weightlint.execution.errors import UsageError
        from weightlint.execution.ray_executor import TaskFailed

        try:
            if isinstance(result, TaskFailed):
                self.notes.append(f"{checkpoint.name}: the Ray task failed ({result}); linted on this machine")
                comparable = previous is not None and (self.exact or self.summary is not None)
                self._lint(previous if comparable else None, checkpoint)
            elif isinstance(result, tuple):  # screened: (report, summary)
                self.summary = result[1]
                self._record(None, checkpoint, result[0])
            elif isinstance(result, CheckpointSummary):  # compared here with the summary before
                session = DiffSession(self.summary, [checkpoint.path], copy.deepcopy(config),
                                      config_file=self.config_file, spectra=self.spectra, known=result)
                report = session.run()
                self.summary = session.summary
                self._record(previous, checkpoint, report)
            else:  # an exact pair's report
                self._record(previous, checkpoint, result)
        except (UsageError, OSError) as error:
            self.notes.append(f"{checkpoint.name}: not compared ({error})")

    def _record(self, previous: Checkpoint | None, checkpoint: Checkpoint, report: Report) -> None:
        if previous is None:
            self.screened.append((checkpoint, report))
        else:
            self.compared.append((previous, checkpoint, report))
        if self.on_checkpoint:
            self.on_checkpoint(checkpoint, report)

    def _merged(self, checkpoints: list[Checkpoint], seconds: float) -> Report:
        last = self.compared[-1][2]
        reports = [report for _, report in self.screened] + [report for _, _, report in self.compared]
        report = Report(paths=[c.path for c in checkpoints], sources=[s for r in reports for s in r.sources],
                        records=last.records, findings=[f for r in reports for f in r.findings], tensors=last.tensors,
                        rules=last.rules, config=last.config, device="cpu", seconds=seconds, mode="diff",
                        compared={"old": [checkpoints[0].path], "new": [checkpoints[-1].path]})
        report.steps = self._steps()
        reading = "both files of each pair read" if self.exact else "each read once"
        if self.config.executor == "ray":
            reading += ", in parallel on Ray"
        report.notes = [f"compared {len(self.compared)} pairs of consecutive checkpoints ({reading}), steps "
                        f"{', '.join(str(c.step) for c in checkpoints)}", *self.notes, *self._first_alarms(),
                        *self._trend()]
        report.findings.sort(key=lambda f: f.sort_key)
        return report

    def _first_alarms(self) -> list[str]:
        first: dict[str, Checkpoint] = {}
        for _, new, report in [(None, *screened) for screened in self.screened] + self.compared:
            for finding in report.findings:
                first.setdefault(f"{finding.code} {finding.rule} ({finding.severity})", new)
        return [f"first {alarm}: {checkpoint.name} (step {checkpoint.step})" for alarm, checkpoint in first.items()]

    def _steps(self) -> list[dict[str, Any]]:
        """Per compared checkpoint: the median norm ratio of each layer group (weight matrices)."""
        from statistics import median

        from weightlint.roles import stack_role

        steps = []
        for _, new, report in self.compared:
            groups: dict[str, list[float]] = {}
            for name, entry in report.tensors.items():
                ratio = entry.get("diff", {}).get("l2_norm_ratio")
                if ratio is not None and len(entry.get("shape", ())) >= 2:
                    role = stack_role(name)
                    groups.setdefault(role[0] if role else name, []).append(ratio)
            steps.append({"checkpoint": new.name, "step": new.step,
                          "groups": {group: median(values) for group, values in sorted(groups.items())}})
        return steps

    def _trend(self) -> list[str]:
        """Per layer group and step: the median and largest norm ratio, and with spectra the medians
        of the new condition numbers (κ) and stable ranks. One compact line per group."""
        from statistics import median

        from weightlint.roles import stack_role

        groups: dict[str, list[str]] = {}
        for _, new, report in self.compared:
            changes: dict[str, list[dict]] = {}
            for name, entry in report.tensors.items():
                change = entry.get("diff", {})
                if change.get("l2_norm_ratio") is not None and len(entry.get("shape", ())) >= 2:
                    role = stack_role(name)
                    changes.setdefault(role[0] if role else name, []).append(change)
            for group, group_changes in changes.items():
                ratios = sorted(change["l2_norm_ratio"] for change in group_changes)
                point = f"{number(median(ratios))}/{number(ratios[-1])}"
                for key, label in (("new_condition_number", "κ"), ("new_stable_rank", "srank")):
                    values = [change[key] for change in group_changes if change.get(key) is not None]
                    if values:
                        point += f" {label} {number(median(values))}"
                groups.setdefault(group, []).append(f"{point} @{new.step}")
        legend = "norm ratio median/max" + (", medians of κ and stable rank" if self.spectra else "")
        return [f"trend ({legend} @step), {group}: {', '.join(points)}" for group, points in sorted(groups.items())]
