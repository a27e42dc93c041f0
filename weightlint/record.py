"""The unit that flows from sources to rules: one tensor, described, loaded on demand."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from weightlint.dtypes import DType, from_torch
from weightlint.dtypes import dtype as dtype_named

# Buffers that are tensors in a state dict but not trained weights.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "position_ids", "attention_mask")
# Hugging Face ``Conv1D`` stores its weight as (in_features, out_features): GPT-2 family names.
# Record metadata worth a line in the JSON report (module type from config.json, GGUF storage type,
# how an ONNX graph uses the tensor).
_DESCRIBED_METADATA = ("module_type", "gguf_type", "nested_under", "external_data", "graph_role", "consumers")
_FLOAT_STORAGE = ("F32", "F16", "BF16", "F64")
_RNN_OPS = ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM")
_CONV1D_NAME = re.compile(r"(^|\.)(c_attn|c_proj|c_fc|q_attn)\.weight$")


@dataclass
class TensorRecord:
    """One tensor of a checkpoint. ``load()`` materializes it; nothing else touches the data.

    File sources load NumPy arrays (floats widened exactly to float32, float64 kept), without
    importing torch; PyTorch pickles and in-memory models load torch tensors."""

    name: str
    shape: tuple[int, ...]
    dtype: DType  # also equal to the torch.dtype of the same name
    file: str
    load: Callable[[], Any] = field(repr=False)  # a NumPy array or a torch tensor
    # chunks(n): the data as float32 (float64 kept) chunks of at most n values, in order, each valid
    # until the next is asked for (reused buffers). None: the source only loads whole tensors.
    chunks: Callable[[int], Iterator[Any]] | None = field(default=None, repr=False)
    # ranges([(start, count), ...]): the values [start, start + count) in storage order, as float32
    # (float64 kept), one array per range (random access for a wide matrix's column panels).
    ranges: Callable[[Sequence[tuple[int, int]]], Iterator[Any]] | None = field(default=None, repr=False)
    format: str = "unknown"
    layout: str | None = None  # "out_in" or "in_out"; None: guess from the name
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.dtype, str):
            self.dtype = dtype_named(self.dtype)
        elif not isinstance(self.dtype, DType):  # a torch.dtype
            self.dtype = from_torch(self.dtype)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_floating(self) -> bool:
        return self.dtype.is_floating_point or self.dtype.is_complex

    @property
    def is_buffer(self) -> bool:
        leaf = self.name.rsplit(".", 1)[-1]
        return bool(self.metadata.get("buffer")) or leaf in _BUFFER_SUFFIXES

    @property
    def stored_quantized(self) -> str | None:
        """The quantization a checkpoint stores this tensor in (a GGUF ``Q4_1``, ``Q8_0`` …), else None.

        Such a tensor already is its quantized self: int8 risk and outlier rules do not apply to it.
        """
        kind = self.metadata.get("gguf_type")
        if kind and str(kind).upper() not in _FLOAT_STORAGE:
            return kind
        return self.metadata.get("onnx_quantization", {}).get("scheme")

    @property
    def is_judged(self) -> bool:
        """Numeric rules judge floating-point, non-buffer, non-empty tensors only."""
        return self.is_floating and not self.dtype.is_complex and not self.is_buffer and self.numel > 0

    @property
    def stored_rows(self) -> int:
        """Rows of the stored matrix view: the first dimension, or for an ONNX RNN's stacked
        ``W``/``R`` ([directions, gates·hidden, inputs]) every direction's gate rows."""
        if self.ndim == 3 and self.is_rnn_weight:
            return self.shape[0] * self.shape[1]
        return self.shape[0] if self.ndim else 1

    @property
    def is_rnn_weight(self) -> bool:
        consumers = self.metadata.get("consumers") or ()
        return bool(consumers) and all(op in _RNN_OPS for op in consumers)

    @property
    def is_matrix(self) -> bool:
        """A weight matrix (Linear, Conv, Embedding …): judged and at least 2-D with both sides > 1.

        An ONNX RNN's 2-D ``B`` holds one bias vector per direction: not a matrix."""
        if self.ndim == 2 and self.is_rnn_weight:
            return False
        rows = self.stored_rows if self.ndim else 0
        return self.is_judged and self.ndim >= 2 and rows > 1 and self.numel // rows > 1

    @property
    def is_in_out(self) -> bool:
        """True when the stored matrix is (in, out), as Hugging Face ``Conv1D`` keeps it."""
        if self.layout is not None:
            return self.layout == "in_out"
        return self.ndim == 2 and bool(_CONV1D_NAME.search(self.name))

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(outputs, inputs) of the matrix view: conv kernels as out × in·kh·kw."""
        rows = self.stored_rows
        cols = self.numel // max(rows, 1)
        return (cols, rows) if self.is_in_out else (rows, cols)

    @property
    def dtype_name(self) -> str:
        return self.dtype.name

    def describe(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "dtype": self.dtype_name,
            "file": self.file,
            "parameters": self.numel,
            "judged": self.is_judged,
            **({"layout": "in_out"} if self.is_matrix and self.is_in_out else {}),
            **{key: self.metadata[key] for key in _DESCRIBED_METADATA if self.metadata.get(key) is not None},
        }
