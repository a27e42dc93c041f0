"""Small summaries of a weight matrix for the HTML report's plots: the eigenvalue spectrum (ESD) and
the value histogram, a few hundred numbers whatever the matrix's size."""

from __future__ import annotations

from typing import Any

import numpy as np

from weightlint.spectral import numerical_rank

ESD_BINS = 40
VALUE_BINS = 48
HISTOGRAM_PIECE_VALUES = 1 << 20


def sketch_group(singular_values: np.ndarray, values: Any, shape: tuple[int, int], histogram_blocks: Any = None,
                 quantiles: list[float] | None = None) -> dict[str, Any]:
    """``esd``: a log-spaced histogram of the eigenvalues σ² (edges and counts) within the matrix's
    numerical rank (smaller ones are rounding noise, and would stretch the axis over decades of
    it); ``histogram``: the values over the central 99.8 % (1st and last bins also count the tails
    beyond).

    A tensor checked in row blocks passes ``histogram_blocks`` (a callable yielding its finite values
    block by block) and the two ``quantiles`` instead of ``values``."""
    singular_values = np.asarray(singular_values, dtype=np.float64)
    positive = singular_values[:numerical_rank(singular_values, shape)] ** 2
    esd: dict[str, Any] = {"edges": [], "counts": []}
    if positive.size:
        low, high = positive.min(), positive.max()
        edges = np.geomspace(low, high * (1 + 1e-12), ESD_BINS + 1) if high > low else np.array([low, high * 1.01 + 1e-30])
        counts, edges = np.histogram(positive, bins=edges)
        esd = {"edges": edges.tolist(), "counts": counts.tolist()}
    if histogram_blocks is not None:
        return {"esd": esd, "histogram": _histogram(histogram_blocks(), *quantiles)}
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    flat = flat[np.isfinite(flat)]
    histogram: dict[str, Any] = {"edges": [], "counts": []}
    if flat.size:
        low, high = np.quantile(flat, [0.001, 0.999]) if flat.size > 1000 else (flat.min(), flat.max())
        histogram = _histogram([flat], low, high)
    return {"esd": esd, "histogram": histogram}


def _histogram(blocks: Any, low: float, high: float) -> dict[str, Any]:
    """VALUE_BINS equal bins over [low, high], values beyond counted in the end bins."""
    if high <= low:
        high = low + 1e-12
    total = np.zeros(VALUE_BINS, dtype=np.int64)
    edges = None
    for block in blocks:
        for start in range(0, len(block), HISTOGRAM_PIECE_VALUES):  # float64 temporaries of a piece at a time
            piece = np.clip(np.asarray(block[start:start + HISTOGRAM_PIECE_VALUES], dtype=np.float64), low, high)
            counts, edges = np.histogram(piece, bins=VALUE_BINS, range=(low, high))
            total += counts
    if edges is None:
        edges = np.histogram_bin_edges([], bins=VALUE_BINS, range=(low, high))
    return {"edges": edges.tolist(), "counts": total.tolist()}
