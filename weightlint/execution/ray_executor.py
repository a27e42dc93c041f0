"""``--executor ray``: a run's work as Ray tasks, for ``check``, ``diff`` and ``watch``.

- ``check``: the seam is the session's stream, a callable that takes the records (in report order)
  and yields ``(record, (findings, statistics, problem))`` for each. The local one is
  ``TensorStream``; :class:`RayExecutor` sends each file's records (a large file's in groups of
  at most ``TASK_VALUES`` values) to a task. A worker reads the file from the shared path (files
  must be visible at the same absolute paths on every node), builds the same session from the same
  command-line settings and configuration file, gives each record the layout and metadata the
  driver found (config.json's skeleton), and returns findings and statistics, never tensor data.
  Model-level rules then run once on the driver, as locally, so the report is the same.
- ``diff``: each pair of files (old shard, new shard) is a task that returns the change statistics
  of its tensor pairs (:func:`compare_files`); the WL7xx rules run on the driver.
- ``watch``: each pair of consecutive checkpoints is a task running a whole diff (both files read:
  the pairs are independent, so they run in parallel), the first checkpoint a task of its own.

Ray retries a task whose worker died, and one that raised, a bounded number of times
(``MAX_RETRIES``). Ctrl-C cancels the tasks; what finished is reported.
"""

from __future__ import annotations

import os
from collections import defaultdict
from contextlib import closing
from typing import Any, Callable, Iterator, Sequence

from weightlint.execution.errors import UsageError
from weightlint.record import TensorRecord

MAX_RETRIES = 3
# A file's records go to one task up to this many values (512 MB as bf16); a larger file (one shard
# of a 400B checkpoint, a single-file 70B model) is split into groups of records of about this size.
TASK_VALUES = 1 << 28
_WORKER_SESSIONS: dict[str, Any] = {}  # a worker process builds each run's session once


def connect(address: str | None) -> Any:
    """Ray, connected: ``local`` (or nothing, without RAY_ADDRESS) starts a local cluster."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install \"weightlint[ray]\"") from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        settings = {"include_dashboard": False, "log_to_driver": False}
        ray.init(**({} if address == "local" else {"address": address}), **settings)
    return ray


class TaskFailed(Exception):
    """A task that failed on every try (its worker died each time, or it raised): the result in its place."""


class TaskRunner:
    """Runs calls of one function as Ray tasks, largest first, with bounded retries, and yields
    ``(index, result)`` as each finishes, a :class:`TaskFailed` as the result of one that failed on
    every try. Ctrl-C cancels the tasks still pending and re-raises."""

    def __init__(self, address: str | None, function: Callable, gpus: float = 0) -> None:
        self.ray = connect(address)
        self.task = self.ray.remote(num_gpus=gpus, max_retries=MAX_RETRIES, retry_exceptions=True)(function)

    def run(self, calls: Sequence[tuple], weights: Sequence[int]) -> Iterator[tuple[int, Any]]:
        """Use it closed (``contextlib.closing``): however the caller stops (Ctrl-C in its own loop
        body, an error), closing cancels the tasks still pending."""
        order = sorted(range(len(calls)), key=lambda index: -weights[index])
        tasks = {self.task.remote(*calls[index]): index for index in order}
        pending = list(tasks)
        try:
            while pending:
                finished, pending = self.ray.wait(pending, num_returns=1)
                try:
                    result = self.ray.get(finished[0])
                except (self.ray.exceptions.RayTaskError, self.ray.exceptions.RayError) as error:
                    result = TaskFailed(_first_line(error))
                yield tasks[finished[0]], result
        finally:
            for task in pending:
                self.ray.cancel(task, force=True)


def _first_line(error: Exception) -> str:
    """A task's error in one line: the original exception's, not Ray's traceback around it."""
    cause = getattr(error, "cause", None)
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
    return text.strip().splitlines()[-1] if text.strip() else type(error).__name__


def _check_records(spec: dict[str, Any], path: str, wanted: list[tuple[str, str, Any, dict]]) -> list[tuple[str, tuple]]:
    """On a worker: some records of one file, checked as the driver's session would check them."""
    from weightlint.config import limits
    from weightlint.execution.session import Session
    from weightlint.sources import source_for_file
    from weightlint.sources.base import Problem

    session = _WORKER_SESSIONS.get(spec["run"])
    if session is None:
        session = _WORKER_SESSIONS[spec["run"]] = Session([], spec["config"], config_file=spec["config_file"],
                                                          plans=spec["plans"], extra_groups=spec["groups"])
    with limits.using(session.config.limits):
        try:
            found = {item.name: item for item in source_for_file(path).items() if isinstance(item, TensorRecord)}
        except Exception as error:  # gone or changed since the driver read its header: as a local read fails
            return [(name, ([], {}, Problem("unreadable", shown_file, f"tensor data unreadable: {error}", tensor=name)))
                    for name, shown_file, _, _ in wanted]
        results = []
        for name, shown_file, layout, metadata in wanted:
            record = found.get(name)
            if record is None:
                results.append((name, ([], {}, Problem("unreadable", shown_file, "tensor not found by the worker",
                                                       tensor=name))))
                continue
            record.file, record.layout = shown_file, layout
            record.metadata.update(metadata)
            results.append((name, session._check_tensor(record)))
    return results


def task_groups(records: list[TensorRecord], limit: int) -> list[list[TensorRecord]]:
    """Consecutive records in groups of at most ``limit`` values (a larger record alone)."""
    groups: list[list[TensorRecord]] = []
    size = 0
    for record in records:
        if not groups or size + record.numel > limit:
            groups.append([])
            size = 0
        groups[-1].append(record)
        size += record.numel
    return groups


