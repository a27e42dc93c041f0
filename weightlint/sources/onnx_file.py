"""ONNX models: the graph's initializers (the weights), one tensor at a time.

The model is loaded without its external data (``load_external_data=False``): an exported model
over 2 GB keeps its weights in separate files, and each tensor is read from there only when a rule
asks for it. Weights stored inside the ``.onnx`` file are part of the protobuf and so are in memory
while the file is scanned (the format caps such files at 2 GB).

The graph says how each weight is used, which gives its layout: ``MatMul(x, W)`` and
``Gemm(transB=0)`` store ``(in, out)``, ``Gemm(transB=1)``, ``Conv`` and ``Gather`` (embeddings)
store ``(out, in)``.

Needs the optional ``onnx`` package (``pip install weightlint[onnx]``).
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from weightlint import dtypes
from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Problem, Source, display_path, short_reason

INSTALL_HINT = "pip install weightlint[onnx]"
# ONNX TensorProto data type names → element types. Missing: strings and sub-byte packed types.
_DTYPES = {onnx_name: dtypes.dtype(name) for onnx_name, name in (
    ("FLOAT", "float32"), ("FLOAT16", "float16"), ("DOUBLE", "float64"), ("BFLOAT16", "bfloat16"),
    ("INT8", "int8"), ("UINT8", "uint8"), ("INT16", "int16"), ("INT32", "int32"), ("INT64", "int64"),
    ("BOOL", "bool"), ("COMPLEX64", "complex64"), ("COMPLEX128", "complex128"), ("UINT16", "uint16"),
    ("UINT32", "uint32"), ("UINT64", "uint64"), ("FLOAT8E4M3FN", "float8_e4m3fn"),
    ("FLOAT8E4M3FNUZ", "float8_e4m3fnuz"), ("FLOAT8E5M2", "float8_e5m2"), ("FLOAT8E5M2FNUZ", "float8_e5m2fnuz"),
    ("FLOAT8E8M0", "float8_e8m0fnu"))}
# ml_dtypes arrays (bfloat16, float8) are reinterpreted as their bits, then decoded exactly.
_BIT_VIEWS = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}


class OnnxSource(Source):
    """One ``.onnx`` file; ``files`` gains the external data files it refers to once read."""

    def __init__(self, path: str) -> None:
        super().__init__(path=display_path(path), format="onnx", files=[display_path(path)])
        self._real_path = str(path)
        self.graph_info: dict[str, Any] | None = None

    def describe(self) -> dict:
        described = super().describe()
        if self.graph_info is not None:
            described["onnx"] = self.graph_info
        return described

    def items(self) -> Iterator[Item]:
        shown = self.files[0]
        try:
            import onnx
        except ImportError:
            yield Problem("unreadable", shown, f"ONNX files need the onnx package: {INSTALL_HINT}")
            return
        try:
            model = onnx.load(self._real_path, load_external_data=False)
        except Exception as error:  # protobuf DecodeError, OSError …
            yield Problem("unreadable", shown, f"not a valid ONNX model: {short_reason(error)}")
            return
        graph = model.graph
        if not graph.node and not graph.initializer:
            yield Problem("unreadable", shown, "not a valid ONNX model: the graph is empty")
            return
        self.graph_info = {
            "ir_version": int(model.ir_version),
            "opsets": {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import},
            "producer": " ".join(part for part in (model.producer_name, model.producer_version) if part) or None,
            "graph": graph.name or None,
            "initializers": len(graph.initializer),
        }
        if len(graph.sparse_initializer):
            self.notes.append(f"{shown}: {len(graph.sparse_initializer)} sparse initializers not scanned")
        usage = _usage(graph)
        folder = os.path.dirname(os.path.abspath(self._real_path))
        for initializer in graph.initializer:
            yield _item(initializer, shown, folder, usage.get(initializer.name, {}), self.files)


def _item(initializer: Any, shown: str, folder: str, usage: dict[str, Any], files: list[str]) -> Item:
    from onnx import TensorProto
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    type_name = TensorProto.DataType.Name(initializer.data_type)
    dtype = _DTYPES.get(type_name)
    shape = tuple(int(d) for d in initializer.dims)
    if dtype is None:
        return Problem("unsupported-tensor", shown, f"ONNX {type_name} initializers are not checked",
                       tensor=initializer.name, detail={"onnx_type": type_name, "shape": list(shape)})
    metadata: dict[str, Any] = {"onnx_type": type_name, **usage.get("metadata", {})}
    if uses_external_data(initializer):
        info = ExternalDataInfo(initializer)
        data_path = os.path.join(folder, info.location)
        data_shown = display_path(data_path)
        if data_shown not in files:
            files.append(data_shown)
        metadata["external_data"] = data_shown
        problem = _external_problem(data_path, info, shape, dtype)
        if problem:
            return Problem("unreadable", data_shown, problem, tensor=initializer.name)
    return TensorRecord(name=initializer.name, shape=shape, dtype=dtype, file=shown,
                        load=lambda initializer=initializer: _read(initializer, folder, dtype),
                        format="onnx", layout=usage.get("layout"), metadata=metadata)


def _external_problem(data_path: str, info: Any, shape: tuple[int, ...], dtype: dtypes.DType) -> str | None:
    if not os.path.isfile(data_path):
        return f"external data file {info.location} does not exist"
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    length = info.length if info.length else needed
    end = (info.offset or 0) + length
    size = os.path.getsize(data_path)
    if end > size:
        return f"external data file {info.location} is truncated: {size} bytes, the tensor ends at byte {end}"
    return None


def _read(initializer: Any, folder: str, dtype: dtypes.DType) -> np.ndarray:
    from onnx import TensorProto, numpy_helper
    from onnx.external_data_helper import uses_external_data

    if uses_external_data(initializer):
        # to_array loads external bytes *into* the proto it is given: give it a copy, so that the
        # data is freed with the returned tensor instead of staying attached to the graph.
        copy = TensorProto()
        copy.CopyFrom(initializer)
        array = numpy_helper.to_array(copy, base_dir=folder)
    else:
        array = numpy_helper.to_array(initializer)
    array = np.ascontiguousarray(array)
    if dtype.name == "bfloat16" or dtype.name.startswith("float8"):
        # ml_dtypes arrays: decode the stored bits exactly, to float32.
        bits = array.view(_BIT_VIEWS[array.dtype.itemsize]).reshape(-1).view(np.uint8)
        return dtypes.decode(bits.copy(), dtype, tuple(array.shape))
    return array if array.flags.owndata else array.copy()


def _usage(graph: Any) -> dict[str, dict[str, Any]]:
    """Initializer name → its layout and the ops that read it, from the graph's nodes."""
    from onnx import helper

    found: dict[str, dict[str, Any]] = {}

    def mark(name: str, op: str, layout: str | None) -> None:
        entry = found.setdefault(name, {"metadata": {"onnx_ops": []}})
        if op not in entry["metadata"]["onnx_ops"]:
            entry["metadata"]["onnx_ops"].append(op)
        if layout and "layout" not in entry:
            entry["layout"] = layout

    for node in graph.node:
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
        inputs = list(node.input)
        for position, name in enumerate(inputs):
            if not name:
                continue
            mark(name, node.op_type, _layout(node.op_type, position, attributes))
    for entry in found.values():
        entry["metadata"]["module_type"] = entry["metadata"]["onnx_ops"][0]
    return found


def _layout(op: str, position: int, attributes: dict[str, Any]) -> str | None:
    if op == "MatMul":  # y = A @ B: a weight B is (in, out); a weight A is (out, in)
        return {0: "out_in", 1: "in_out"}.get(position)
    if op == "Gemm":  # y = op(A) @ op(B) + C
        if position == 1:
            return "out_in" if attributes.get("transB", 0) else "in_out"
        if position == 0:
            return "in_out" if attributes.get("transA", 0) else "out_in"
        return None
    if op == "Conv" and position == 1:
        return "out_in"  # (out, in/groups, k…)
    if op == "ConvTranspose" and position == 1:
        return "in_out"  # (in, out/groups, k…)
    if op == "Gather" and position == 0:
        return "out_in"  # an embedding table: one row per token
    return None
