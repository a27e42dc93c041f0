"""Two checkpoints compared tensor by tensor, streamed: two tensors in memory at a time.

Tensors are matched by name. For each pair of judged tensors of one shape the change is measured
in float64, in blocks (or, against a :mod:`summary <weightlint.diff.summary>` of the old
checkpoint, estimated from a sample): the norms, ``l2_norm_ratio`` (‖NEW‖/‖OLD‖, the guide's name), the relative
change ‖NEW−OLD‖/‖OLD‖, the cosine similarity, and (for matrices, when spectra are on) the ratio of
condition numbers. Tensors added, removed, reshaped or re-typed are listed. The WL7xx rules judge
the pairs (``weightlint_check_pair``) and the whole diff (``weightlint_check_diff``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from weightlint.config import Config, limits
from weightlint.diff.measures import change_statistics, chunked_change_statistics
from weightlint.diff.summary import (CheckpointSummary, TensorSummary, compare, spectra_of, spectral_change, summarize,
                                     summarize_chunks)
from weightlint.execution.report import Report
from weightlint.execution.session import Session
from weightlint.execution.targets import in_natural_order, sources_for
from weightlint.finding import Finding
from weightlint.record import TensorRecord
from weightlint.sources.base import Problem
from weightlint.stats import TensorStats, is_giant

@dataclass
class TensorPair:
    """One tensor in both checkpoints, and how it changed (the tensor data itself is gone)."""

    old: TensorRecord
    new: TensorRecord
    stats: dict[str, Any]

    @property
    def name(self) -> str:
        return self.new.name

    @property
    def file(self) -> str:
        return self.new.file


@dataclass
class DiffView:
    """What ``weightlint_check_diff`` sees: every compared pair and the structural changes."""

    pairs: list[TensorPair]
    added: list[TensorRecord] = field(default_factory=list)
    removed: list[TensorRecord] = field(default_factory=list)
    reshaped: list[tuple[TensorRecord, TensorRecord]] = field(default_factory=list)
    retyped: list[tuple[TensorRecord, TensorRecord]] = field(default_factory=list)
    # (old, new) records of one shape, both judged: the pairs to measure (re-typed ones included).
    comparable: list[tuple[TensorRecord, TensorRecord]] = field(default_factory=list)


CHUNK = 1 << 20  # values per chunk of a one-pass summary: 4 MB of float32, in the CPU's caches


class DiffSession(Session):
    """``weightlint diff OLD NEW``: the sources of both sides, the file rules and the WL7xx rules.

    ``old`` is a list of targets (both checkpoints are read and every statistic is exact), or the
    :class:`CheckpointSummary` of an earlier checkpoint: then only the new one is read, once, into
    its own summary (``self.summary``, for the next comparison) and the relative change is
    estimated from the samples. ``spectra`` adds the condition-number ratio of every matrix (an
    SVD-based spectrum per matrix and checkpoint: the expensive part); without it the diff is a
    pass over the data.
    """

    def __init__(self, old: Sequence[Any] | CheckpointSummary, new: Sequence[Any], config: Config | None = None,
                 config_file: Any = None, spectra: bool = True, known: CheckpointSummary | None = None) -> None:
        super().__init__(list(new), config, config_file=config_file)
        self.spectra = spectra
        self.known = known  # the new checkpoint's summary, made elsewhere (a Ray task): its tensors are not read again
        self.old_summary = old if isinstance(old, CheckpointSummary) else None
        self.summary: CheckpointSummary | None = None
        if self.old_summary is not None:
            self.old_paths, self.old_sources = list(self.old_summary.paths), []
        else:
            with limits.using(self.config.limits):
                self.old_paths, self.old_sources, notes = sources_for(list(old), architecture=False)
            self.notes.extend(notes)

    def _run(self) -> Report:
        started = time.perf_counter()
        new_sources, self.sources = self.sources, self.old_sources
        old_records, problems = self._read_sources()
        self.sources = new_sources
        if self.old_summary is not None:
            old_records = self.old_summary.records
        new_records, new_problems = self._read_sources()
        problems.extend(new_problems)
        new_records = in_natural_order(new_records)
        report = Report(paths=self.old_paths + self.paths, sources=self.old_sources + self.sources,
                        records=new_records, findings=[], tensors={}, rules=self.rules, config=self.config,
                        device="cpu", seconds=0.0, mode="diff",
                        compared={"old": self.old_paths, "new": self.paths},
                        notes=[*self.notes, *(n for s in self.old_sources + self.sources for n in s.notes)])
        view = _match(old_records, new_records)
        pairs = (self._compared(view, problems) if self.old_summary is None
                 else self._summarised(view, new_records, problems))
        try:
            for pair in pairs:
                report.findings.extend(self._call_builtin_safe("weightlint_check_pair", f"tensor {pair.name}",
                                                               dict(pair=pair), pair.file))
                report.tensors[pair.name] = {**pair.new.describe(), "diff": pair.stats}
                view.pairs.append(pair)
        except KeyboardInterrupt:
            report.interrupted = True
        for problem in problems:
            report.findings.extend(self._call_builtin_safe("weightlint_file_problem", problem.file,
                                                           dict(problem=problem), problem.file))
        if not report.interrupted:
            report.findings.extend(self._call_builtin_safe("weightlint_check_diff", "the diff", dict(diff=view),
                                                           self.paths[0] if self.paths else "the diff"))
        report.findings = self.policy.apply(report.findings, report)
        report.findings.sort(key=lambda f: f.sort_key)
        report.seconds = time.perf_counter() - started
        return report

    def _compared(self, view: DiffView, problems: list[Problem]) -> Iterator[TensorPair]:
        """Each comparable pair with its exact change statistics, here or on Ray."""
        if self.config.executor == "ray":
            return self._compared_on_ray(view, problems)
        return compare_pairs(view.comparable, self.spectra, problems)

    def _compared_on_ray(self, view: DiffView, problems: list[Problem]) -> Iterator[TensorPair]:
        """One Ray task per pair of files (old shard, new shard); pairs in memory compared here.
        Yields in the view's order once every task is back (or Ctrl-C: those that finished)."""
        import os
        from collections import defaultdict
        from contextlib import closing

        from weightlint.execution.errors import internal_problem
        from weightlint.execution.ray_executor import TaskFailed, TaskRunner, compare_files

        by_files: dict[tuple[str, str], list[tuple[TensorRecord, TensorRecord]]] = defaultdict(list)
        local = []
        for old, new in view.comparable:
            paths = (os.path.abspath(old.file), os.path.abspath(new.file))
            (by_files[paths] if all(os.path.isfile(path) for path in paths) else local).append((old, new))
        stats_of = {(pair.old.file, pair.new.name): pair.stats for pair in compare_pairs(local, self.spectra, problems)}
        groups = list(by_files.items())
        calls = [((old_path, new_path, pairs[0][0].file, pairs[0][1].file),
                  [(old.name, new.name, old.layout, new.layout, dict(new.metadata)) for old, new in pairs],
                  self.spectra, self.config.limits)
                 for (old_path, new_path), pairs in groups]
        runner = TaskRunner(self.config.ray_address, compare_files)
        weights = [sum(new.numel for _, new in group) for _, group in groups]
        try:
            with closing(runner.run(calls, weights)) as finished:
                for index, result in finished:
                    if isinstance(result, TaskFailed):
                        problems.append(internal_problem(groups[index][1][0][1].file, RuntimeError(
                            f"the Ray task failed on every try: {result}")))
                        continue
                    compared, task_problems = result
                    problems.extend(task_problems)
                    old_file = groups[index][1][0][0].file
                    stats_of.update({(old_file, name): stats for name, stats in compared})
        except KeyboardInterrupt:
            yield from _pairs_in_order(view.comparable, stats_of)
            raise
        yield from _pairs_in_order(view.comparable, stats_of)

    def _summarised(self, view: DiffView, new_records: list[TensorRecord],
                    problems: list[Problem]) -> Iterator[TensorPair]:
        """Every judged new tensor read once into ``self.summary``; the comparable ones compared
        with the old summary."""
        old_summaries = self.old_summary.tensors
        old_of = {new.name: old for old, new in view.comparable if old.name in old_summaries}
        self.summary = CheckpointSummary(list(self.paths), new_records)
        for record in new_records:
            summary = self._known_or_read(record, problems) if record.is_judged else None
            if summary is None:
                continue
            self.summary.tensors[record.name] = summary
            if record.name in old_of:
                yield TensorPair(old_of[record.name], record, compare(old_summaries[record.name], summary))

    def _known_or_read(self, record: TensorRecord, problems: list[Problem]) -> TensorSummary | None:
        """The tensor's summary from ``known`` when it holds it; else read here (where a tensor the
        task could not read fails again, as the file's problem)."""
        known = self.known.tensors.get(record.name) if self.known is not None else None
        return known if known is not None else self._summary_of(record, problems)

    def _summary_of(self, record: TensorRecord, problems: list[Problem]) -> TensorSummary | None:
        """One pass over the tensor in chunks when its source reads them (spectra need it whole,
        unless it is a giant one, whose spectra come from row blocks)."""
        if record.chunks is not None and (is_giant(record) or not (self.spectra and record.is_matrix)):
            return _chunked_summary(record, self.spectra, problems)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            values = _values(record, problems)
            return summarize(record, values, self.spectra) if values is not None else None


