"""Per-tensor statistics, computed lazily, at most once, and shared by every rule.

A rule asks ``stats.finite["nan_count"]``; the first rule to ask pays for it, the others read the
cache. Groups are named as the guide names them (``finite``, ``sparsity``, ``norms``, ``spectral``,
``quantization``) and land in the JSON report under those names.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Callable

import numpy as np

from weightlint.backend import backend_for
from weightlint.dispersion import dispersion_group
from weightlint.dtypes import widen
from weightlint.quantization import quantization_group
from weightlint.record import TensorRecord
from weightlint.spectral import singular_values, spectral_group


def unit_roundoff(dtype: Any) -> float:
    """Half the spacing of the stored format's numbers near 1: what rounding to it costs, relative."""
    mantissa_bits = {"float64": 52, "float32": 23, "float16": 10, "bfloat16": 7}.get(getattr(dtype, "name", ""), 2)
    return 2.0 ** -(mantissa_bits + 1)


GROUPS = ("finite", "norms", "sparsity", "precision", "spectral", "dispersion", "quantization", "sketch")
# fp16's largest finite value is 65504; round-to-nearest sends |w| < 65520 (halfway to the next
# step) to 65504 and |w| >= 65520 to Inf.
FP16_INF_FROM = 65520.0
# fp16's smallest subnormal is 2^-24; anything at or below half of it rounds to zero (ties to even).
FP16_ZERO_AT_OR_BELOW = 2.0**-25
FP16_SMALLEST_NORMAL = 2.0**-14
FINGERPRINT_SAMPLE = 1 << 16
COMPARE_CHUNK_VALUES = 1 << 22  # values per piece when two tensors are compared chunk by chunk
# A tensor of more values goes to a GPU chunk by chunk (host memory: a chunk, not the tensor).
DEVICE_STREAM_VALUES = 1 << 24
DEVICE_STREAM_CHUNK = 1 << 22


def same_data(first: TensorRecord, second: TensorRecord) -> bool:
    """Whether two records hold bit-for-bit the same values (read again, one pair at a time; in
    chunks when both files can be read so, whatever their size)."""
    if first.dtype != second.dtype or tuple(first.shape) != tuple(second.shape):
        return False
    if first.chunks is not None and second.chunks is not None:
        pieces = zip(first.chunks(COMPARE_CHUNK_VALUES), second.chunks(COMPARE_CHUNK_VALUES))
        return all(a.dtype == b.dtype and bool(np.array_equal(a.view(np.uint8), b.view(np.uint8)))
                   for a, b in pieces)
    a = np.ascontiguousarray(TensorStats.load_values(first)).reshape(-1)
    b = np.ascontiguousarray(TensorStats.load_values(second)).reshape(-1)
    return a.dtype == b.dtype and bool(np.array_equal(a.view(np.uint8), b.view(np.uint8)))


def stream_to_device(record: TensorRecord, device: str) -> Any:
    """A large tensor copied to the device chunk by chunk into one float32 (float64 kept) tensor
    there: host memory holds a chunk, never the tensor (the device holds it whole, as its
    statistics need)."""
    import torch

    dtype = torch.float64 if record.dtype.name == "float64" else torch.float32
    target = torch.empty(record.numel, dtype=dtype, device=device)
    done = 0
    for chunk in record.chunks(DEVICE_STREAM_CHUNK):
        target[done:done + chunk.size].copy_(torch.from_numpy(np.ascontiguousarray(chunk)))
        done += chunk.size
    if done != record.numel:
        raise EOFError(f"read {done} of {record.numel} values")
    return target.reshape(record.shape)


def _index(flat_index: int, shape: tuple[int, ...]) -> list[int]:
    index = []
    for size in reversed(shape):
        index.append(flat_index % size)
        flat_index //= size
    return list(reversed(index))


