"""Array backends: every statistic is written once against these operations and runs on NumPy
(the CPU; PyTorch is not even imported) or on PyTorch (CUDA, and CPU tensors when asked).

Why two: on a CPU, NumPy with its OpenBLAS is as fast as PyTorch or faster (a float32 Gram matrix
``AᵀA`` is one SYRK, half a GEMM; SciPy's MRRR symmetric eigensolver beats PyTorch's), and
importing torch costs more than checking a small model. On a GPU the work stays on the device,
in float32 and float64 (never fp16).

Values reaching a backend are float32 (float64 kept), flat or (outputs, inputs) matrices. Every
reduction returns a Python ``float``/``int``; singular values come back as a NumPy float64 array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# A symmetric eigenproblem from this order on goes to SciPy's MRRR solver (?syevr: 1.6× NumPy's
# divide and conquer for float32 at n = 2048 here); below it NumPy's is as fast and SciPy's import
# is not worth paying.
SCIPY_EIGEN_FROM = 512
# Rows of a tall matrix converted to float64 at a time by the chunked Gram matrix (~32 MB).
GRAM_CHUNK_ELEMENTS = 1 << 22


def is_torch(array: Any) -> bool:
    return type(array).__module__.startswith("torch")


def backend_for(array: Any) -> "NumpyBackend | TorchBackend":
    return TORCH if is_torch(array) else NUMPY


# Elementwise work on the CPU runs over blocks of this many values, through one small buffer
# that stays in the L2 cache: no temporary the size of the tensor (whose page faults cost more
# than the arithmetic), and sums add block totals in float64 (pairwise inside a block).
BLOCK_VALUES = 1 << 16


def _blocks(x: np.ndarray):
    """(block, rows) pieces of at most ``BLOCK_VALUES`` values of a flat array or of a matrix (any
    strides): whole rows while one fits, otherwise pieces of one row, so that every block fits the
    buffer; ``rows`` selects the block's rows (per-row scales broadcast over a piece of a row)."""
    if x.ndim <= 1:
        for start in range(0, x.shape[0] if x.ndim else 1, BLOCK_VALUES):
            yield (x[start:start + BLOCK_VALUES] if x.ndim else x.reshape(1)), slice(start, start + BLOCK_VALUES)
        return
    matrix = x.reshape(x.shape[0], -1)
    columns = matrix.shape[1]
    if columns > BLOCK_VALUES:
        for row in range(matrix.shape[0]):
            for start in range(0, columns, BLOCK_VALUES):
                yield matrix[row:row + 1, start:start + BLOCK_VALUES], slice(row, row + 1)
        return
    step = max(1, BLOCK_VALUES // max(columns, 1))
    for start in range(0, matrix.shape[0], step):
        yield matrix[start:start + step], slice(start, start + step)


def _float_sum(values: np.ndarray) -> float:
    return float(np.sum(values))


def _blocked(x: np.ndarray, transform: Any, dtype: Any, reduce: Any) -> Any:
    """Σ reduce(transform(block)) over the blocks of ``x``, through one block-sized buffer."""
    total = 0
    buffer = np.empty(BLOCK_VALUES, dtype=dtype)
    for block, _ in _blocks(x):
        out = buffer[:block.size].reshape(block.shape)
        transform(block, out)
        total += reduce(out)
    return total


class NumpyBackend:
    name = "numpy"

    # -- reductions ---------------------------------------------------------------------------
    @staticmethod
    def minmax(x: np.ndarray) -> tuple[float, float]:
        """min and max; NaN propagates (a NaN anywhere makes both NaN)."""
        if x.size == 0:
            return math.nan, math.nan
        return float(np.min(x)), float(np.max(x))

    @staticmethod
    def sum(x: np.ndarray) -> float:
        return float(np.sum(x))  # pairwise summation: ~1e-7 relative in float32

    @staticmethod
    def sum_squares(x: np.ndarray) -> float:
        return _blocked(x, lambda block, out: np.multiply(block, block, out=out), x.dtype, _float_sum)

    @staticmethod
    def sum_abs(x: np.ndarray) -> float:
        return _blocked(x, lambda block, out: np.abs(block, out=out), x.dtype, _float_sum)

    @staticmethod
    def count(mask: np.ndarray) -> int:
        return int(np.count_nonzero(mask))

    @staticmethod
    def count_magnitudes(x: np.ndarray, bounds: list[tuple[str, float]]) -> list[int]:
        """For each (op, bound) with op in ``>=``, ``<=``, ``<``, ``>``: how many |x| satisfy it,
        in one blocked pass."""
        ops = {">=": np.greater_equal, "<=": np.less_equal, "<": np.less, ">": np.greater}
        counts = [0] * len(bounds)
        buffer = np.empty(BLOCK_VALUES, dtype=x.dtype)
        flags = np.empty(BLOCK_VALUES, dtype=bool)
        for block, _ in _blocks(x):
            out = buffer[:block.size].reshape(block.shape)
            mask = flags[:block.size].reshape(block.shape)
            np.abs(block, out=out)
            for index, (op, bound) in enumerate(bounds):
                ops[op](out, bound, out=mask)
                counts[index] += int(np.count_nonzero(mask))
        return counts

    @staticmethod
    def numel(x: np.ndarray) -> int:
        return int(x.size)

    # -- masks and indices --------------------------------------------------------------------
    @staticmethod
    def isfinite(x: np.ndarray) -> np.ndarray:
        return np.isfinite(x)

    @staticmethod
    def nonfinite_counts(x: np.ndarray) -> tuple[int, int, int]:
        return (int(np.count_nonzero(np.isnan(x))), int(np.count_nonzero(np.isposinf(x))),
                int(np.count_nonzero(np.isneginf(x))))

    @staticmethod
    def first_true(mask: np.ndarray) -> int:
        return int(np.argmax(mask.reshape(-1)))

    @staticmethod
    def all_zero_lines(matrix: np.ndarray) -> tuple[list[int], list[int]]:
        nonzero = matrix != 0
        return (np.flatnonzero(~nonzero.any(axis=1)).tolist(), np.flatnonzero(~nonzero.any(axis=0)).tolist())

    # -- order statistics ---------------------------------------------------------------------
    @staticmethod
    def select(flat: np.ndarray, kth: list[int], scratch: bool = False) -> list[float]:
        """The k-th smallest values (0-based, exact). Introselect, in place on ``scratch``.

        One partition at the largest k (NumPy's vectorized single-kth introselect is ~7× faster
        than its multi-kth path); k−1 is then the largest value of the part before it.
        """
        top = max(kth)
        if scratch:
            flat.partition(top)
            parted = flat
        else:
            parted = np.partition(flat, top)
        picked = []
        for k in kth:
            if k == top:
                picked.append(float(parted[top]))
            elif k == top - 1:
                picked.append(float(np.max(parted[:top])))
            else:
                picked.append(float(np.partition(parted[:top], k)[k]))
        return picked

    @staticmethod
    def copy(x: np.ndarray) -> np.ndarray:
        return np.array(x, copy=True)

    @staticmethod
    def abs_deviation(flat: np.ndarray, center: float, out: np.ndarray | None = None) -> np.ndarray:
        """|x − center|, into ``out`` when given (a scratch copy the caller no longer needs)."""
        out = np.subtract(flat, flat.dtype.type(center), out=out)
        return np.abs(out, out=out)

    @staticmethod
    def count_above(x: np.ndarray, bound: float) -> int:
        """How many values exceed ``bound``, blocked (no mask the size of the tensor)."""
        return _blocked(x, lambda block, out: np.greater(block, bound, out=out), np.bool_, np.count_nonzero)

    # -- int8 quantize–dequantize -------------------------------------------------------------
    @staticmethod
    def row_absmax(matrix: np.ndarray) -> np.ndarray:
        return np.maximum(-np.min(matrix, axis=1, keepdims=True), np.max(matrix, axis=1, keepdims=True))

    @staticmethod
    def scale_rows(row_max: np.ndarray, levels: int) -> np.ndarray:
        return np.where(row_max > 0, row_max / levels, np.ones_like(row_max))

    @staticmethod
    def rounding_noise(matrix: np.ndarray, scale: Any) -> float:
        """Σ(s·round(w/s) − w)²: the error of symmetric int quantization with scale(s) ``scale``
        (a number, or one per row as a (rows, 1) array). |w/s| ≤ 127 by construction, so no clamp
        is needed. Computed as Σ s²·(round(x) − x)² with x = w/s: |round(x) − x| ≤ ½, so nothing
        overflows even for weights at float32's limit. Blocked, through two small buffers."""
        per_row = isinstance(scale, np.ndarray)
        if not per_row:
            scale = matrix.dtype.type(scale)
        total = 0.0
        ratio_buffer = np.empty(BLOCK_VALUES, dtype=matrix.dtype)
        rounded_buffer = np.empty(BLOCK_VALUES, dtype=matrix.dtype)
        for block, rows in _blocks(matrix):
            ratio = ratio_buffer[:block.size].reshape(block.shape)
            rounded = rounded_buffer[:block.size].reshape(block.shape)
            block_scale = scale[rows] if per_row else scale
            np.divide(block, block_scale, out=ratio)
            np.rint(ratio, out=rounded)  # round half to even, as torch.round
            np.subtract(rounded, ratio, out=rounded)
            np.multiply(rounded, rounded, out=rounded)
            if per_row:
                squares = np.square(np.asarray(block_scale, dtype=np.float64).reshape(-1))
                total += float(squares @ rounded.reshape(rounded.shape[0], -1).sum(axis=1, dtype=np.float64))
            else:
                total += float(scale) ** 2 * float(np.sum(rounded, dtype=np.float64))
        return total

    @staticmethod
    def central_moments(flat: np.ndarray, mean: float, dtype: Any = None) -> tuple[float, float]:
        """(E[(x−μ)²], E[(x−μ)⁴]), blocked; in float64 when the tensor's powers overflow its dtype."""
        dtype = dtype or flat.dtype
        second = fourth = 0.0
        center = np.dtype(dtype).type(mean)
        buffer = np.empty(BLOCK_VALUES, dtype=dtype)
        with np.errstate(over="ignore"):
            for block, _ in _blocks(flat):
                squared = buffer[:block.size].reshape(block.shape)
                np.subtract(block, center, out=squared)
                np.multiply(squared, squared, out=squared)
                second += float(np.sum(squared))
                np.multiply(squared, squared, out=squared)
                fourth += float(np.sum(squared))
        if not math.isfinite(fourth) and np.dtype(dtype) != np.float64:
            return NumpyBackend.central_moments(flat, mean, np.float64)
        return second / flat.size, fourth / flat.size

    # -- linear algebra -----------------------------------------------------------------------
    @staticmethod
    def float32_gram(tall: np.ndarray) -> np.ndarray:
        """AᵀA in float32: NumPy recognizes ``A.T @ A`` and calls SYRK (half a GEMM)."""
        return tall.T @ tall

    @staticmethod
    def float64_gram(tall: np.ndarray) -> np.ndarray:
        """AᵀA in float64, accumulated over row blocks so that the float64 copy of A is never whole."""
        rows, cols = tall.shape
        step = max(1, GRAM_CHUNK_ELEMENTS // max(cols, 1))
        if tall.dtype == np.float64 or step >= rows:
            block = tall.astype(np.float64)
            return block.T @ block
        gram = np.zeros((cols, cols), dtype=np.float64)
        for start in range(0, rows, step):
            block = tall[start:start + step].astype(np.float64)
            gram += block.T @ block
        return gram

    @staticmethod
    def eigvalsh_descending(symmetric: np.ndarray) -> np.ndarray:
        """Eigenvalues of a symmetric matrix, float64, descending."""
        if symmetric.shape[0] >= SCIPY_EIGEN_FROM:
            from scipy.linalg import eigh

            values = eigh(symmetric, eigvals_only=True, driver="evr", overwrite_a=True, check_finite=False)
        else:
            values = np.linalg.eigvalsh(symmetric)
        return values[::-1].astype(np.float64)

    @staticmethod
    def svdvals64(tall: np.ndarray) -> np.ndarray:
        return np.linalg.svd(tall.astype(np.float64), compute_uv=False)

    # -- bytes --------------------------------------------------------------------------------
    @staticmethod
    def host_bytes(x: np.ndarray) -> memoryview:
        return memoryview(np.ascontiguousarray(x).reshape(-1).view(np.uint8))


class TorchBackend:
    """The same operations in PyTorch, for tensors on a GPU (or on the CPU when handed torch tensors)."""

    name = "torch"

    @staticmethod
    def minmax(x: Any) -> tuple[float, float]:
        import torch

        if x.numel() == 0:
            return math.nan, math.nan
        low, high = torch.aminmax(x.reshape(-1))
        return float(low), float(high)

    @staticmethod
    def sum(x: Any) -> float:
        return float(x.sum())  # cascade summation

    @staticmethod
    def sum_squares(x: Any) -> float:
        return float((x * x).sum())

    @staticmethod
    def sum_abs(x: Any) -> float:
        return float(x.abs().sum())

    @staticmethod
    def count(mask: Any) -> int:
        import torch

        return int(torch.count_nonzero(mask))

    @staticmethod
    def count_magnitudes(x: Any, bounds: list[tuple[str, float]]) -> list[int]:
        import torch

        magnitude = x.abs()
        ops = {">=": torch.ge, "<=": torch.le, "<": torch.lt, ">": torch.gt}
        return [int(torch.count_nonzero(ops[op](magnitude, bound))) for op, bound in bounds]

    @staticmethod
    def numel(x: Any) -> int:
        return int(x.numel())

    @staticmethod
    def isfinite(x: Any) -> Any:
        import torch

        return torch.isfinite(x)

    @staticmethod
    def nonfinite_counts(x: Any) -> tuple[int, int, int]:
        import torch

        return (int(torch.isnan(x).sum()), int(torch.isposinf(x).sum()), int(torch.isneginf(x).sum()))

    @staticmethod
    def first_true(mask: Any) -> int:
        import torch

        return int(torch.nonzero(mask.reshape(-1))[0, 0])

    @staticmethod
    def all_zero_lines(matrix: Any) -> tuple[list[int], list[int]]:
        import torch

        nonzero = matrix != 0
        return (torch.nonzero(~nonzero.any(dim=1)).reshape(-1).tolist(),
                torch.nonzero(~nonzero.any(dim=0)).reshape(-1).tolist())

    @staticmethod
    def select(flat: Any, kth: list[int], scratch: bool = False) -> list[float]:
        if flat.device.type == "cpu":
            return NumpyBackend.select(flat.numpy(), kth, scratch)
        return [float(flat.kthvalue(k + 1).values) for k in kth]

    @staticmethod
    def copy(x: Any) -> Any:
        return x.clone()

    @staticmethod
    def abs_deviation(flat: Any, center: float, out: Any = None) -> Any:
        import torch

        return torch.sub(flat, center, out=out).abs_() if out is not None else (flat - center).abs_()

    @staticmethod
    def count_above(x: Any, bound: float) -> int:
        import torch

        return int(torch.count_nonzero(x > bound))

    @staticmethod
    def row_absmax(matrix: Any) -> Any:
        import torch

        low, high = torch.aminmax(matrix, dim=1, keepdim=True)
        return torch.maximum(-low, high)

    @staticmethod
    def scale_rows(row_max: Any, levels: int) -> Any:
        import torch

        return torch.where(row_max > 0, row_max / levels, torch.ones_like(row_max))

    @staticmethod
    def rounding_noise(matrix: Any, scale: Any) -> float:
        import torch

        ratio = torch.div(matrix, scale)
        error = torch.round(ratio).sub_(ratio)  # |error| ≤ ½: no overflow at float32's limit
        error.mul_(error)
        if torch.is_tensor(scale) and scale.numel() > 1:
            return float((scale.double().reshape(-1) ** 2 * error.reshape(error.shape[0], -1).sum(1).double()).sum())
        return float(scale) ** 2 * float(error.sum(dtype=torch.float64))

    @staticmethod
    def central_moments(flat: Any, mean: float) -> tuple[float, float]:
        squared = flat - mean
        squared.mul_(squared)
        second = float(squared.sum()) / flat.numel()
        return second, float(squared.mul_(squared).sum()) / flat.numel()

    @staticmethod
    def float32_gram(tall: Any) -> Any:
        return tall.T @ tall

    @staticmethod
    def float64_gram(tall: Any) -> Any:
        import torch

        rows, cols = tall.shape
        step = max(1, GRAM_CHUNK_ELEMENTS // max(cols, 1))
        if step >= rows:
            block = tall.to(torch.float64)
            return block.T @ block
        gram = torch.zeros(cols, cols, dtype=torch.float64, device=tall.device)
        for start in range(0, rows, step):
            block = tall[start:start + step].to(torch.float64)
            gram.addmm_(block.T, block)
        return gram

    @staticmethod
    def eigvalsh_descending(symmetric: Any) -> np.ndarray:
        import torch

        return torch.linalg.eigvalsh(symmetric).flip(0).double().cpu().numpy()

    @staticmethod
    def svdvals64(tall: Any) -> np.ndarray:
        import torch

        return torch.linalg.svdvals(tall.to(torch.float64)).cpu().numpy()

    @staticmethod
    def host_bytes(x: Any) -> memoryview:
        import torch

        return memoryview(x.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())


NUMPY = NumpyBackend()
TORCH = TorchBackend()
