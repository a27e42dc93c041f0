"""A checkpoint's summary: what a later comparison needs, so that no checkpoint is read twice.

``weightlint watch`` and the training callbacks compare each checkpoint with the one before. Keeping
the previous checkpoint would cost one model's memory (or a second read of its files, which
``save_total_limit`` may have deleted); its summary costs a few kilobytes per tensor:

- the L2 norm (to about 1e-8 relative) and whether every value is finite: the norm ratio is
  measured, not estimated;
- a 64-bit checksum (XXH3) of the values: whether a tensor changed at all is exact (but for a
  collision, one in 2⁶⁴);
- the values at ``SAMPLE`` positions, one drawn in each of ``SAMPLE`` equal stretches of the
  flattened tensor (seeded by its size, so both checkpoints sample the same positions): the
  relative change ‖NEW−OLD‖/‖OLD‖ and the cosine are estimated from them, exactly for a tensor
  of at most ``SAMPLE`` values (biases, norms);
- with spectra, the condition number and stable rank, each computed once per checkpoint.

A tensor whose bytes changed where no sampled value did (a few rows of an embedding) is reported
as changed with an unknown relative change, never as unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

import numpy as np
import xxhash

from weightlint.diff.measures import change_statistics, dot, from_norms, not_finite
from weightlint.record import TensorRecord

SAMPLE = 4096  # values kept per tensor: the relative change is estimated to about 1-2 %


@lru_cache(maxsize=512)
def sample_positions(numel: int) -> np.ndarray:
    """One position in each of ``SAMPLE`` equal stretches (every position for a small tensor).

    Stratified, so a change confined to a part of the tensor is seen in proportion to its size;
    seeded by the size alone, so every checkpoint of a run samples the same positions.
    """
    if numel <= SAMPLE:
        return np.arange(numel)
    edges = np.arange(SAMPLE + 1, dtype=np.int64) * numel // SAMPLE
    offsets = np.random.default_rng(numel).random(SAMPLE) * (edges[1:] - edges[:-1])
    return edges[:-1] + offsets.astype(np.int64)


@dataclass
class TensorSummary:
    """One tensor of one checkpoint, as much as comparing it later needs (its data is gone)."""

    record: TensorRecord
    finite: bool
    l2: float | None
    checksum: int  # XXH3-64 of the float32 (float64) values
    sample: np.ndarray  # float64 values at sample_positions(numel)
    condition_number: float | None = None
    stable_rank: float | None = None


@dataclass
class CheckpointSummary:
    """Every record of a checkpoint (its structure) and the summaries of the judged ones."""

    paths: list[str]
    records: list[TensorRecord] = field(default_factory=list)
    tensors: dict[str, TensorSummary] = field(default_factory=dict)


def summarize(record: TensorRecord, values: Any, spectra: bool = False) -> TensorSummary:
    """The summary of one tensor from its values (float32 or float64, NumPy or torch)."""
    if not isinstance(values, np.ndarray):  # a torch tensor on a GPU
        values = values.detach().cpu().numpy()
    flat = np.ascontiguousarray(values).reshape(-1)
    summary = summarize_chunks(record, [flat])
    if spectra and summary.finite and record.is_matrix:
        summary.condition_number, summary.stable_rank = spectra_of(record, values)
    return summary


def spectra_of(record: TensorRecord, values: Any = None) -> tuple[float | None, float | None]:
    """The condition number and stable rank of a matrix (one SVD, the statistics' own); without
    ``values``, read by the statistics (a giant matrix in row blocks)."""
    from weightlint.stats import stats_for

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        spectral = stats_for(record, "cpu", values=values).spectral
    return spectral.get("condition_number"), spectral.get("stable_rank")


def spectral_change(old: tuple[float | None, float | None], new: tuple[float | None, float | None]) -> dict[str, Any]:
    """The change statistics of two (condition number, stable rank) pairs."""
    (old_condition, old_stable), (new_condition, new_stable) = old, new
    stats: dict[str, Any] = {}
    if old_condition is not None and new_condition is not None:
        stats.update(old_condition_number=old_condition, new_condition_number=new_condition,
                     condition_number_ratio=new_condition / old_condition
                     if old_condition and math.isfinite(old_condition) else None)
    if new_stable is not None:
        stats.update(old_stable_rank=old_stable, new_stable_rank=new_stable)
    return stats


def summarize_chunks(record: TensorRecord, chunks: Iterable[np.ndarray]) -> TensorSummary:
    """The summary (without spectra) from the flattened tensor's consecutive chunks: one pass that
    keeps nothing but the running sums, the checksum and the sampled values."""
    positions = sample_positions(record.numel)
    sample = np.empty(positions.size, dtype=np.float64)
    squares, start, taken = 0.0, 0, 0
    checksum = xxhash.xxh3_64()
    for chunk in chunks:
        squares += dot(chunk, chunk)
        checksum.update(memoryview(chunk.view(np.uint8)))
        end = start + chunk.size
        until = int(np.searchsorted(positions, end))
        sample[taken:until] = chunk[positions[taken:until] - start]
        start, taken = end, until
    finite = math.isfinite(squares)
    return TensorSummary(record, finite, math.sqrt(squares) if finite else None, checksum.intdigest(), sample)


def compare(old: TensorSummary, new: TensorSummary) -> dict[str, Any]:
    """The change statistics of ``change_statistics`` from two summaries.

    ``estimated`` says the relative change, ``change_l2`` and the cosine come from the sample;
    ``changed`` is exact. The norms, their ratio and finiteness are always exact.
    """
    numel = new.record.numel
    # Equal bytes (NaN payloads included): the checksums agree, and NaN equals NaN in the sample.
    identical = old.checksum == new.checksum and np.array_equal(old.sample, new.sample, equal_nan=True)
    if not (old.finite and new.finite):
        stats = not_finite(new.finite)
    elif numel <= SAMPLE:  # the sample is the whole tensor
        stats = change_statistics(old.sample, new.sample)
    else:
        seen = 0.0 if identical else float(np.sum((new.sample - old.sample) ** 2))
        change_l2 = math.sqrt(seen * numel / SAMPLE) if identical or seen > 0 else None
        stats = from_norms(old.l2, new.l2, change_l2)
        stats["estimated"] = not identical
    stats["changed"] = not identical
    stats.update(spectral_change((old.condition_number, old.stable_rank), (new.condition_number, new.stable_rank)))
    return stats