class TensorStats:
    """Statistics of one judged tensor on one device.

    ``values`` is a NumPy array on the CPU (PyTorch is not imported for safetensors, GGUF and
    ONNX files) and a torch tensor on a GPU; every statistic runs through the matching backend.
    """

    def __init__(self, record: TensorRecord, device: str = "cpu", values: Any = None) -> None:
        self.record = record
        self.device = str(device)
        if values is not None:  # read ahead by the runner
            self.__dict__["values"] = values

    @staticmethod
    def load_values(record: TensorRecord, device: str = "cpu") -> Any:
        """The record's data as float32 (float64 kept): NumPy for the CPU, torch for a GPU."""
        if str(device).startswith("cuda") and record.chunks is not None and record.numel > DEVICE_STREAM_VALUES:
            return stream_to_device(record, device)
        raw = record.load()
        if str(device).startswith("cuda"):
            import torch

            tensor = torch.from_numpy(np.ascontiguousarray(raw)) if isinstance(raw, np.ndarray) else raw
            dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
            return tensor.to(device=device, dtype=dtype)
        if isinstance(raw, np.ndarray):
            return widen(raw)
        import torch  # a torch tensor from a pickle or an in-memory model: already imported

        tensor = raw.detach().to("cpu")
        if tensor.dtype != torch.float64 and tensor.dtype != torch.float32:
            tensor = tensor.to(torch.float32)
        return tensor.resolve_conj().resolve_neg().numpy()

    @property
    def xp(self) -> Any:
        return backend_for(self.values)

    def read(self) -> None:
        """Read the data now, so that a file's failure is reported as the file's, not a statistic's."""
        self.values  # noqa: B018

    # -- data ---------------------------------------------------------------------------------
    @cached_property
    def values(self) -> Any:
        """The tensor as float32 (float64 kept) on the device; NaN and Inf preserved.

        Only this copy is kept: float16/bfloat16/float8 → float32 is exact and one-to-one, so every
        statistic (the content digest included) can be computed from it.
        """
        return self.load_values(self.record, self.device)

    @cached_property
    def extremes(self) -> tuple[float, float]:
        """min and max; NaN propagates, so finite extremes mean all finite."""
        return self.xp.minmax(self.values.reshape(-1))

    @cached_property
    def all_finite(self) -> bool:
        low, high = self.extremes
        return math.isfinite(low) and math.isfinite(high)

    @cached_property
    def nonfinite_mask(self) -> Any:
        """Boolean mask of NaN/Inf entries, or None when every value is finite."""
        if self.all_finite:
            return None
        return ~self.xp.isfinite(self.values)

    @cached_property
    def finite_values(self) -> Any:
        """Flat finite entries: statistics of a tensor with a NaN describe the rest of it."""
        if self.nonfinite_mask is None:
            return self.values.reshape(-1)
        return self.values[~self.nonfinite_mask]

    @cached_property
    def matrix(self) -> Any:
        """(outputs, inputs) view: conv kernels flattened, HF Conv1D transposed."""
        rows = self.values.reshape(self.record.stored_rows, -1)
        return rows.T if self.record.is_in_out else rows

    # -- groups -------------------------------------------------------------------------------
    @cached_property
    def finite(self) -> dict[str, Any]:
        nan = posinf = neginf = 0
        first = None
        if not self.all_finite:
            nan, posinf, neginf = self.xp.nonfinite_counts(self.values)
            first = _index(self.xp.first_true(self.nonfinite_mask), self.record.shape)
        total = nan + posinf + neginf
        return {
            "nan_count": nan,
            "posinf_count": posinf,
            "neginf_count": neginf,
            "nonfinite_count": total,
            "first_nonfinite_index": first,
            "finite_fraction": 1.0 - total / max(self.record.numel, 1),
        }

    @cached_property
    def norms(self) -> dict[str, Any]:
        """Norms and moments of the finite values. Sums are pairwise (NumPy) or cascade (PyTorch)
        in the tensor's precision: relative error ~1e-7 against float64, at a fraction of the cost."""
        xp = self.xp
        finite = self.finite_values
        count = xp.numel(finite)
        if count == 0:
            nan = float("nan")
            return {"l2": nan, "rms": nan, "max_abs": nan, "mean_abs": nan, "mean": nan, "std": nan,
                    "min": nan, "max": nan, "finite_only": True}
        low, high = self.extremes if self.all_finite else xp.minmax(finite)
        max_abs = max(-low, high)
        # Squares overflow float32 beyond 1.8e19, and sums of values near float32's maximum
        # overflow too: scale by the largest magnitude there.
        scale = max_abs if max_abs > 1e18 else 1.0
        scaled = finite / scale if scale != 1.0 else finite
        square_sum = xp.sum_squares(scaled) * scale * scale
        mean = xp.sum(scaled) / count * scale
        variance = max(square_sum / count - mean * mean, 0.0)
        return {
            "l2": square_sum**0.5,
            "rms": (square_sum / count) ** 0.5,
            "max_abs": max_abs,
            "mean_abs": xp.sum_abs(scaled) / count * scale,
            "mean": mean,
            "std": variance**0.5,
            "min": low,
            "max": high,
            **({"finite_only": True} if self.nonfinite_mask is not None else {}),
        }

    @cached_property
    def sparsity(self) -> dict[str, Any]:
        zero_count = self.record.numel - self.xp.count(self.values)
        group: dict[str, Any] = {
            "zero_count": zero_count,
            "zero_fraction": zero_count / max(self.record.numel, 1),
        }
        if self.record.is_matrix:
            if zero_count == 0:
                group["zero_rows"], group["zero_columns"] = [], []
            else:
                group["zero_rows"], group["zero_columns"] = self.xp.all_zero_lines(self.matrix)
        return group

    @cached_property
    def precision(self) -> dict[str, Any]:
        """What a cast to fp16 would do: values that overflow to ±Inf, non-zeros that flush to 0."""
        xp = self.xp
        finite = self.finite_values
        zeros = self.sparsity["zero_count"]
        nonzero = xp.numel(finite) - zeros
        bounds = [("<=", FP16_ZERO_AT_OR_BELOW), ("<", FP16_SMALLEST_NORMAL)]
        if self.norms["max_abs"] >= FP16_INF_FROM:
            bounds.append((">=", FP16_INF_FROM))
        counts = xp.count_magnitudes(finite, bounds)
        underflow, subnormal = counts[0] - zeros, counts[1] - zeros
        overflow = counts[2] if len(counts) > 2 else 0
        return {
            "fp16_overflow_count": overflow,
            "fp16_underflow_count": underflow,
            "fp16_underflow_percentage": 100.0 * underflow / nonzero if nonzero else 0.0,
            "fp16_subnormal_percentage": 100.0 * subnormal / nonzero if nonzero else 0.0,
        }

    @cached_property
    def singular_values(self) -> np.ndarray:
        """The one decomposition of this matrix (float64, descending), shared by every rule."""
        return singular_values(self.matrix)

    def _matrix_group(self, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A weight matrix's group: empty for other tensors, skipped when values are non-finite."""
        if not self.record.is_matrix:
            return {}
        if not self.all_finite:
            return {"skipped": "non-finite values"}
        return compute()

    @cached_property
    def spectral(self) -> dict[str, Any]:
        return self._matrix_group(lambda: spectral_group(
            self.singular_values, self.record.matrix_shape,
            dead_rows=len(self.sparsity["zero_rows"]), dead_columns=len(self.sparsity["zero_columns"]),
            unit_roundoff=unit_roundoff(self.record.dtype)))

    @cached_property
    def dispersion(self) -> dict[str, Any]:
        """Row and column energy dispersion against i.i.d. entries (weightlint/dispersion.py)."""
        return self._matrix_group(lambda: dispersion_group(self.matrix))

    @cached_property
    def sketch(self) -> dict[str, Any]:
        """The HTML report's plot data (weightlint/sketches.py): computed when that report is asked for."""
        from weightlint.sketches import sketch_group

        values = self.values if isinstance(self.values, np.ndarray) else self.values.detach().cpu().numpy()
        return self._matrix_group(lambda: sketch_group(self.singular_values, values, self.record.matrix_shape))

    @cached_property
    def quantization(self) -> dict[str, Any]:
        return self._matrix_group(lambda: quantization_group(self.matrix, self.norms, flat=self.values.reshape(-1)))

    @cached_property
    def fingerprint(self) -> str:
        """A cheap digest that equal tensors share: dtype, shape, min, max and a strided sample of
        at most ~65,536 values. Equal fingerprints make two tensors *candidates*; WL502
        then compares their data (:func:`same_data`) before it calls them duplicates."""
        import hashlib

        flat = self.values.reshape(-1)
        step = max(1, self.record.numel // FINGERPRINT_SAMPLE)
        norms = self.norms
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.record.dtype}{tuple(self.record.shape)}".encode())
        # min and max are exact whatever the summation order; sums are not, so they stay out.
        digest.update(repr([norms.get("min"), norms.get("max")]).encode())
        digest.update(self.xp.host_bytes(flat[::step]))
        return digest.hexdigest()

    @cached_property
    def content_hash(self) -> str:
        """A digest of the stored bytes, dtype and shape: equal digests mean identical tensors."""
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.record.dtype}{tuple(self.record.shape)}".encode())
        digest.update(self.xp.host_bytes(self.values))
        return digest.hexdigest()

    # -- reporting ----------------------------------------------------------------------------
    def computed(self) -> dict[str, Any]:
        """Every group computed so far (the JSON report's per-tensor statistics)."""
        computed = {name: self.__dict__[name] for name in self.group_names() if self.__dict__.get(name)}
        for name in ("fingerprint", "content_hash"):
            if name in self.__dict__:
                computed[name] = self.__dict__[name]
        return computed

    @classmethod
    def group_names(cls) -> tuple[str, ...]:
        return GROUPS

    def release(self) -> None:
        """Drop the tensor data; the computed statistics stay."""
        for name in ("values", "nonfinite_mask", "finite_values", "matrix", "singular_values"):
            self.__dict__.pop(name, None)
