"""The examples run and show what they claim."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import real_world_cases as cases  # noqa: E402


def test_case_1_fp16_overflow(capsys):
    report = cases.case_1_fp16_overflow_before_mixed_precision()
    assert ("WL102", "model.layers.3.mlp.down_proj.weight") in {(f.code, f.tensor) for f in report.findings}
    assert int(report.exit_code) == 1


def test_case_2_quantization_plan(capsys):
    plan, report = cases.case_2_quantization_plan()
    assert sum(len(layers) for layers in plan.values()) == 12
    assert "model.layers.2.self_attn.q_proj.weight" in plan["int8-per-channel"] and plan["fp16"] == []
    assert report.findings == []
    q_proj = report.tensors["model.layers.2.self_attn.q_proj.weight"]
    assert q_proj["quantization"]["extreme_outlier_percentage"] > 10 and q_proj["dispersion"]["column_dispersion"] > 1.5


def test_case_3_exploding_layer(capsys):
    comparison = cases.case_3_exploding_layer_between_checkpoints()
    flagged = {name for name, layer in comparison["layer_comparisons"].items() if layer["status"] != "ok"}
    assert flagged == {"model.layers.4.mlp.down_proj.weight"}


def test_case_4_merge(capsys):
    report = cases.case_4_merge_gone_wrong()
    assert {(f.code, f.tensor) for f in report.findings} == {
        ("WL502", "model.layers.1.self_attn.q_proj.weight"), ("WL502", "model.layers.5.self_attn.q_proj.weight"),
        ("WL601", "score.weight")}


def test_case_5_ci_gate(tmp_path, capsys):
    assert cases.case_5_ci_gate_with_configuration(str(tmp_path)) == 0
    assert (tmp_path / "weightlint.sarif").is_file()
