"""Statistics of a tensor too large to widen whole, from passes over blocks of its rows.

A 128k × 8192 embedding is 4 GiB as float32, and the whole-tensor statistics hold that copy plus a
temporary of the same size (the outlier share's partitioned copy): 2–4× the tensor on disk. Here
every group of :class:`TensorStats` is computed from passes over blocks of whole stored rows, read
and decoded by ``record.chunks`` into reused buffers, so memory stays at a few blocks plus what the
group itself keeps (a Gram matrix of the short side). Each pass reads the file again (from the
page cache, not from this process's memory).

The results are the whole computation's: counts, extremes, order statistics (a radix selection on
the values' bits, 16 bits a pass) and digests exactly; sums as float64 totals of the same float32
partial sums; singular values from a Gram matrix accumulated over the blocks in float64, or, where
a Gram matrix cannot resolve σmin, from the R of a blocked QR (TSQR) of the matrix, which is exact.
"""

from __future__ import annotations

import hashlib
import math
from functools import cached_property
from typing import Any, Callable, Iterator

import numpy as np

from weightlint.backend import BLOCK_VALUES as BACKEND_BLOCK_VALUES
from weightlint.backend import NUMPY
from weightlint.dispersion import dispersion_from_energies, line_energies
from weightlint.quantization import INT8_MAX, MAD_TO_SIGMA, SPIKE_RANK, quantization_result
from weightlint.record import TensorRecord
from weightlint.spectral import FAST_PATH_ASPECT, GRAM32_CONDITION_LIMIT, GRAM_CONDITION_LIMIT
from weightlint.stats.tensor import (FINGERPRINT_SAMPLE, FP16_INF_FROM, FP16_SMALLEST_NORMAL, FP16_ZERO_AT_OR_BELOW,
                                     TensorStats, _index)

# Tensors of more values than this (256 MB as float32) are checked in row blocks on the CPU.
WHOLE_TENSOR_VALUES = 1 << 26
# Values per row block (64 MB as float32), and per gathered column panel of a wide matrix.
BLOCK_VALUES = 1 << 24
_DIGIT_BITS = 16
SELECT_PIECE_VALUES = 1 << 20  # values whose sort keys and digits are made at once


class UnreadableData(Exception):
    """A block could not be read (the file was cut or removed after the first pass): the file's
    problem (WL001), not a failure of the statistics."""


def is_giant(record: TensorRecord, device: str = "cpu") -> bool:
    """Whether this record is checked in row blocks: judged, larger than ``WHOLE_TENSOR_VALUES``,
    readable in chunks, on the CPU (a GPU holds its own memory)."""
    return (record.is_judged and record.chunks is not None and record.numel > WHOLE_TENSOR_VALUES
            and not str(device).startswith("cuda"))


def stats_for(record: TensorRecord, device: str = "cpu", values: Any = None) -> TensorStats:
    """The statistics object for a record: blocked for a giant one, whole otherwise."""
    if values is None and is_giant(record, device):
        return BlockedTensorStats(record, device)
    return TensorStats(record, device, values=values)


