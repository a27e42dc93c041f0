"""ONNX models: the graph's initializers (the weights), one tensor at a time.

The model is loaded without its external data (``load_external_data=False``): an exported model
over 2 GB keeps its weights in separate files, and each tensor is read from there only when a rule
asks for it. Weights stored inside the ``.onnx`` file are part of the protobuf and so are in memory
while the file is scanned (the format caps such files at 2 GB).

Exporters also put weights in the initializers of ``If``/``Loop``/``Scan`` subgraphs and in
``Constant`` nodes; both are read. Not every initializer is a weight: a graph also stores the
``-inf`` of ``Max(x, -inf)``, an RNN's zero initial state, shapes and mask fills. Each tensor is
classified by how the graph reads it (its *graph role*), and only weights are judged.

The graph also says how each weight is used, which gives its layout: ``MatMul(x, W)`` and
``Gemm(transB=0)`` store ``(in, out)``, ``Gemm(transB=1)``, ``Conv`` and ``Gather`` (embeddings)
store ``(out, in)``.

Needs the optional ``onnx`` package (``pip install weightlint[onnx]``).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from functools import partial
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
_FLOAT_TYPES = {"FLOAT", "FLOAT16", "DOUBLE", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
                "FLOAT8E5M2FNUZ", "FLOAT8E8M0"}
# Protobuf allows 100 levels of messages; real models nest control flow a few levels deep.
MAX_SUBGRAPH_DEPTH = 16

# Graph roles. Input positions that hold trained parameters: any tensor reaching them is a weight,
# whatever its shape or values (MatMul and Gemm either operand, as exporters may swap them).
_WEIGHT_INPUTS: dict[str, frozenset[int]] = {op: frozenset(positions) for op, positions in {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "ConvInteger": (1, 3), "QLinearConv": (3, 4, 5, 8),
    "MatMul": (0, 1), "Gemm": (0, 1, 2), "MatMulInteger": (0, 1, 2, 3), "QLinearMatMul": (0, 1, 2, 3, 4, 5),
    "LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3), "DynamicQuantizeLSTM": (1, 2, 3, 7, 8, 9, 10, 11),
    "BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2),
    "GroupNormalization": (1, 2), "RMSNormalization": (1,), "SimplifiedLayerNormalization": (1,),
    "SkipLayerNormalization": (2, 3, 4), "SkipSimplifiedLayerNormalization": (2, 3),
    "EmbedLayerNormalization": (2, 3, 4, 5, 6), "FusedConv": (1, 2), "FusedGemm": (0, 1, 2),
    "FusedMatMul": (0, 1), "DynamicQuantizeMatMul": (1, 2, 3, 4), "PRelu": (1,),
}.items()}
_EMBEDDING = frozenset((0,))  # Gather's table, a weight when it has rows (checked by the tensor's shape)
# An RNN's initial hidden and cell states: zeros by design, not trained.
_STATE_INPUTS = {"LSTM": frozenset((5, 6)), "GRU": frozenset((5,)), "RNN": frozenset((5,)),
                 "DynamicQuantizeLSTM": frozenset((5, 6))}
# Ops that hand on the values of these inputs (cast, dequantized, re-viewed, sliced or joined): the
# role is decided where their output goes. Their other inputs (shapes, axes) are constants.
_PASSTHROUGH: dict[str, frozenset[int]] = {op: frozenset(positions) for op, positions in {
    "Cast": (0,), "CastLike": (0,), "Identity": (0,), "DequantizeLinear": (0, 1, 2), "Transpose": (0,),
    "Reshape": (0,), "Flatten": (0,), "Unsqueeze": (0,), "Squeeze": (0,), "Slice": (0,), "Split": (0,),
}.items()}
# Elementwise arithmetic: a bias, a per-channel scale, an unfused norm's gamma and beta, or a
# positional embedding added to what a weight op computed are weights; an attention mask is not.
_ELEMENTWISE = frozenset(("Add", "Sub", "Mul", "Div"))
# Ops whose inputs are never trained parameters: comparisons, clamps, selections, shapes, indices.
_CONSTANT_CONSUMERS = frozenset((
    "Max", "Min", "Clip", "Where", "Pow", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
    "And", "Or", "Xor", "Not", "Mod", "BitShift", "Sign", "IsNaN", "IsInf", "Expand", "Range", "Pad",
    "Tile", "Resize", "Upsample", "ConstantOfShape", "TopK", "Trilu", "CumSum", "OneHot", "Shape", "Size",
    "NonZero", "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND",
    "ArgMax", "ArgMin", "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceProd", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Dropout", "NonMaxSuppression",
    "QuantizeLinear", "DynamicQuantizeLinear",
))


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
        flow = _Dataflow(graph)
        usages = [flow.usage(tensor) for tensor in flow.tensors]
        # A Constant node's value is read only when the graph uses it as a weight: the others are
        # the graph's own shapes, indices and scalars, not worth a record each.
        kept = [(tensor, usage) for tensor, usage in zip(flow.tensors, usages)
                if not tensor.constant_node or usage["metadata"]["graph_role"] == "weight"]
        self.graph_info = {
            "ir_version": int(model.ir_version),
            "opsets": {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import},
            "producer": " ".join(text(part) for part in (model.producer_name, model.producer_version) if part) or None,
            "graph": text(graph.name) or None,
            "initializers": sum(not tensor.constant_node for tensor in flow.tensors),
            "constant_weights": sum(tensor.constant_node for tensor, _ in kept),
            "subgraphs": flow.subgraphs,
        }
        if flow.sparse:
            self.notes.append(f"{shown}: {flow.sparse} sparse initializers not scanned")
        if flow.too_deep:
            self.notes.append(f"{shown}: {flow.too_deep} subgraphs nested more than {MAX_SUBGRAPH_DEPTH} "
                              "levels deep not read")
        folder = os.path.dirname(os.path.abspath(self._real_path))
        quantized = _quantized_weights(flow)
        for name, (tensor, usage) in zip(_unique_names([tensor for tensor, _ in kept]), kept):
            if tensor.key in quantized:
                yield _dequantized_item(tensor, name, shown, folder, usage, quantized[tensor.key], self.files)
            else:
                yield _item(tensor.proto, name, shown, folder, usage, self.files)


@dataclass
class _Node:
    op: str
    inputs: list[int | None]  # value keys; None for an omitted optional input
    outputs: list[int]
    proto: Any = None  # the NodeProto; None for the link from an If branch's output to the If's


@dataclass
class _Tensor:
    """An initializer, or the value of a Constant node, and where it sits in the graph."""

    proto: Any  # a TensorProto
    name: str
    key: int
    path: str  # the control-flow nodes and attributes above it; "" in the main graph
    constant_node: bool


class _Dataflow:
    """Every value of the model, subgraphs included: the tensors, the nodes and who reads what.

    Names resolve through scopes as ONNX defines them: a subgraph sees the values of the graphs
    around it, and sibling branches may define the same name.
    """

    def __init__(self, graph: Any) -> None:
        self.tensors: list[_Tensor] = []
        self.nodes: list[_Node] = []
        self.uses: dict[int, list[tuple[_Node, int]]] = defaultdict(list)
        self.subgraphs = self.too_deep = self.sparse = 0
        self._keys = 0
        self._walk(graph, {}, "", 0)
        self.constant, self.weight_fed = self._propagate()

    def _key(self) -> int:
        self._keys += 1
        return self._keys

    def _walk(self, graph: Any, outer: dict[str, int], path: str, depth: int) -> dict[str, int]:
        from onnx import AttributeProto

        scope = dict(outer)
        for value in graph.input:
            scope[value.name] = self._key()
        for initializer in graph.initializer:  # after the inputs: IR < 4 lists initializers as inputs too
            scope[initializer.name] = self._key()
            self.tensors.append(_Tensor(initializer, text(initializer.name), scope[initializer.name], path, False))
        self.sparse += len(graph.sparse_initializer)
        made = []
        for node in graph.node:  # every output first: a graph need not be sorted
            outputs = [self._key() for _ in node.output]
            scope.update((name, key) for name, key in zip(node.output, outputs) if name)
            made.append(outputs)
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = next((attribute.t for attribute in node.attribute
                              if attribute.name == "value" and attribute.type == AttributeProto.TENSOR), None)
                if value is not None:
                    self.tensors.append(_Tensor(value, text(value.name or node.output[0]), outputs[0], path, True))
        for index, (node, outputs) in enumerate(zip(graph.node, made)):
            inputs = [(scope.get(name) or scope.setdefault(name, self._key())) if name else None for name in node.input]
            current = _Node(node.op_type, inputs, outputs, node)
            self.nodes.append(current)
            for position, key in enumerate(inputs):
                if key is not None:
                    self.uses[key].append((current, position))
            branches = []
            for attribute in node.attribute:
                for subgraph in ([attribute.g] if attribute.type == AttributeProto.GRAPH else attribute.graphs):
                    if depth >= MAX_SUBGRAPH_DEPTH:
                        self.too_deep += 1
                        continue
                    self.subgraphs += 1
                    where = f"{node.name or f'{node.op_type}_{index}'}.{attribute.name}"
                    inner = self._walk(subgraph, scope, f"{path}/{where}" if path else where, depth + 1)
                    branches.append([inner.get(value.name) for value in subgraph.output])
            if node.op_type == "If":  # each output is one of the branches' outputs
                for position, key in enumerate(outputs):
                    self._link([branch[position] for branch in branches if position < len(branch)], key)
        return scope

    def _link(self, sources: list[int | None], target: int) -> None:
        link = _Node("If", sources, [target])
        self.nodes.append(link)
        for position, key in enumerate(sources):
            if key is not None:
                self.uses[key].append((link, position))

    def _propagate(self) -> tuple[set[int], set[int]]:
        """Values computed from tensors alone, and values downstream of a weight op (through ops
        that hand values on), to a fixed point (one pass, two when the graph is unsorted)."""
        constant = {tensor.key for tensor in self.tensors}
        weight_fed: set[int] = set()
        changed = True
        while changed:
            changed = False
            for node in self.nodes:
                present = [key for key in node.inputs if key is not None]
                if node.op == "Constant" or (present and not _has_subgraph(node)
                                             and all(key in constant for key in present)):
                    changed |= _add(constant, node.outputs)
                weights = _WEIGHT_INPUTS.get(node.op, _EMBEDDING if node.op == "Gather" else frozenset())
                if any(key in constant if position in weights else key in weight_fed and _hands_on(node, position)
                       for position, key in enumerate(node.inputs)):
                    changed |= _add(weight_fed, node.outputs)
        return constant, weight_fed

    def usage(self, tensor: _Tensor) -> dict[str, Any]:
        """The tensor's graph role, the ops that finally consume it, and its layout.

        Values are followed through the ops that hand them on and through computations on
        constants alone (a weight-normalized kernel), to the ops that use them. One weight use
        makes a weight. A tensor that nothing reads is a constant (an exporter's leftover), unless
        the graph has no nodes at all: a file of weights alone.
        """

        shape = tuple(int(d) for d in tensor.proto.dims)
        floating = type_name(tensor.proto.data_type) in _FLOAT_TYPES
        roles: set[str] = set()
        consumers: list[str] = []
        layout = None
        queue = deque([(tensor.key, False)])
        seen = {tensor.key}
        while queue:
            key, flipped = queue.popleft()
            for node, position in self.uses[key]:
                role = self._role(node, position, shape, floating)
                if role is None:
                    turned = _turned(node, flipped)
                    for output in node.outputs:
                        if output not in seen:
                            seen.add(output)
                            queue.append((output, turned))
                    continue
                roles.add(role)
                if node.op not in consumers:
                    consumers.append(node.op)
                if role == "weight" and layout is None and flipped is not None:
                    layout = _flipped_layout(_layout(node.op, position, _attributes(node.proto)), flipped)
        unread = "constant" if self.nodes else "weight"
        role = next((name for name in ("weight", "state", "constant") if name in roles), unread)
        direct = list(dict.fromkeys(node.op for node, _ in self.uses[tensor.key]))
        metadata: dict[str, Any] = {"onnx_ops": direct, "consumers": consumers, "graph_role": role}
        if consumers:
            metadata["module_type"] = consumers[0]
        if role != "weight":
            metadata["buffer"] = True
        return {"metadata": metadata, "layout": layout}

    def _role(self, node: _Node, position: int, shape: tuple[int, ...], floating: bool) -> str | None:
        """How ``node`` uses the value at ``position``; None when it hands the value on."""
        if node.op == "DequantizeLinear" and position and node.inputs[0] not in self.constant:
            return "constant"  # the scale or zero point of an activation
        if _hands_on(node, position):
            return None
        embedding = node.op == "Gather" and position in _EMBEDDING and len(shape) >= 2
        if embedding or position in _WEIGHT_INPUTS.get(node.op, ()):
            return "weight"
        if position in _STATE_INPUTS.get(node.op, ()):
            return "state"
        if node.op in _PASSTHROUGH or not floating or math.prod(shape) <= 1:
            return "constant"  # a shape, axes, an index, a scalar
        others = [key for index, key in enumerate(node.inputs) if index != position and key is not None]
        if all(key in self.constant for key in others) and not _has_subgraph(node):
            return None  # computed from constants alone: decided where the result goes
        if node.op in _ELEMENTWISE:
            per_channel = sum(size > 1 for size in shape) <= 1
            return "weight" if per_channel or any(key in self.weight_fed for key in others) else "constant"
        return "constant" if node.op in _CONSTANT_CONSUMERS else "weight"


def _add(into: set[int], keys: list[int]) -> bool:
    """Add ``keys``; whether that changed anything."""
    size = len(into)
    into.update(keys)
    return len(into) != size


def _hands_on(node: _Node, position: int) -> bool:
    return node.proto is None or node.op == "Concat" or position in _PASSTHROUGH.get(node.op, ())


def _has_subgraph(node: _Node) -> bool:
    return node.proto is not None and any(attribute.HasField("g") or attribute.graphs
                                          for attribute in node.proto.attribute)


def _attributes(proto: Any) -> dict[str, Any]:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in proto.attribute}


def _turned(node: _Node, flipped: bool | None) -> bool | None:
    """Whether a matrix handed on through ``node`` is transposed (None: no longer known)."""
    if node.op != "Transpose" or flipped is None:
        return flipped
    perm = _attributes(node.proto).get("perm")
    return not flipped if not perm or list(perm) == [1, 0] else None


def _flipped_layout(layout: str | None, flipped: bool) -> str | None:
    if layout is None or not flipped:
        return layout
    return "in_out" if layout == "out_in" else "out_in"


def _unique_names(tensors: list[_Tensor]) -> list[str]:
    """Tensor names, prefixed with their subgraph's path where a name repeats (If branches)."""
    repeated = Counter(tensor.name for tensor in tensors)
    names = [f"{tensor.path}/{tensor.name}" if repeated[tensor.name] > 1 and tensor.path else tensor.name
             for tensor in tensors]
    taken: Counter[str] = Counter()
    unique = []
    for name in names:
        taken[name] += 1
        unique.append(name if taken[name] == 1 else f"{name}#{taken[name]}")
    return unique


def text(value: str | bytes) -> str:
    """A protobuf string field; one holding bytes that are not UTF-8 comes back as bytes."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def type_name(data_type: int) -> str:
    """An ONNX element type's name; a number no ONNX version defines is named as such."""
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(data_type)
    except ValueError:
        return f"unknown type {data_type}"


def _item(initializer: Any, name: str, shown: str, folder: str, usage: dict[str, Any], files: list[str]) -> Item:
    kind = type_name(initializer.data_type)
    dtype = _DTYPES.get(kind)
    shape = tuple(int(d) for d in initializer.dims)
    if kind.startswith("unknown"):
        return Problem("unreadable", shown, f"initializer of {kind}, which no ONNX version defines", tensor=name)
    if dtype is None:
        return Problem("unsupported-tensor", shown, f"ONNX {kind} initializers are not checked",
                       tensor=name, detail={"onnx_type": kind, "shape": list(shape)})
    metadata: dict[str, Any] = {"onnx_type": kind, **usage.get("metadata", {})}
    problem = _external_data(initializer, name, shown, folder, shape, dtype, files, metadata)
    if problem is not None:
        return problem
    return TensorRecord(name=name, shape=shape, dtype=dtype, file=shown,
                        load=lambda initializer=initializer: _read(initializer, folder, dtype),
                        format="onnx", layout=usage.get("layout"), metadata=metadata)


def _external_data(initializer: Any, name: str, shown: str, folder: str, shape: tuple[int, ...],
                   dtype: dtypes.DType, files: list[str], metadata: dict[str, Any]) -> Problem | None:
    """Where an initializer's external data lies (noted in ``files`` and ``metadata``), or why it
    cannot be read: a location outside the model's folder, a bad offset or length, a short file."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    if not uses_external_data(initializer):
        return None
    try:
        info = ExternalDataInfo(initializer)
    except (ValueError, TypeError) as error:
        return Problem("unreadable", shown, f"bad external data entry: {short_reason(error)}", tensor=name)
    location = str(info.location or "")
    parts = location.replace("\\", "/").split("/")
    if not location or os.path.isabs(location) or ".." in parts or ":" in parts[0]:
        return Problem("unreadable", shown, f"external data location {location!r} is outside the model's folder: "
                       "refused, not opened", tensor=name)
    data_path = os.path.join(folder, location)
    data_shown = display_path(data_path)
    if data_shown not in files:
        files.append(data_shown)
    metadata["external_data"] = data_shown
    needed = math.prod(shape) * dtype.itemsize
    offset, length = int(info.offset or 0), int(info.length or needed)
    if offset < 0 or length != needed:
        return Problem("unreadable", data_shown, f"external data offset {offset} and length {length} do not hold "
                       f"the tensor's {needed} bytes", tensor=name)
    if not os.path.isfile(data_path):
        return Problem("unreadable", data_shown, f"external data file {location} does not exist", tensor=name)
    size = os.path.getsize(data_path)
    if offset + length > size:
        return Problem("unreadable", data_shown, f"external data file {location} is truncated: {size} bytes, "
                       f"the tensor ends at byte {offset + length}", tensor=name)
    return None


# -- quantized weights: int8/uint8 initializers with the scale and zero point the graph applies ---------

# op → (weight input, scale input, zero point input, quantization axis of the weight or None for the
# node's ``axis`` attribute): QLinear ops quantize weights per output channel, DynamicQuantizeLSTM
# per direction (and gate unit, when its scales say so).
_QUANTIZED_INPUTS = {"DequantizeLinear": ((0, 1, 2, None),), "QLinearConv": ((3, 4, 5, 0),),
                     "QLinearMatMul": ((3, 4, 5, -1),), "DynamicQuantizeLSTM": ((1, 8, 9, 0), (2, 10, 11, 0))}
# Dynamic quantization (onnxruntime's quantize_dynamic): op → (weight input, zero point input). The
# weight's scale is not an input: the op's integer result is cast and multiplied by
# ``activation scale × weight scale``, where the weight scale is a constant.
_DYNAMIC_QUANTIZED = {"MatMulInteger": (1, 3), "ConvInteger": (1, 3)}
# Ops between an integer op and the Mul that rescales its result (the bias add, the cast).
_RESCALE_PATH = frozenset(("Add", "Cast", "Reshape"))


@dataclass
class _Quantization:
    op: str
    scale: Any = None  # TensorProto
    zero_point: Any = None  # TensorProto or None
    axis: int = 1
    reason: str | None = None  # why it cannot be dequantized here
    dynamic: bool = False


def _quantized_weights(flow: "_Dataflow") -> dict[int, _Quantization]:
    """Integer tensors that an op dequantizes with constant scales, by value key."""
    by_key = {tensor.key: tensor for tensor in flow.tensors}
    found: dict[int, _Quantization] = {}

    def integer(key: int | None) -> bool:
        return key in by_key and type_name(by_key[key].proto.data_type) in ("INT8", "UINT8")

    for node in flow.nodes:
        if node.proto is None:
            continue
        keys = node.inputs + [None] * 12
        if node.op in _DYNAMIC_QUANTIZED:
            weight, zero_point = _DYNAMIC_QUANTIZED[node.op]
            if integer(keys[weight]):
                scale = _dynamic_scale(flow, node, by_key)
                found[keys[weight]] = (
                    _Quantization(node.op, by_key[scale].proto, by_key[keys[zero_point]].proto
                                  if keys[zero_point] in by_key else None, 0, dynamic=True) if scale is not None
                    else _Quantization(node.op, reason="dynamically quantized with a scale weightlint cannot trace; "
                                                       "values not checked"))
            continue
        for weight, scale, zero_point, axis in _QUANTIZED_INPUTS.get(node.op, ()):
            if not integer(keys[weight]):
                continue
            attributes = _attributes(node.proto)
            if keys[scale] not in by_key:
                found[keys[weight]] = _Quantization(node.op, reason="its scale is computed at run time; values not checked")
            elif attributes.get("block_size"):
                found[keys[weight]] = _Quantization(node.op, reason="blocked quantization; values not checked")
            else:
                found[keys[weight]] = _Quantization(
                    node.op, by_key[keys[scale]].proto, by_key[keys[zero_point]].proto if keys[zero_point] in by_key else None,
                    attributes.get("axis", 1) if axis is None else axis)
    return found


def _dynamic_scale(flow: "_Dataflow", node: "_Node", by_key: dict[int, "_Tensor"]) -> int | None:
    """The constant weight scale that rescales a MatMulInteger/ConvInteger result: followed through
    the bias add and cast to the Mul by ``activation scale × weight scale``."""
    producers = {key: other for other in flow.nodes for key in other.outputs}
    value = node.outputs[0]
    for _ in range(4):
        users = flow.uses.get(value, [])
        if len(users) != 1:
            return None
        user, position = users[0]
        if user.op == "Mul":
            other = next((key for index, key in enumerate(user.inputs) if index != position), None)
            if other in by_key:
                return other
            factor = producers.get(other)
            if factor is not None and factor.op == "Mul":
                constants = [key for key in factor.inputs if key in by_key]
                return constants[0] if len(constants) == 1 else None
            return None
        if user.op not in _RESCALE_PATH:
            return None
        value = user.outputs[0]
    return None


def _dequantized_item(tensor: "_Tensor", name: str, shown: str, folder: str, usage: dict[str, Any],
                      quantization: _Quantization, files: list[str]) -> Item:
    """An int8/uint8 weight as the float values the graph computes with: (q − zero point) × scale."""
    shape = tuple(int(d) for d in tensor.proto.dims)
    kind = type_name(tensor.proto.data_type)
    if quantization.reason:
        return Problem("unsupported-tensor", shown, f"{kind} weight of {quantization.op}, {quantization.reason}",
                       tensor=name, detail={"onnx_type": kind, "shape": list(shape)})
    scale_shape = tuple(int(d) for d in quantization.scale.dims)
    axis = quantization.axis % len(shape) if shape else 0
    if _broadcast_shape(shape, scale_shape, axis) is None:
        return Problem("unreadable", shown, f"{quantization.op} scale of shape {list(scale_shape)} does not fit "
                       f"the weight's shape {list(shape)}", tensor=name)
    scale_size = math.prod(scale_shape)
    metadata: dict[str, Any] = {"onnx_type": kind, **usage.get("metadata", {})}
    problem = _external_data(tensor.proto, name, shown, folder, shape, _DTYPES[kind], files, metadata)
    if problem is not None:
        return problem
    granularity = "per-tensor" if scale_size == 1 else f"per-channel (axis {axis})"
    zero = _read(quantization.zero_point, folder, None) if quantization.zero_point is not None else None
    symmetric = zero is None or not np.any(zero) or (kind == "UINT8" and np.all(zero == 128))
    scheme = f"{kind.lower()} {granularity} {'symmetric' if symmetric else 'asymmetric'}"
    metadata["onnx_quantization"] = {"scheme": f"{scheme}, dynamic" if quantization.dynamic else scheme,
                                     "op": quantization.op}
    return TensorRecord(name=name, shape=shape, dtype=dtypes.float32, file=shown,
                        load=partial(_dequantize, tensor.proto, quantization, axis, folder),
                        format="onnx", layout=usage.get("layout"), metadata=metadata)


def _broadcast_shape(shape: tuple[int, ...], parameter: tuple[int, ...], axis: int) -> tuple[int, ...] | None:
    """How a scale or zero point of ``parameter`` shape lines up with a weight of ``shape``: one
    value, one per index of ``axis``, or the weight's shape with some axes dropped (per direction
    and gate unit for DynamicQuantizeLSTM). None when it fits none of these."""
    size = math.prod(parameter)
    if size == 1:
        return (1,) * len(shape)
    if shape and size == shape[axis] and len([d for d in parameter if d > 1]) <= 1:
        return tuple(size if index == axis else 1 for index in range(len(shape)))
    if len(parameter) < len(shape):
        for dropped in range(len(shape)):
            kept = shape[:dropped] + shape[dropped + 1:]
            if kept == parameter:
                return shape[:dropped] + (1,) + shape[dropped + 1:]
    return None


def _dequantize(proto: Any, quantization: _Quantization, axis: int, folder: str) -> np.ndarray:
    values = _read(proto, folder, None).astype(np.float32)
    scale = _read(quantization.scale, folder, None).astype(np.float32)
    zero = (_read(quantization.zero_point, folder, None).astype(np.float32)
            if quantization.zero_point is not None else np.zeros(1, np.float32))
    zero_shape = _broadcast_shape(values.shape, zero.shape, axis) or (1,) * values.ndim
    return ((values - zero.reshape(zero_shape if zero.size > 1 else (1,) * values.ndim))
            * scale.reshape(_broadcast_shape(values.shape, scale.shape, axis))).astype(np.float32)


def _read(initializer: Any, folder: str, dtype: dtypes.DType | None) -> np.ndarray:
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
    if dtype is not None and (dtype.name == "bfloat16" or dtype.name.startswith("float8")):
        # ml_dtypes arrays: decode the stored bits exactly, to float32.
        bits = array.view(_BIT_VIEWS[array.dtype.itemsize]).reshape(-1).view(np.uint8)
        return dtypes.decode(bits.copy(), dtype, tuple(array.shape))
    return array if array.flags.owndata else array.copy()


def _layout(op: str, position: int, attributes: dict[str, Any]) -> str | None:
    if op in ("MatMul", "MatMulInteger"):  # y = A @ B: a weight B is (in, out); a weight A is (out, in)
        return {0: "out_in", 1: "in_out"}.get(position)
    if op == "QLinearMatMul":
        return {0: "out_in", 3: "in_out"}.get(position)
    if op == "DynamicQuantizeLSTM" and position in (1, 2):
        return "in_out"  # W and R are [directions, inputs, gates·hidden], transposed from LSTM's
    if op == "Gemm":  # y = op(A) @ op(B) + C
        if position == 1:
            return "out_in" if attributes.get("transB", 0) else "in_out"
        if position == 0:
            return "in_out" if attributes.get("transA", 0) else "out_in"
        return None
    if op in ("Conv", "ConvInteger") and position == 1:
        return "out_in"  # (out, in/groups, k…)
    if op == "QLinearConv" and position == 3:
        return "out_in"
    if op == "ConvTranspose" and position == 1:
        return "in_out"  # (in, out/groups, k…)
    if op == "Gather" and position == 0:
        return "out_in"  # an embedding table: one row per token
    return None
