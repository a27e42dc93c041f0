"""Small summaries of a weight matrix for the HTML report's plots: the eigenvalue spectrum (ESD) and
the value histogram, a few hundred numbers whatever the matrix's size."""

from __future__ import annotations

from typing import Any

import numpy as np

ESD_BINS = 40
VALUE_BINS = 48


def sketch_group(singular_values: np.ndarray, values: Any) -> dict[str, Any]:
    """``esd``: a log-spaced histogram of the eigenvalues σ² (edges and counts); ``histogram``: the
    values over the central 99.8 % (1st and last bins also count the tails beyond)."""
    eigenvalues = np.asarray(singular_values, dtype=np.float64) ** 2
    positive = eigenvalues[eigenvalues > 0]
    esd: dict[str, Any] = {"edges": [], "counts": []}
    if positive.size:
        low, high = positive.min(), positive.max()
        edges = np.geomspace(low, high * (1 + 1e-12), ESD_BINS + 1) if high > low else np.array([low, high * 1.01 + 1e-30])
        counts, edges = np.histogram(positive, bins=edges)
        esd = {"edges": edges.tolist(), "counts": counts.tolist()}
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    flat = flat[np.isfinite(flat)]
    histogram: dict[str, Any] = {"edges": [], "counts": []}
    if flat.size:
        low, high = np.quantile(flat, [0.001, 0.999]) if flat.size > 1000 else (flat.min(), flat.max())
        if high <= low:
            high = low + 1e-12
        counts, edges = np.histogram(np.clip(flat, low, high), bins=VALUE_BINS, range=(low, high))
        histogram = {"edges": edges.tolist(), "counts": counts.tolist()}
    return {"esd": esd, "histogram": histogram}