class BlockedTensorStats(TensorStats):
    """:class:`TensorStats` computed from passes over row blocks; ``values`` is never held."""

    def __init__(self, record: TensorRecord, device: str = "cpu") -> None:
        super().__init__(record, device)
        self.rows = max(record.stored_rows, 1)
        self.columns = record.numel // self.rows
        # Whole rows while they fit a block (a multiple of the backend's own pieces, so that its
        # float32 partial sums are those of the whole computation when the row length divides them);
        # a longer row (a stack of experts stored as a few huge rows) comes in pieces of one row.
        self.whole_rows = self.columns <= BLOCK_VALUES
        piece = max(1, BACKEND_BLOCK_VALUES // max(self.columns, 1))
        self.rows_per_block = max(piece, BLOCK_VALUES // max(self.columns, 1) // piece * piece)
        self.block_values = self.rows_per_block * self.columns if self.whole_rows else BLOCK_VALUES

    @property
    def xp(self) -> Any:
        return NUMPY

    def read(self) -> None:
        self.extremes  # noqa: B018 - one pass over every byte: a truncated file fails here

    # -- passes -------------------------------------------------------------------------------
    def blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first stored row, first column, block as a matrix), in storage order, each valid until
        the next: whole rows, or pieces of one row when rows are longer than a block."""
        position = 0
        chunks = self.record.chunks(self.block_values)
        while True:
            try:
                chunk = next(chunks, None)
            except Exception as error:
                raise UnreadableData(str(error)) from error
            if chunk is None:
                return
            if self.whole_rows:
                yield position // self.columns, 0, chunk.reshape(-1, self.columns)
            else:  # split at row ends: a chunk is never longer than a row
                done = 0
                while done < chunk.size:
                    row, column = divmod(position + done, self.columns)
                    width = min(chunk.size - done, self.columns - column)
                    yield row, column, chunk[done:done + width].reshape(1, width)
                    done += width
            position += chunk.size

    def finite_blocks(self) -> Iterator[np.ndarray]:
        """The finite values of each block, flat."""
        for _, _, block in self.blocks():
            flat = block.reshape(-1)
            yield flat if self.all_finite else flat[np.isfinite(flat)]

    def deviation_blocks(self, center: float) -> Callable[[], Iterator[np.ndarray]]:
        """Blocks of |x − center|, computed as the whole computation does (in the values' precision)."""
        def make() -> Iterator[np.ndarray]:
            buffer = None
            for flat in self.finite_blocks():
                if buffer is None or buffer.size < flat.size:
                    buffer = np.empty(flat.size, dtype=flat.dtype)
                yield NUMPY.abs_deviation(flat, center, out=buffer[:flat.size])
        return make

    # -- groups -------------------------------------------------------------------------------
    @cached_property
    def extremes(self) -> tuple[float, float]:
        low, high, saw_nan = math.inf, -math.inf, False
        for _, _, block in self.blocks():
            block_low, block_high = NUMPY.minmax(block)
            if math.isnan(block_low) or math.isnan(block_high):
                saw_nan = True
            else:
                low, high = min(low, block_low), max(high, block_high)
        return (math.nan, math.nan) if saw_nan else (low, high)

    @cached_property
    def finite(self) -> dict[str, Any]:
        nan = posinf = neginf = 0
        first = None
        if not self.all_finite:
            for row, column, block in self.blocks():
                counts = NUMPY.nonfinite_counts(block)
                if first is None and sum(counts):
                    flat_index = row * self.columns + column + NUMPY.first_true(~np.isfinite(block))
                    first = _index(flat_index, self.record.shape)
                nan, posinf, neginf = nan + counts[0], posinf + counts[1], neginf + counts[2]
        total = nan + posinf + neginf
        return {"nan_count": nan, "posinf_count": posinf, "neginf_count": neginf, "nonfinite_count": total,
                "first_nonfinite_index": first, "finite_fraction": 1.0 - total / max(self.record.numel, 1)}

    @cached_property
    def finite_count(self) -> int:
        return self.record.numel - self.finite["nonfinite_count"]

    @cached_property
    def norms(self) -> dict[str, Any]:
        count = self.finite_count
        if count == 0:
            nan = float("nan")
            return {"l2": nan, "rms": nan, "max_abs": nan, "mean_abs": nan, "mean": nan, "std": nan,
                    "min": nan, "max": nan, "finite_only": True}
        if self.all_finite:
            low, high = self.extremes
        else:
            pairs = [NUMPY.minmax(flat) for flat in self.finite_blocks() if flat.size]
            low, high = min(p[0] for p in pairs), max(p[1] for p in pairs)
        max_abs = max(-low, high)
        scale = max_abs if max_abs > 1e18 else 1.0  # as the whole computation: squares overflow float32 beyond
        square_sum = total = absolute = 0.0
        for flat in self.finite_blocks():
            scaled = flat / scale if scale != 1.0 else flat
            square_sum += NUMPY.sum_squares(scaled)
            total += NUMPY.sum(scaled)
            absolute += NUMPY.sum_abs(scaled)
        square_sum *= scale * scale
        mean = total / count * scale
        variance = max(square_sum / count - mean * mean, 0.0)
        return {"l2": square_sum**0.5, "rms": (square_sum / count) ** 0.5, "max_abs": max_abs,
                "mean_abs": absolute / count * scale, "mean": mean, "std": variance**0.5, "min": low, "max": high,
                **({"finite_only": True} if not self.all_finite else {})}

    @cached_property
    def sparsity(self) -> dict[str, Any]:
        nonzero = 0
        live_rows = np.zeros(self.rows, dtype=bool)
        live_columns = np.zeros(self.columns, dtype=bool)
        for row, column, block in self.blocks():
            nonzero += NUMPY.count(block)
            if self.record.is_matrix:
                live = block != 0
                live_rows[row:row + block.shape[0]] |= live.any(axis=1)
                live_columns[column:column + block.shape[1]] |= live.any(axis=0)
        zero_count = self.record.numel - nonzero
        group: dict[str, Any] = {"zero_count": zero_count, "zero_fraction": zero_count / max(self.record.numel, 1)}
        if self.record.is_matrix:
            zero_rows = np.flatnonzero(~live_rows).tolist()
            zero_columns = np.flatnonzero(~live_columns).tolist()
            if self.record.is_in_out:
                zero_rows, zero_columns = zero_columns, zero_rows
            group["zero_rows"], group["zero_columns"] = zero_rows, zero_columns
        return group

    @cached_property
    def precision(self) -> dict[str, Any]:
        zeros = self.sparsity["zero_count"]
        nonzero = self.finite_count - zeros
        bounds = [("<=", FP16_ZERO_AT_OR_BELOW), ("<", FP16_SMALLEST_NORMAL)]
        if self.norms["max_abs"] >= FP16_INF_FROM:
            bounds.append((">=", FP16_INF_FROM))
        counts = [0] * len(bounds)
        for flat in self.finite_blocks():
            counts = [a + b for a, b in zip(counts, NUMPY.count_magnitudes(flat, bounds))]
        underflow, subnormal = counts[0] - zeros, counts[1] - zeros
        return {"fp16_overflow_count": counts[2] if len(counts) > 2 else 0, "fp16_underflow_count": underflow,
                "fp16_underflow_percentage": 100.0 * underflow / nonzero if nonzero else 0.0,
                "fp16_subnormal_percentage": 100.0 * subnormal / nonzero if nonzero else 0.0}

    @cached_property
    def singular_values(self) -> np.ndarray:
        return blocked_singular_values(self.tall_panels, self.tall_shape, self._value_dtype)

    @cached_property
    def dispersion(self) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            row_energy = np.zeros(self.rows, dtype=np.float64)
            column_energy = np.zeros(self.columns, dtype=np.float64)
            fourth = 0.0
            for row, column, block in self.blocks():
                rows, columns, block_fourth = line_energies(block)
                row_energy[row:row + len(rows)] += rows
                column_energy[column:column + len(columns)] += columns
                fourth += block_fourth
            if self.record.is_in_out:
                row_energy, column_energy = column_energy, row_energy
            return dispersion_from_energies(row_energy, column_energy, fourth)
        return self._matrix_group(compute)

    @cached_property
    def sketch(self) -> dict[str, Any]:
        from weightlint.sketches import sketch_group

        def compute() -> dict[str, Any]:
            count = self.finite_count
            if count <= 1000:  # small enough to take whole (a giant tensor has more)
                return sketch_group(self.singular_values, np.concatenate([f.copy() for f in self.finite_blocks()]),
                                    self.record.matrix_shape)
            return sketch_group(self.singular_values, None, self.record.matrix_shape, histogram_blocks=self.finite_blocks,
                                quantiles=self.quantiles((0.001, 0.999)))
        return self._matrix_group(compute)

    @cached_property
    def quantization(self) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            norms = self.norms
            share, robust = self.outlier_share()
            signal = norms["l2"] ** 2
            per_tensor = self.sqnr_db(per_channel=False, signal=signal)
            per_channel = self.sqnr_db(per_channel=True, signal=signal)
            return quantization_result(share, robust, per_tensor, per_channel, norms, self.kurtosis(norms["mean"]))
        return self._matrix_group(compute)

    @cached_property
    def fingerprint(self) -> str:
        step = max(1, self.record.numel // FINGERPRINT_SAMPLE)
        samples = []
        for row, column, block in self.blocks():
            start = row * self.columns + column
            samples.append(block.reshape(-1)[(-start) % step::step].copy())
        norms = self.norms
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.record.dtype}{tuple(self.record.shape)}".encode())
        digest.update(repr([norms.get("min"), norms.get("max")]).encode())
        digest.update(NUMPY.host_bytes(np.concatenate(samples)))
        return digest.hexdigest()

    @cached_property
    def content_hash(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.record.dtype}{tuple(self.record.shape)}".encode())
        for _, _, block in self.blocks():
            digest.update(NUMPY.host_bytes(block))
        return digest.hexdigest()

    def release(self) -> None:
        self.__dict__.pop("singular_values", None)

    # -- pieces of the groups -----------------------------------------------------------------
    @property
    def _value_dtype(self) -> np.dtype:
        return np.dtype(np.float64 if self.record.dtype.name == "float64" else np.float32)

    def quantiles(self, levels: tuple[float, ...]) -> list[float]:
        """np.quantile's default (linear) quantiles of the finite values, from exact order statistics."""
        count = self.finite_count
        positions = [level * (count - 1) for level in levels]
        kth = sorted({int(math.floor(p)) for p in positions} | {min(int(math.floor(p)) + 1, count - 1)
                                                                 for p in positions})
        picked = dict(zip(kth, select(self.finite_blocks, kth, self._value_dtype)))
        results = []
        for position in positions:
            below = int(math.floor(position))
            a, b = np.float64(picked[below]), np.float64(picked[min(below + 1, count - 1)])
            t = position - below
            difference = b - a  # NumPy's _lerp: from the nearer end
            results.append(float(b - difference * (1 - t) if t >= 0.5 else a + difference * t))
        return results

    def middle_ranks(self) -> list[int]:
        """The ranks whose mean is the median (NumPy's: the two middle values for an even count)."""
        middle = self.finite_count // 2
        return [middle] if self.finite_count % 2 else [middle - 1, middle]

    def outlier_share(self, sigmas: float = 3.0) -> tuple[float, dict[str, Any]]:
        """:func:`weightlint.quantization.outlier_share`, over blocks. The MAD and the spike ratio's
        k-th deviation come from one selection over the same deviations."""
        count = self.finite_count
        middle = self.middle_ranks()
        middle_values = select(self.finite_blocks, middle, self._value_dtype)
        center = sum(middle_values) / len(middle_values)
        spike_rank = [count - SPIKE_RANK] if count > SPIKE_RANK else []
        picked = select(self.deviation_blocks(center), middle + spike_rank, self._value_dtype)
        scale = MAD_TO_SIGMA * sum(picked[:len(middle)]) / len(middle)
        spike_kth = picked[len(middle):]
        method = "median/MAD"
        if scale == 0:
            method = "mean/std"
            center = sum(NUMPY.sum(flat) for flat in self.finite_blocks()) / count
            scale = (sum(NUMPY.sum_squares(d) for d in self.deviation_blocks(center)()) / count) ** 0.5
            spike_kth = select(self.deviation_blocks(center), spike_rank, self._value_dtype) if scale else []
        if scale == 0:
            return 0.0, {"center": center, "scale": 0.0, "scale_method": method, "spike_ratio": None}
        beyond, largest = 0, 0.0
        for deviations in self.deviation_blocks(center)():
            beyond += NUMPY.count_above(deviations, sigmas * scale)
            if deviations.size:
                largest = max(largest, NUMPY.minmax(deviations)[1])
        spike_ratio = largest / spike_kth[0] if spike_kth and spike_kth[0] > 0 else None
        return 100.0 * beyond / count, {"center": center, "scale": scale, "scale_method": method,
                                        "spike_ratio": spike_ratio}

    def sqnr_db(self, per_channel: bool, signal: float) -> float | None:
        """:func:`weightlint.quantization.sqnr_db`, over blocks (scales per output row of the matrix)."""
        if not per_channel:
            absmax = self.norms["max_abs"]
            if absmax == 0:
                return None
            scale = absmax / INT8_MAX
            noise = sum(NUMPY.rounding_noise(block, scale) for _, _, block in self.blocks())
        elif not self.record.is_in_out and self.whole_rows:  # output rows are stored rows, whole in each block
            noise, largest = 0.0, 0.0
            for _, _, block in self.blocks():
                row_max = NUMPY.row_absmax(block)
                largest = max(largest, float(row_max.max()))
                noise += NUMPY.rounding_noise(block, NUMPY.scale_rows(row_max, INT8_MAX))
            if largest == 0:
                return None
        else:  # the output rows' maxima first (stored rows in pieces, or stored columns), then the noise
            in_out = self.record.is_in_out
            line_max = np.zeros((self.columns if in_out else self.rows, 1), dtype=self._value_dtype)
            for row, column, block in self.blocks():
                lines = slice(column, column + block.shape[1]) if in_out else slice(row, row + block.shape[0])
                np.maximum(line_max[lines], NUMPY.row_absmax(block.T if in_out else block), out=line_max[lines])
            if float(line_max.max()) == 0:
                return None
            scales = NUMPY.scale_rows(line_max, INT8_MAX)
            noise = 0.0
            for row, column, block in self.blocks():
                if in_out:
                    noise += NUMPY.rounding_noise(block.T, scales[column:column + block.shape[1]])
                else:
                    noise += NUMPY.rounding_noise(block, scales[row:row + block.shape[0]])
        if noise == 0:
            return math.inf
        return 10.0 * math.log10(signal / noise)

    def kurtosis(self, mean: float) -> float | None:
        second = fourth = 0.0
        for flat in self.finite_blocks():
            if not flat.size:
                continue
            block_second, block_fourth = NUMPY.central_moments(flat, mean)
            second += block_second * flat.size
            fourth += block_fourth * flat.size
        if second == 0:
            return None
        count = self.finite_count
        return (fourth / count) / (second / count) ** 2

    # -- the matrix as panels of its tall side ------------------------------------------------
    @property
    def tall_shape(self) -> tuple[int, int]:
        return (self.rows, self.columns) if self.rows >= self.columns else (self.columns, self.rows)

    def tall_panels(self) -> Iterator[np.ndarray]:
        """Row panels of the matrix's tall orientation (whose Gram matrix AᵀA is the small one):
        blocks of stored rows, or, for a wide stored matrix, its column panels gathered in one pass
        each and transposed."""
        if self.rows >= self.columns:  # then rows fit a block: a row longer than 16M values would need 16M rows
            for _, _, block in self.blocks():
                yield block
            return
        width = max(1, BLOCK_VALUES // self.rows)
        panel = np.empty((self.rows, min(width, self.columns)), dtype=self._value_dtype)
        for start in range(0, self.columns, width):
            stop = min(start + width, self.columns)
            if self.record.ranges is not None:  # each row's stretch read where it lies
                stretches = [(row * self.columns + start, stop - start) for row in range(self.rows)]
                try:
                    for row, values in enumerate(self.record.ranges(stretches)):
                        panel[row, :stop - start] = values
                except Exception as error:
                    raise UnreadableData(str(error)) from error
            else:  # gathered in a pass over the blocks
                for row, column, block in self.blocks():
                    low, high = max(start, column), min(stop, column + block.shape[1])
                    if low < high:
                        panel[row:row + block.shape[0], low - start:high - start] = block[:, low - column:high - column]
            yield panel[:, :stop - start].T


def blocked_singular_values(panels: Callable[[], Iterator[np.ndarray]], shape: tuple[int, int],
                            dtype: np.dtype) -> np.ndarray:
    """:func:`weightlint.spectral.singular_values` for a tall matrix given as row panels: the same
    routes (a float32 Gram matrix for clearly rectangular ones, else float64; the exact route past
    ``GRAM_CONDITION_LIMIT``), with the Gram matrices summed over the panels in float64 and the
    exact route a TSQR (the R of the stacked panels, whose singular values are the matrix's)."""
    rows, columns = shape
    if dtype == np.float32 and rows >= FAST_PATH_ASPECT * columns:
        gram = np.zeros((columns, columns), dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            for panel in panels():
                gram += NUMPY.float32_gram(panel)
        gram32 = gram.astype(np.float32)
        del gram
        if bool(np.isfinite(float(gram32.sum()))):
            eigenvalues = NUMPY.eigvalsh_descending(gram32)
            if eigenvalues[0] > 0 and eigenvalues[-1] > eigenvalues[0] / GRAM32_CONDITION_LIMIT**2:
                return np.sqrt(eigenvalues)
        del gram32
    gram = np.zeros((columns, columns), dtype=np.float64)
    for panel in panels():
        gram += NUMPY.float64_gram(panel)
    values = np.sqrt(np.clip(NUMPY.eigvalsh_descending(gram), 0.0, None))
    del gram
    if values[0] > 0 and values[-1] < values[0] / GRAM_CONDITION_LIMIT:
        values = tsqr_singular_values(panels)
    return values


def tsqr_singular_values(panels: Callable[[], Iterator[np.ndarray]]) -> np.ndarray:
    """Singular values of a tall matrix from the R factor of a blocked QR: R of [R; next panel],
    panel by panel, in float64 (A = QR with orthonormal Q, so σ(A) = σ(R) exactly)."""
    r = None
    for panel in panels():
        stacked = panel.astype(np.float64) if r is None else np.vstack([r, panel.astype(np.float64)])
        r = np.linalg.qr(stacked, mode="r")
    return np.linalg.svd(r, compute_uv=False)


# -- exact order statistics in bounded memory ----------------------------------------------------
def _sortable_keys(flat: np.ndarray) -> np.ndarray:
    """Unsigned integers that sort as the floats do (−0 just before +0): every bit flipped for
    negatives, the sign bit set for positives; one new array, the rest in place."""
    unsigned = np.uint64 if flat.dtype == np.float64 else np.uint32
    bits = flat.view(unsigned)
    width = flat.dtype.itemsize * 8
    keys = np.right_shift(bits, unsigned(width - 1))  # 1 for negatives
    np.negative(keys, out=keys)  # all ones for negatives (unsigned wrap-around), 0 otherwise
    np.bitwise_or(keys, unsigned(1) << unsigned(width - 1), out=keys)
    return np.bitwise_xor(keys, bits, out=keys)


def _from_key(key: int, dtype: np.dtype) -> float:
    width = dtype.itemsize * 8
    sign = 1 << (width - 1)
    bits = key ^ sign if key & sign else ~key & ((1 << width) - 1)
    unsigned = np.uint64 if width == 64 else np.uint32
    return float(np.array([bits], dtype=unsigned).view(dtype)[0])


def select(make_blocks: Callable[[], Iterator[np.ndarray]], kth: list[int], dtype: np.dtype) -> list[float]:
    """The k-th smallest (0-based, exact) of the values the blocks hold, none of them NaN: a radix
    selection on their sortable keys, 16 bits a pass (two passes for float32, four for float64),
    each pass a histogram of the next 16 bits among the values that share the digits found so far."""
    width = np.dtype(dtype).itemsize * 8
    targets = [[k, 0] for k in kth]  # [rank left, key prefix found so far]
    for shift in range(width - _DIGIT_BITS, -1, -_DIGIT_BITS):
        prefixes = {prefix for _, prefix in targets}
        histograms = {prefix: np.zeros(1 << _DIGIT_BITS, dtype=np.int64) for prefix in prefixes}
        for block in make_blocks():
            for start in range(0, block.size, SELECT_PIECE_VALUES):  # temporaries of a piece, not of a block
                keys = _sortable_keys(block[start:start + SELECT_PIECE_VALUES])
                digits_of = (keys >> keys.dtype.type(shift)) & keys.dtype.type(0xFFFF)
                if shift + _DIGIT_BITS >= width:
                    histograms[0] += np.bincount(digits_of.astype(np.intp), minlength=1 << _DIGIT_BITS)
                    continue
                high = np.right_shift(keys, keys.dtype.type(shift + _DIGIT_BITS), out=keys)
                for prefix in prefixes:
                    digits = digits_of[high == prefix]
                    histograms[prefix] += np.bincount(digits.astype(np.intp), minlength=1 << _DIGIT_BITS)
        for target in targets:
            cumulative = np.cumsum(histograms[target[1]])
            digit = int(np.searchsorted(cumulative, target[0], side="right"))
            target[0] -= int(cumulative[digit - 1]) if digit else 0
            target[1] = (target[1] << _DIGIT_BITS) | digit
    return [_from_key(prefix, np.dtype(dtype)) for _, prefix in targets]
