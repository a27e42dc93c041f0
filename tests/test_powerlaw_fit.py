"""The power-law fit's branch and bound picks exactly what evaluating every candidate picks."""

from __future__ import annotations

import numpy as np
import pytest

from weightlint.spectral import powerlaw_alpha


def every_candidate(eigenvalues, threshold=1e-5, small_n=20, min_tail=8):
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64)); x = x[x > threshold]; count = len(x)
    if count < 2: return None
    logs = np.log(x); suffix = np.cumsum(logs[::-1])[::-1]
    n = (count - np.arange(count - 1)).astype(np.float64); sums = suffix[:-1] - n * logs[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + ((n - 1.0) if count < small_n else n) / sums
    usable = np.isfinite(alphas) & (alphas > 1)
    if count < small_n: usable &= (n >= min_tail) & (sums > 1e-12)
    distances = np.ones(count - 1)
    for i in np.flatnonzero(usable):
        tail = x[i:]; empirical = np.arange(tail.size) / tail.size
        distances[i] = np.max(np.abs(1 - (tail / x[i]) ** (1 - alphas[i]) - empirical))
    best = int(np.argmin(distances))
    if not usable[best]: return None
    return {"alpha": float(alphas[best]), "alpha_xmin": float(x[best]), "alpha_ks_distance": float(distances[best]), "alpha_tail_size": int(count - best)}


def spectra():
    rng = np.random.default_rng(1)
    for k in range(60):
        kind, m = k % 5, int(rng.integers(3, 1200))
        if kind == 0:  # Marchenko–Pastur bulk (a random matrix)
            a = rng.standard_normal((int(m * rng.uniform(1, 3)) + 1, m))
            yield np.linalg.eigvalsh(a.T @ a / a.shape[0])
        elif kind == 1:  # heavy tail
            yield rng.pareto(rng.uniform(0.5, 5), m) + 1e-3
        elif kind == 2:  # bulk and a few spikes
            yield np.concatenate([rng.uniform(0.5, 2, m), rng.pareto(1.5, 5) * 50])
        elif kind == 3:  # many ties
            yield np.round(rng.uniform(0, 3, m), 1)
        else:
            yield rng.lognormal(0, rng.uniform(0.1, 3), m)


@pytest.mark.parametrize("index, eigenvalues", list(enumerate(spectra())))
def test_same_fit_as_evaluating_every_candidate(index, eigenvalues):
    assert powerlaw_alpha(eigenvalues) == every_candidate(eigenvalues)
