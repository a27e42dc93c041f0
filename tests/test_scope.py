"""The guide's Python API: Scope(path).scan(), health_check(), compare_with()."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import weightlint
from weightlint import Scope


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {f"layers.{i}.mlp.weight": torch.randn(64, 96, generator=generator) * 0.02 for i in range(5)}


def test_scan_returns_the_guides_mapping(tmp_path):
    save_file(_state(), str(tmp_path / "model.safetensors"))
    results = Scope(tmp_path).scan(methods=["spectral", "quantization"], parallel=True)
    layer = results["layers.0.mlp.weight"]
    assert layer["spectral"]["total_rank"] == 64
    assert layer["spectral"]["condition_number"] > 1
    assert "stable_rank" in layer["spectral"]
    assert 0 <= layer["quantization"]["extreme_outlier_percentage"] < 1
    assert layer["quantization"]["sqnr_db"] > 30
    only_sparsity = Scope(tmp_path).scan(methods=["sparsity"], parallel=False)
    assert "spectral" not in only_sparsity["layers.0.mlp.weight"]
    assert only_sparsity["layers.0.mlp.weight"]["sparsity"]["zero_rows"] == []
    with pytest.raises(ValueError, match="unknown method"):
        Scope(tmp_path).scan(methods=["magic"])


def test_health_check(tmp_path):
    state = _state()
    state["layers.1.mlp.weight"][0, 0] = float("nan")
    scope = Scope(state)
    health = scope.health_check()
    counts = health["counts"]
    assert counts["error"] == 1
    assert health["health_score"] == 100 - 10 * counts["error"] - 3 * counts["warning"]
    assert [f["code"] for f in health["findings"] if f["severity"] == "error"] == ["WL100"]


def test_compare_with_flags_the_guides_training_health_cases():
    before = _state()
    after = {name: tensor * 1.05 + torch.randn(tensor.shape, generator=torch.Generator().manual_seed(9)) * 1e-3
             for name, tensor in before.items()}
    after["layers.0.mlp.weight"] = before["layers.0.mlp.weight"] * 20          # gradient explosion
    after["layers.1.mlp.weight"] = before["layers.1.mlp.weight"] * 3           # drastic change
    after["layers.2.mlp.weight"] = before["layers.2.mlp.weight"].clone()       # not moving at all
    u, s, vh = torch.linalg.svd(before["layers.3.mlp.weight"].double(), full_matrices=False)
    s[-1] = s[-1] / 1000                                                      # σmin collapses: instability
    after["layers.3.mlp.weight"] = (u @ torch.diag(s) @ vh).float()
    comparison = Scope(before).compare_with(Scope(after))
    layers = comparison["layer_comparisons"]
    assert layers["layers.0.mlp.weight"]["status"] == "explosion"
    assert layers["layers.0.mlp.weight"]["l2_norm_ratio"] == pytest.approx(20, rel=1e-5)
    assert layers["layers.1.mlp.weight"]["status"] == "drastic-change"
    assert layers["layers.2.mlp.weight"]["status"] == "ok" and layers["layers.2.mlp.weight"]["relative_change"] == 0
    assert layers["layers.3.mlp.weight"]["status"] == "instability"
    assert layers["layers.3.mlp.weight"]["condition_number_ratio"] > 100
    assert layers["layers.4.mlp.weight"]["status"] == "ok"
    assert comparison["summary"] == {"explosion": 1, "drastic-change": 1, "instability": 1, "ok": 2}
    assert comparison["stagnation"] is None  # one tensor of five standing still is not a stalled model


def test_compare_with_itself_is_one_stagnation_finding_and_keeps_the_scan():
    state = _state()
    scope = Scope(state, device="cpu")
    health = scope.health_check()
    comparison = scope.compare_with(Scope(state, device="cpu"))
    assert comparison["summary"]["ok"] == len(comparison["layer_comparisons"])
    assert comparison["stagnation"]["code"] == "WL704" and comparison["stagnation"]["value"] == 1.0
    assert scope.health_check() == health  # compare_with keeps its own report


def test_scope_is_exported():
    assert weightlint.Scope is Scope
