"""Five complete cases, each a problem a team meets with real checkpoints, solved with weightlint.

Run: ``python examples/real_world_cases.py`` (a few seconds; everything is generated, nothing is
downloaded). Each case builds a small checkpoint with the problem planted, runs weightlint as a
team would, and prints what it learns.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch
from safetensors.torch import save_file

import weightlint
from weightlint import Scope


def trained_like(rows: int, cols: int, seed: int, std: float = 0.02) -> torch.Tensor:
    """Noise plus a rank-8 signal: the spectrum of a trained layer."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(rows, cols, generator=generator)
    signal = torch.randn(rows, 8, generator=generator) @ torch.randn(8, cols, generator=generator) / 8**0.5
    return (noise + 0.5 * signal) * std


def small_model(seed: int = 0, layers: int = 6, width: int = 96) -> dict[str, torch.Tensor]:
    state = {}
    for layer in range(layers):
        prefix = f"model.layers.{layer}."
        state[prefix + "self_attn.q_proj.weight"] = trained_like(width, width, seed + 10 * layer)
        state[prefix + "mlp.down_proj.weight"] = trained_like(width, 4 * width, seed + 10 * layer + 1, std=0.01)
        state[prefix + "input_layernorm.weight"] = torch.ones(width)
    return state


def case_1_fp16_overflow_before_mixed_precision() -> weightlint.Report:
    """A fine-tune is about to switch to fp16: one projection has grown beyond fp16's range."""
    state = small_model()
    state["model.layers.3.mlp.down_proj.weight"][7, 11] = 7.0e4   # becomes Inf in fp16
    report = weightlint.check(state, select=["WL1"])
    for finding in report.findings:
        print(f"  {finding.code} {finding.severity} {finding.tensor}: {finding.message}")
    print(f"  gate: exit code {int(report.exit_code)} — do not cast this checkpoint to fp16; use bf16 or fp32")
    return report


def case_2_quantization_plan() -> tuple[dict[str, list[str]], weightlint.Report]:
    """Before int8 deployment: which precision each layer takes, and what looks wrong.

    12 of q_proj's 96 input dimensions are 300× larger (outlier features, as trained transformers
    grow them). One int8 scale per output row still keeps 40 dB, so the plan is int8 per channel
    everywhere, and nothing is reported: the outliers follow whole input features, the structure
    training creates, not the scattered values of a corrupted tensor."""
    state = small_model()
    outlier_features = list(range(0, 96, 8))
    state["model.layers.2.self_attn.q_proj.weight"][:, outlier_features] *= 300
    report = weightlint.check(state, select=["WL2"])
    plan = report.quantization_plan()
    for precision, layers in plan.items():
        print(f"  {precision:17s} {len(layers)} layers")
    for finding in report.findings:
        print(f"  {finding.code} {finding.severity} {finding.tensor}: {finding.message}")
    return plan, report


def case_3_exploding_layer_between_checkpoints() -> dict:
    """Checkpoints every 100 steps: one layer's weights jump 25× — stop and lower the learning rate."""
    step_100 = small_model()
    step_200 = {name: tensor * 1.02 for name, tensor in step_100.items()}
    step_200["model.layers.4.mlp.down_proj.weight"] = step_100["model.layers.4.mlp.down_proj.weight"] * 25
    comparison = Scope(step_100).compare_with(Scope(step_200))
    for name, layer in comparison["layer_comparisons"].items():
        if layer["status"] != "ok":
            print(f"  {layer['status']:14s} {name}: l2 ratio {layer['l2_norm_ratio']:.2f}")
    return comparison


def case_4_merge_gone_wrong() -> weightlint.Report:
    """A model merge script copied one layer over another and left a new head at random init."""
    state = small_model()
    state["model.layers.5.self_attn.q_proj.weight"] = state["model.layers.1.self_attn.q_proj.weight"].clone()
    state["score.weight"] = torch.randn(96, 96, generator=torch.Generator().manual_seed(7)) * 0.02
    report = weightlint.check(state, select=["WL5", "WL6"])
    for finding in report.findings:
        print(f"  {finding.code} {finding.severity} {finding.tensor}: {finding.message[:90]}")
    return report


def case_5_ci_gate_with_configuration(folder: str) -> int:
    """CI: a project configuration accepts one known finding (with a reason) and writes SARIF."""
    state = small_model()
    state["model.layers.0.mlp.down_proj.weight"][5] = 0.0   # pruned on purpose
    save_file(state, os.path.join(folder, "model.safetensors"))
    config = os.path.join(folder, "weightlint.yaml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("fail-on: warning\n"
                     "suppress:\n"
                     "  - rule: dead-units\n"
                     "    tensor: model.layers.0.mlp.down_proj.weight\n"
                     "    reason: unit 5 was pruned on purpose in the distillation run\n")
    from weightlint.cli import main

    sarif = os.path.join(folder, "weightlint.sarif")
    code = main([folder, "--config", config, "--quiet", "--sarif", sarif, "--format", "json",
                 "--output", os.path.join(folder, "report.json")])
    with open(sarif, encoding="utf-8") as handle:
        results = json.load(handle)["runs"][0]["results"]
    print(f"  exit code {code}, {len(results)} SARIF results, suppressed findings are not reported")
    return code


def main() -> None:
    print("1. fp16 overflow before switching to mixed precision")
    case_1_fp16_overflow_before_mixed_precision()
    print("2. quantization plan")
    case_2_quantization_plan()
    print("3. exploding layer between two checkpoints")
    case_3_exploding_layer_between_checkpoints()
    print("4. a merge gone wrong")
    case_4_merge_gone_wrong()
    print("5. CI gate with a configuration file")
    with tempfile.TemporaryDirectory() as folder:
        case_5_ci_gate_with_configuration(folder)


if __name__ == "__main__":
    main()
