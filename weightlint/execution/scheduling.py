"""Tensors checked ``jobs`` at a time, in record order, with memory bounded by a budget of values."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator

from weightlint.record import TensorRecord
from weightlint.stats import TensorStats, is_giant
from weightlint.stats.blocked import BLOCK_VALUES

Progress = Callable[[TensorRecord | None, int, int], None]


class Budget:
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


class thread_limit:
    """BLAS (and, when imported, PyTorch) threads per job while ``limit`` holds, so that N jobs do
    not oversubscribe the cores; restored afterwards."""

    def __init__(self, threads: int, limit: bool) -> None:
        self.threads, self.limit = threads, limit
        self._torch_threads: int | None = None
        self._limiter: Any = None

    def __enter__(self) -> "thread_limit":
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


class TensorStream:
    """Runs ``check(record, values=None, load_error=None)`` over records and yields the results in
    record order: one job with a reader thread loading the next tensor, or ``jobs`` in parallel."""

    # Values (not bytes) that may be in flight at once, beyond the largest tensor: ~32M float32
    # values with their temporaries stay well under 1 GB.
    budget_values = 1 << 25

    def __init__(self, check: Callable[..., tuple], jobs: int, cores: int, device: str,
                 progress: Progress | None = None) -> None:
        self.check, self.jobs, self.cores, self.device, self.progress = check, jobs, cores, device, progress

    def __call__(self, records: list[TensorRecord]) -> Iterator[tuple[TensorRecord, tuple]]:
        return self._stream(records)

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

        with thread_limit(max(1, self.cores // self.jobs), self.jobs > 1):
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

        def read_ahead(record: TensorRecord | None) -> bool:
            """Whether the reader loads this one: a giant tensor is read block by block as it is checked."""
            return record is not None and record.is_judged and not is_giant(record, self.device)

        judged = list(records)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="weightlint-reader") as reader:
            upcoming = reader.submit(load, judged[0]) if judged and read_ahead(judged[0]) else None
            for index, record in enumerate(judged):
                current = upcoming
                following = judged[index + 1] if index + 1 < len(judged) else None
                upcoming = reader.submit(load, following) if read_ahead(following) else None
                loaded = current.result() if current is not None else (None, None)
                result = self.check(record, *loaded)
                advance(record)
                yield record, result

    def _stream_parallel(self, records, advance) -> Iterator[tuple[TensorRecord, tuple]]:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        def weight_of(record: TensorRecord) -> int:
            """Values in flight for a record: a giant one holds a few row blocks, not itself."""
            if not record.is_judged:
                return 0
            return 4 * BLOCK_VALUES if is_giant(record, self.device) else record.numel

        largest = max((weight_of(r) for r in records), default=0)
        budget = Budget(max(largest, self.budget_values))
        pool = ThreadPoolExecutor(max_workers=self.jobs + 1, thread_name_prefix="weightlint")
        pending: deque = deque()

        def task(record: TensorRecord, weight: int):
            try:
                return self.check(record)
            finally:
                budget.release(weight)

        try:
            for record in records:
                weight = weight_of(record)
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