class RayExecutor:
    """Streams records through Ray tasks (a file's, or a group of a large file's); yields in record order."""

    def __init__(self, spec: dict[str, Any], address: str | None, local: Any, progress: Any = None) -> None:
        device = str(spec["config"].device)
        self.runner = TaskRunner(address, _check_records, gpus=1 if device.startswith("cuda") else 0)
        self.spec, self.local, self.progress = spec, local, progress

    def __call__(self, records: list[TensorRecord]) -> Iterator[tuple[TensorRecord, tuple]]:
        by_file: dict[str, list[TensorRecord]] = defaultdict(list)
        in_memory = []
        for record in records:
            path = os.path.abspath(record.file)
            (by_file[path] if os.path.isfile(path) else in_memory).append(record)
        results: dict[tuple[str, str], tuple] = {}
        # Records that are not in a file (an in-memory model) are checked here.
        for record, result in self.local(in_memory) if in_memory else ():
            results[(record.file, record.name)] = result
        groups = [(path, group) for path, file_records in by_file.items()
                  for group in task_groups(file_records, TASK_VALUES)]
        spec = self.runner.ray.put(self.spec)
        calls = [(spec, path, [(r.name, r.file, r.layout, dict(r.metadata)) for r in group]) for path, group in groups]
        weights = [sum(r.numel for r in group) for _, group in groups]
        total, done = sum(r.numel for r in records) or 1, 0
        try:
            with closing(self.runner.run(calls, weights)) as finished:
                for index, checked in finished:
                    group = groups[index][1]
                    if isinstance(checked, TaskFailed):
                        checked = self._failed(group, checked)
                    for name, result in checked:
                        results[(group[0].file, name)] = result
                    done += weights[index]
                    if self.progress:
                        self.progress(group[-1], done, total)
        except KeyboardInterrupt:
            yield from self._in_order(records, results)
            raise
        yield from self._in_order(records, results)

    @staticmethod
    def _failed(group: list[TensorRecord], failure: TaskFailed) -> list[tuple[str, tuple]]:
        """A group whose task failed on every try: one internal problem (WL008) names its file."""
        from weightlint.execution.errors import internal_problem

        problem = internal_problem(group[0].file, RuntimeError(f"the Ray task failed {MAX_RETRIES + 1} times: {failure}"))
        return [(record.name, ([], {}, problem if index == 0 else None)) for index, record in enumerate(group)]

    @staticmethod
    def _in_order(records, results) -> Iterator[tuple[TensorRecord, tuple]]:
        for record in records:
            result = results.get((record.file, record.name))
            if result is not None:
                yield record, result


def compare_files(files: tuple[str, str, str, str], names: list[tuple[str, str, Any, Any, dict]], spectra: bool,
                  limit_settings: Any) -> tuple[list[tuple[str, dict]], list[Any]]:
    """On a worker: the change statistics of tensor pairs of one old and one new file, by name,
    each record given the driver's layout (and the new one its metadata); ``(new name, statistics)``
    and problems. ``files``: the old and new paths, and the names the report shows for them."""
    from weightlint.config import limits
    from weightlint.diff.engine import compare_pairs
    from weightlint.sources.base import Problem

    old_path, new_path, old_shown, new_shown = files
    with limits.using(limit_settings):
        problems: list[Any] = []
        old_found, new_found = _records_in(old_path, old_shown, problems), _records_in(new_path, new_shown, problems)
        pairs = []
        for old_name, new_name, old_layout, new_layout, metadata in names:
            old, new = old_found.get(old_name), new_found.get(new_name)
            if (old is None or new is None) and old_found and new_found:
                problems.append(Problem("unreadable", new_shown if new is None else old_shown,
                                        "tensor not found by the worker", tensor=new_name if new is None else old_name))
            if old is None or new is None:
                continue
            old.layout, new.layout = old_layout, new_layout
            old.file, new.file = old_shown, new_shown
            new.metadata.update(metadata)
            pairs.append((old, new))
        compared = [(pair.new.name, pair.stats) for pair in compare_pairs(pairs, spectra, problems)]
    return compared, problems


def _records_in(path: str, shown: str, problems: list[Any]) -> dict[str, TensorRecord]:
    """A file's records by name; none, and an "unreadable" problem, when it cannot be read."""
    from weightlint.sources import source_for_file
    from weightlint.sources.base import Problem

    try:
        return {item.name: item for item in source_for_file(path).items() if isinstance(item, TensorRecord)}
    except Exception as error:
        problems.append(Problem("unreadable", shown, f"file unreadable: {error}"))
        return {}


def run_session(kind: str, arguments: tuple, config: Any, config_file: Any, spectra: bool) -> Any:
    """On a worker: one session of ``watch``, its result returned; a checkpoint gone since it was
    found is a :class:`TaskFailed` (retrying would not bring it back).

    - ``screen``: a first checkpoint checked (broken files, NaN/Inf) and summarized: (report, summary);
    - ``summarize``: a later checkpoint read once into its summary (what ``watch`` keeps of it);
    - ``diff``: a pair of checkpoints compared exactly (``--exact``): the report.
    """
    from weightlint.diff.engine import DiffSession, SummarySession
    from weightlint.diff.summary import CheckpointSummary

    try:
        if kind == "screen":
            session = SummarySession(list(arguments[0]), config, config_file=config_file, spectra=spectra)
            return session.run(), session.summary
        if kind == "summarize":
            session = DiffSession(CheckpointSummary([]), list(arguments[0]), config, config_file=config_file,
                                  spectra=spectra)
            session.run()
            return session.summary
        return DiffSession(list(arguments[0]), list(arguments[1]), config, config_file=config_file,
                           spectra=spectra).run()
    except UsageError as error:
        return TaskFailed(str(error))
