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
    from weightlint.sources.onnx_file import _read
    from weightlint import dtypes

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