class SummarySession(Session):
    """A check that also keeps the checkpoint's summary (``self.summary``): how a run's first
    checkpoint is read, once, before there is anything to compare it with."""

    def __init__(self, targets: Sequence[Any], config: Config | None = None, config_file: Any = None,
                 spectra: bool = False) -> None:
        super().__init__(list(targets), config, config_file=config_file)
        self.spectra = spectra
        self.summary = CheckpointSummary(list(self.paths))

    def _check_tensor(self, record: TensorRecord, values: Any = None,
                      load_error: Exception | None = None) -> tuple[list[Finding], dict, Problem | None]:
        if values is None and load_error is None and is_giant(record, self.device):
            # Checked in row blocks, then summarized in a pass of its own: never in memory whole.
            result = super()._check_tensor(record)
            if result[2] is None:
                problems: list[Problem] = []
                summary = _chunked_summary(record, self.spectra, problems)
                if summary is not None:
                    self.summary.tensors[record.name] = summary
                elif problems:
                    result = (result[0], result[1], problems[0])
            return result
        if record.is_judged and values is None and load_error is None:
            try:
                values = TensorStats.load_values(record, self.device)
            except Exception as error:  # reported by the check as the file's problem
                load_error = error
        result = super()._check_tensor(record, values, load_error)
        if values is not None and result[2] is None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self.summary.tensors[record.name] = summarize(record, values, self.spectra)
        return result

    def _run(self) -> Report:
        report = super()._run()
        self.summary.records = report.records
        return report


