"""How unequal a matrix's rows and columns are, against what independent random entries give.

A freshly initialized matrix has i.i.d. entries: the energy of each row (Σⱼ w²) then varies only
by sampling, with a coefficient of variation √((m₄/m₂² − 1)/n) for rows of n entries (m₂, m₄ the
raw second and fourth moments of the entries). Training makes rows and columns unequal (features
of different importance, heads of different scale), so trained matrices show dispersions several
times that. The ratio observed/expected is about 1 for random initialization whatever its
distribution (normal, uniform, truncated), and far above 1 for trained weights and for structured
fixed transforms (an STFT basis, whose columns follow the window).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Values per float64 block: a bounded temporary whatever the matrix.
_BLOCK_VALUES = 1 << 20


def line_energies(matrix: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Σw² of every row and of every column (float64), and Σw⁴ of the matrix."""
    if not isinstance(matrix, np.ndarray) and matrix.device.type == "cpu":
        matrix = matrix.numpy()  # a pickle's CPU tensor: the blocked pass, not a float64 copy of it all
    if not isinstance(matrix, np.ndarray):  # on the GPU, where memory is the device's
        squares = matrix.double().square_()
        return (squares.sum(1).cpu().numpy(), squares.sum(0).cpu().numpy(),
                float(squares.square_().sum()))
    rows, columns = matrix.shape
    row_energy = np.empty(rows, dtype=np.float64)
    column_energy = np.zeros(columns, dtype=np.float64)
    fourth = 0.0
    step = max(1, _BLOCK_VALUES // max(columns, 1))
    for start in range(0, rows, step):
        block = np.square(matrix[start:start + step], dtype=np.float64)
        row_energy[start:start + step] = block.sum(1)
        column_energy += block.sum(0)
        fourth += float(np.einsum("ij,ij->", block, block))
    return row_energy, column_energy, fourth


def _dispersion(energies: np.ndarray, entries_per_line: int, kurtosis_raw: float) -> float | None:
    live = energies[energies > 0]
    if live.size < 2 or kurtosis_raw <= 1:
        return None
    observed = float(live.std() / live.mean())
    expected = math.sqrt((kurtosis_raw - 1) / entries_per_line)
    return observed / expected


def dispersion_group(matrix: Any) -> dict[str, Any]:
    """``row_dispersion`` and ``column_dispersion``: observed/expected coefficient of variation
    of the line energies (all-zero lines left out; None for fewer than two live lines)."""
    return dispersion_from_energies(*line_energies(matrix))


def dispersion_from_energies(row_energy: np.ndarray, column_energy: np.ndarray, fourth: float) -> dict[str, Any]:
    """The group from a matrix's row and column energies and Σw⁴ (whole, or summed over row blocks)."""
    rows, columns = len(row_energy), len(column_energy)
    count = rows * columns
    second = float(row_energy.sum()) / count
    if second == 0:
        return {"row_dispersion": None, "column_dispersion": None}
    kurtosis_raw = fourth / count / second**2
    return {
        "row_dispersion": _dispersion(row_energy, columns, kurtosis_raw),
        "column_dispersion": _dispersion(column_energy, rows, kurtosis_raw),
    }
