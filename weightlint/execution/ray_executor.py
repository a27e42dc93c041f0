"""``--executor ray``: the per-tensor work of a check on a Ray cluster, one task per file (shard).

The seam is the session's stream: a callable that takes the records (in report order) and yields
``(record, (findings, statistics, problem))`` for each. The local one is ``TensorStream``; this one
sends each file's records to a Ray task. A worker reads the file from the shared path (the files
must be visible at the same absolute paths on every node), builds the same session from the same
command-line settings and configuration file, gives each record the layout and metadata the driver
found (config.json's skeleton), and returns findings and statistics, never tensor data.
Model-level rules then run once on the driver, as locally, so the report is the same.

Ray retries a task whose worker died, and one that raised, a bounded number of times
(``max_retries``). Ctrl-C cancels the tasks; the records that finished are reported.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Iterator

from weightlint.execution.errors import UsageError
from weightlint.record import TensorRecord

MAX_RETRIES = 3
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


def _check_file(spec: dict[str, Any], path: str, wanted: list[tuple[str, str, Any, dict]]) -> list[tuple[str, tuple]]:
    """On a worker: the records of one file, checked as the driver's session would check them."""
    from weightlint.execution.session import Session
    from weightlint.sources import source_for_file
    from weightlint.sources.base import Problem

    session = _WORKER_SESSIONS.get(spec["run"])
    if session is None:
        session = _WORKER_SESSIONS[spec["run"]] = Session([], spec["config"], config_file=spec["config_file"],
                                                          plans=spec["plans"], extra_groups=spec["groups"])
    found = {item.name: item for item in source_for_file(path).items() if isinstance(item, TensorRecord)}
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


class RayExecutor:
    """Streams records through Ray tasks, one per file, largest files first; yields in record order."""

    def __init__(self, spec: dict[str, Any], address: str | None, local: Any, progress: Any = None) -> None:
        self.ray = connect(address)
        self.spec, self.local, self.progress = spec, local, progress
        device = str(spec["config"].device)
        self.task = self.ray.remote(num_gpus=1 if device.startswith("cuda") else 0, max_retries=MAX_RETRIES,
                                    retry_exceptions=True)(_check_file)

    def __call__(self, records: list[TensorRecord]) -> Iterator[tuple[TensorRecord, tuple]]:
        by_file: dict[str, list[TensorRecord]] = defaultdict(list)
        in_memory = []
        for record in records:
            path = os.path.abspath(record.file)
            (by_file[path] if os.path.isfile(path) else in_memory).append(record)
        results: dict[tuple[str, str], tuple] = {}
        # Records that are not in a file (an in-memory model) are checked here.
        for record, result in self.local(in_memory):
            results[(record.file, record.name)] = result
        spec = self.ray.put(self.spec)
        order = sorted(by_file, key=lambda path: -sum(r.numel for r in by_file[path]))  # large files first
        tasks = {self.task.remote(spec, path, [(r.name, r.file, r.layout, dict(r.metadata)) for r in by_file[path]]):
                 path for path in order}
        total, done = sum(r.numel for r in records) or 1, 0
        try:
            pending = list(tasks)
            while pending:
                finished, pending = self.ray.wait(pending, num_returns=1)
                path = tasks[finished[0]]
                file = by_file[path][0].file
                for name, result in self.ray.get(finished[0]):
                    results[(file, name)] = result
                done += sum(r.numel for r in by_file[path])
                if self.progress:
                    self.progress(by_file[path][-1], done, total)
        except KeyboardInterrupt:
            for task in tasks:
                self.ray.cancel(task, force=True)
            yield from self._in_order(records, results)
            raise
        yield from self._in_order(records, results)

    @staticmethod
    def _in_order(records, results) -> Iterator[tuple[TensorRecord, tuple]]:
        for record in records:
            result = results.get((record.file, record.name))
            if result is not None:
                yield record, result