def screening(config: Config) -> Config:
    """The configuration for a run's first checkpoint: with nothing to compare it with, its files
    and NaN/Inf (WL0xx, WL100) are checked."""
    config = copy.deepcopy(config)
    config.select, config.extend_select = ["WL0", "WL100"], []
    config.explicit = set(config.explicit) | {"select", "extend_select"}
    return config


class UnreadableTensor(Exception):
    """A tensor's data could not be read: the file's problem, reported as such."""

    def __init__(self, record: TensorRecord, error: Exception) -> None:
        super().__init__(str(error))
        self.problem = Problem("unreadable", record.file, f"tensor data unreadable: {error}", tensor=record.name)


def _chunks_of(record: TensorRecord) -> Iterator[np.ndarray]:
    try:
        yield from record.chunks(CHUNK)
    except Exception as error:
        raise UnreadableTensor(record, error) from error


def _values(record: TensorRecord, problems: list[Problem]) -> Any:
    """The record's values as float32 on the CPU, or None with an "unreadable" problem noted."""
    try:
        return TensorStats.load_values(record, "cpu")
    except Exception as error:
        problems.append(UnreadableTensor(record, error).problem)
        return None


def _chunked_summary(record: TensorRecord, spectra: bool, problems: list[Problem]) -> TensorSummary | None:
    """A summary from one pass in chunks, with spectra from row blocks (a giant matrix's)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            summary = summarize_chunks(record, _chunks_of(record))
        except UnreadableTensor as failure:
            problems.append(failure.problem)
            return None
        if spectra and summary.finite and record.is_matrix:
            summary.condition_number, summary.stable_rank = spectra_of(record)
    return summary


def compare_pairs(pairs: Sequence[tuple[TensorRecord, TensorRecord]], spectra: bool,
                  problems: list[Problem]) -> Iterator[TensorPair]:
    """Each (old, new) pair with its exact change statistics: read in chunks side by side when
    both sources can, else one pair of whole tensors in memory at a time (spectra need them, but
    for giant matrices, whose spectra come from row blocks)."""
    for old, new in pairs:
        chunked = old.chunks is not None and new.chunks is not None
        whole = spectra and new.is_matrix and not (chunked and (is_giant(old) or is_giant(new)))
        if not whole and chunked:
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    stats = chunked_change_statistics(zip(_chunks_of(old), _chunks_of(new)))
                    if spectra and new.is_matrix and stats["finite"]:
                        stats.update(spectral_change(spectra_of(old), spectra_of(new)))
            except UnreadableTensor as failure:
                problems.append(failure.problem)
                continue
            yield TensorPair(old, new, stats)
            continue
        old_values = _values(old, problems)
        new_values = _values(new, problems) if old_values is not None else None
        if new_values is None:
            continue
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            stats = change_statistics(np.asarray(old_values), np.asarray(new_values))
            if spectra and new.is_matrix and stats["finite"]:
                stats.update(spectral_change(spectra_of(old, old_values), spectra_of(new, new_values)))
        del old_values, new_values
        yield TensorPair(old, new, stats)


def _pairs_in_order(comparable: list[tuple[TensorRecord, TensorRecord]],
                    stats_of: dict[tuple[str, str], dict[str, Any]]) -> Iterator[TensorPair]:
    for old, new in comparable:
        stats = stats_of.get((old.file, new.name))
        if stats is not None:
            yield TensorPair(old, new, stats)


def _match(old_records: list[TensorRecord], new_records: list[TensorRecord]) -> DiffView:
    """Pairs by name, in the new checkpoint's order; what was added, removed, reshaped, re-typed."""
    old_by_name = {record.name: record for record in old_records}
    new_names = {record.name for record in new_records}
    view = DiffView(pairs=[])
    for new in new_records:
        old = old_by_name.get(new.name)
        if old is None:
            view.added.append(new)
            continue
        if tuple(old.shape) != tuple(new.shape):
            view.reshaped.append((old, new))
            continue
        if old.dtype_name != new.dtype_name:
            view.retyped.append((old, new))
        if old.is_judged and new.is_judged:
            view.comparable.append((old, new))
    view.removed = [record for record in old_records if record.name not in new_names]
    return view


def diff(old: Any, new: Any, config: Config | None = None, config_file: str | None = None, spectra: bool = True,
         **settings: Any) -> Report:
    """Compare two checkpoints of one model from Python (paths, modules or dicts of tensors)."""
    from weightlint.execution.session import _config_from

    config, raw = _config_from(config, config_file, settings)
    old_targets = old if isinstance(old, (list, tuple)) else [old]
    new_targets = new if isinstance(new, (list, tuple)) else [new]
    return DiffSession(old_targets, new_targets, config, config_file=raw, spectra=spectra).run()
