"""ONNX initializers, inline and in external data files, read one tensor at a time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import weightlint
from weightlint import ExitCode, Severity

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SELECT = ["WL001", "WL007", "WL100", "WL501"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def check(*targets, **settings):
    settings.setdefault("select", SELECT)
    settings.setdefault("device", "cpu")
    return weightlint.check(*targets, **settings)


def weights(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) + 0.5).astype(np.float32)


def linear_model(matmul_weight: np.ndarray, gemm_weight: np.ndarray, extra_initializers=()) -> onnx.ModelProto:
    """x (1, 4) → MatMul W1 (4, 3), stored (in, out) → Gemm W2 (2, 3) with transB=1, stored (out, in)."""
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], transB=1),
    ]
    initializers = [
        numpy_helper.from_array(matmul_weight, "W1"),
        numpy_helper.from_array(gemm_weight, "W2"),
        numpy_helper.from_array(weights(2, seed=3), "b2"),
        *extra_initializers,
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializers)
    model = helper.make_model(graph, producer_name="weightlint-tests", opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_initializers_with_layout_from_the_graph():
    w1 = weights(4, 3)
    w1[2, 1] = np.nan
    w2 = weights(2, 3, seed=1)
    w2[:, 0] = 0  # input column 0 of the (out, in) Gemm weight
    onnx.save(linear_model(w1, w2), "model.onnx")
    report = check("model.onnx")

    assert [record.name for record in report.records] == ["W1", "W2", "b2"]
    assert report.model()["format"] == "onnx"
    records = {record.name: record for record in report.records}
    assert records["W1"].layout == "in_out" and records["W2"].layout == "out_in"
    assert records["W1"].metadata["onnx_ops"] == ["MatMul"]
    np.testing.assert_array_equal(records["W2"].load(), w2)

    nan = next(f for f in report.findings if f.code == "WL100")
    assert (nan.tensor, nan.file, nan.location) == ("W1", "model.onnx", {"index": [2, 1]})
    dead = next(f for f in report.findings if f.code == "WL501")
    assert (dead.tensor, dead.location) == ("W2", {"rows": [], "columns": [0]})
    assert len(report.findings) == 2
    (source,) = report.model()["sources"]
    assert source["onnx"]["producer"] == "weightlint-tests"
    assert source["onnx"]["initializers"] == 3


def test_matmul_weight_dead_output_is_a_column_of_the_stored_matrix():
    w1 = weights(4, 3)
    w1[:, 2] = 0  # stored (in, out): column 2 is output unit 2
    onnx.save(linear_model(w1, weights(2, 3, seed=1)), "model.onnx")
    (dead,) = check("model.onnx").findings
    assert (dead.code, dead.tensor, dead.location) == ("WL501", "W1", {"rows": [2], "columns": []})
    assert check("model.onnx").tensors["W1"]["layout"] == "in_out"


def test_external_data_is_read_lazily_from_its_file():
    w1, w2 = weights(4, 3), weights(2, 3, seed=1)
    w2[1, 2] = np.inf
    onnx.save_model(linear_model(w1, w2), "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    assert os.path.getsize("model.onnx") < 1000  # the weights are not inside the graph file
    report = check("model.onnx")
    (source,) = report.sources
    assert source.files == ["model.onnx", "model.onnx.data"]
    records = {record.name: record for record in report.records}
    assert records["W1"].metadata["external_data"] == "model.onnx.data"
    np.testing.assert_array_equal(records["W1"].load(), w1)
    (finding,) = report.findings
    assert (finding.code, finding.tensor, finding.file, finding.location) == ("WL100", "W2", "model.onnx", {"index": [1, 2]})

    # Reading a tensor does not attach its bytes to the graph that stays in memory.
    from onnx.external_data_helper import uses_external_data

    model = onnx.load("model.onnx", load_external_data=False)
    from weightlint import dtypes
    from weightlint.sources.onnx_file import _read

    _read(model.graph.initializer[0], os.getcwd(), dtypes.float32)
    assert uses_external_data(model.graph.initializer[0]) and not model.graph.initializer[0].raw_data


def test_missing_and_truncated_external_data_are_unreadable():
    onnx.save_model(linear_model(weights(4, 3), weights(2, 3, seed=1)), "model.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    data = Path("weights.bin").read_bytes()
    Path("weights.bin").write_bytes(data[:60])  # W1 (48 bytes) fits; W2 does not
    report = check("model.onnx")
    unreadable = [(f.code, f.tensor, f.file) for f in report.findings]
    assert unreadable == [("WL001", "W2", "weights.bin"), ("WL001", "b2", "weights.bin")]
    assert "truncated" in report.findings[0].message
    assert [record.name for record in report.records] == ["W1"]

    os.remove("weights.bin")
    report = check("model.onnx")
    assert {(f.code, f.tensor) for f in report.findings} == {("WL001", "W1"), ("WL001", "W2"), ("WL001", "b2")}
    assert all("does not exist" in f.message for f in report.findings)


def test_half_precision_and_string_initializers():
    half = numpy_helper.from_array(weights(3, 3, seed=4).astype(np.float16), "half")
    bf16 = helper.make_tensor("brain", TensorProto.BFLOAT16, [2, 2], [1.0, 2.0, 3.0, 4.5])
    text = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
    onnx.save(linear_model(weights(4, 3), weights(2, 3, seed=1), [half, bf16, text]), "mixed.onnx")
    report = check("mixed.onnx")
    records = {record.name: record for record in report.records}
    assert records["half"].dtype == torch.float16 and records["half"].load().dtype == np.float16
    assert records["brain"].dtype == torch.bfloat16
    brain = records["brain"].load()  # decoded from its bits, exactly, to float32
    assert brain.dtype == np.float32
    assert brain.tolist() == [[1.0, 2.0], [3.0, 4.5]]
    (finding,) = report.findings
    assert (finding.code, finding.severity, finding.tensor) == ("WL007", Severity.INFO, "labels")
    assert report.exit_code == ExitCode.OK


def test_corrupt_onnx_is_unreadable():
    Path("broken.onnx").write_bytes(b"\x08\x07\x12\xff\xff\xff garbage that is not protobuf")
    (finding,) = check("broken.onnx").findings
    assert (finding.code, finding.file) == ("WL001", "broken.onnx")
    assert finding.message.startswith("not a valid ONNX model")


def test_without_the_onnx_package_the_file_says_how_to_install_it(monkeypatch):
    onnx.save(linear_model(weights(4, 3), weights(2, 3, seed=1)), "model.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    report = check("model.onnx")
    (finding,) = report.findings
    assert finding.code == "WL001"
    assert "pip install weightlint[onnx]" in finding.message
    assert report.records == []


# -- graph roles, subgraphs and Constant nodes -------------------------------------------------
FLT_MAX = float(np.finfo(np.float32).max)


def _model(nodes, inputs, outputs, initializers, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "roles", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _value(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def test_graph_constants_are_listed_but_not_judged():
    hidden = 2
    w = weights(4, 3)
    w[1, 2] = np.nan
    mask = np.triu(np.full((3, 3), -np.inf, dtype=np.float32), 1)
    tensors = {
        "W": w, "bias": weights(3, seed=1), "pos": weights(2, 3, seed=2),
        "floor": np.full(3, -np.inf, dtype=np.float32), "zero": np.zeros((), dtype=np.float32),
        "fill": np.array(-FLT_MAX, dtype=np.float32), "mask": mask, "shape": np.array([1, 3], dtype=np.int64),
        "lstm_W": weights(1, 4 * hidden, 3, seed=3), "lstm_R": weights(1, 4 * hidden, hidden, seed=4),
        "lstm_B": weights(1, 8 * hidden, seed=5), "h0": np.zeros((1, 1, hidden), dtype=np.float32),
        "c0": np.zeros((1, 1, hidden), dtype=np.float32), "spare": weights(5, seed=6),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Add", ["h", "bias"], ["hb"]),  # a bias after MatMul
        helper.make_node("Max", ["hb", "floor"], ["hm"]),  # Max(x, -inf)
        helper.make_node("Less", ["hm", "zero"], ["negative"]),
        helper.make_node("Where", ["negative", "fill", "hm"], ["hw"]),  # a -FLT_MAX fill
        helper.make_node("Reshape", ["hw", "shape"], ["y"]),
        helper.make_node("Transpose", ["hw"], ["column"]),
        helper.make_node("MatMul", ["column", "hw"], ["scores"]),  # activations only
        helper.make_node("Add", ["scores", "mask"], ["masked"]),  # an attention mask
        helper.make_node("MatMul", ["x2", "W"], ["h2"]),
        helper.make_node("Add", ["h2", "pos"], ["embedded"]),  # added to what a weight computed
        helper.make_node("LSTM", ["sequence", "lstm_W", "lstm_R", "lstm_B", "", "h0", "c0"], ["Y", "Y_h"],
                         hidden_size=hidden),
    ]
    inputs = [_value("x", [1, 4]), _value("x2", [2, 4]), _value("sequence", [2, 1, 3])]
    outputs = [_value("y", [1, 3]), _value("masked", [3, 3]), _value("embedded", [2, 3]),
               _value("Y_h", [1, 1, hidden])]
    initializers = [numpy_helper.from_array(value, name) for name, value in tensors.items()]
    onnx.save(_model(nodes, inputs, outputs, initializers), "roles.onnx")
    report = check("roles.onnx")

    assert [record.name for record in report.records] == list(tensors)
    roles = {name: (entry["graph_role"], entry["consumers"], entry["judged"])
             for name, entry in report.tensors.items()}
    assert roles == {
        "W": ("weight", ["MatMul"], True), "bias": ("weight", ["Add"], True), "pos": ("weight", ["Add"], True),
        "floor": ("constant", ["Max"], False), "zero": ("constant", ["Less"], False),
        "fill": ("constant", ["Where"], False), "mask": ("constant", ["Add"], False),
        "shape": ("constant", ["Reshape"], False), "lstm_W": ("weight", ["LSTM"], True),
        "lstm_R": ("weight", ["LSTM"], True), "lstm_B": ("weight", ["LSTM"], True),
        "h0": ("state", ["LSTM"], False), "c0": ("state", ["LSTM"], False),
        "spare": ("constant", [], False),  # read by nothing
    }
    assert [(f.code, f.tensor) for f in report.findings if f.code == "WL100"] == [("WL100", "W")]
    nan = next(f for f in report.findings if f.code == "WL100")
    assert nan.location == {"index": [1, 2]}


def test_initializers_and_constant_nodes_of_if_branches():
    shared, kernel = weights(4, 3), weights(3, 2, seed=3)
    then_w, else_w = weights(3, 2, seed=1), weights(3, 2, seed=2)
    else_w[2, 1] = np.nan
    then_branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "shared"], ["t1"]),  # a weight of the outer graph
         helper.make_node("MatMul", ["t1", "w"], ["t2"]),
         helper.make_node("Add", ["t2", "only_then"], ["then_out"])],
        "then", [], [_value("then_out", [1, 2])],
        [numpy_helper.from_array(then_w, "w"), numpy_helper.from_array(weights(2, seed=4), "only_then")])
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["kernel_out"], value=numpy_helper.from_array(kernel, "kernel")),
         helper.make_node("Constant", [], ["half"], value=numpy_helper.from_array(np.array(0.5, dtype=np.float32))),
         helper.make_node("MatMul", ["x", "shared"], ["e1"]),
         helper.make_node("MatMul", ["e1", "w"], ["e2"]),
         helper.make_node("MatMul", ["e1", "kernel_out"], ["e3"]),
         helper.make_node("Add", ["e2", "e3"], ["e4"]),
         helper.make_node("Mul", ["e4", "half"], ["else_out"])],
        "else", [], [_value("else_out", [1, 2])], [numpy_helper.from_array(else_w, "w")])
    nodes = [helper.make_node("If", ["condition"], ["y"], name="choose", then_branch=then_branch,
                              else_branch=else_branch)]
    inputs = [_value("condition", [], TensorProto.BOOL), _value("x", [1, 4])]
    onnx.save(_model(nodes, inputs, [_value("y", [1, 2])], [numpy_helper.from_array(shared, "shared")]),
              "branches.onnx")
    report = check("branches.onnx")

    records = {record.name: record for record in report.records}
    # Branches in the node's attribute order (onnx.helper sorts attributes by name).
    assert list(records) == ["shared", "choose.else_branch/w", "kernel", "choose.then_branch/w", "only_then"]
    assert all(record.metadata["graph_role"] == "weight" and record.is_judged for record in records.values())
    assert records["shared"].metadata["consumers"] == ["MatMul"] and records["shared"].layout == "in_out"
    np.testing.assert_array_equal(records["choose.then_branch/w"].load(), then_w)
    np.testing.assert_array_equal(records["kernel"].load(), kernel)
    (nan,) = report.findings
    assert (nan.code, nan.tensor, nan.location) == ("WL100", "choose.else_branch/w", {"index": [2, 1]})
    (source,) = report.model()["sources"]
    counts = (source["onnx"]["initializers"], source["onnx"]["constant_weights"], source["onnx"]["subgraphs"])
    assert counts == (4, 1, 2)


def test_half_precision_weights_through_cast_and_transpose():
    kernel, bias, dense = (weights(2, 1, 3, 3), weights(2, seed=1), weights(5, 8, seed=2))
    nodes = [
        helper.make_node("Cast", ["kernel"], ["kernel32"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["bias"], ["bias32"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "kernel32", "bias32"], ["features"]),
        helper.make_node("Flatten", ["features"], ["flat"]),
        helper.make_node("Cast", ["dense"], ["dense32"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["dense32"], ["dense_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["flat", "dense_t"], ["y"]),
    ]
    initializers = [numpy_helper.from_array(value.astype(np.float16), name)
                    for name, value in (("kernel", kernel), ("bias", bias), ("dense", dense))]
    onnx.save(_model(nodes, [_value("x", [1, 1, 4, 1])], [_value("y", [1, 5])], initializers), "half.onnx")
    records = {record.name: record for record in check("half.onnx").records}
    # dense is stored (out, in): MatMul reads it (in, out) after the Transpose.
    for name, consumer, layout in (("kernel", "Conv", "out_in"), ("bias", "Conv", None), ("dense", "MatMul", "out_in")):
        record = records[name]
        assert record.dtype == torch.float16 and record.is_judged, name
        assert record.metadata["graph_role"] == "weight", name
        assert record.metadata["onnx_ops"] == ["Cast"] and record.metadata["consumers"] == [consumer], name
        assert record.metadata["module_type"] == consumer and record.layout == layout, name


def test_a_graph_without_nodes_is_a_file_of_weights():
    graph = helper.make_graph([], "weights", [], [], [numpy_helper.from_array(weights(3, 2), "table")])
    onnx.save(helper.make_model(graph), "weights.onnx")
    (record,) = check("weights.onnx").records
    assert (record.name, record.metadata["graph_role"], record.is_judged) == ("table", "weight", True)
