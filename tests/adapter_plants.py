"""LoRA adapters made by the real ``peft`` package, and defects to plant in a copy of one.

Used by ``tests/test_adapters.py`` and ``benchmarks/adapter_compare.py`` (weightlint next to
adaptersentry on the same adapters). A plant edits the tensors of a module (its prefix is
``module``), the configuration, or the files beside the adapter.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def train_adapter(folder: Path, base_folder: Path, rank: int = 8, steps: int = 40, layers: int = 6, **lora) -> None:
    """A small BERT (weights the size of a pretrained model's) saved as the base, and a LoRA
    adapter on its query and value projections trained for ``steps`` AdamW steps on a regression."""
    import peft
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                                     intermediate_size=128, vocab_size=200, max_position_embeddings=64,
                                     initializer_range=0.1)
    base = transformers.BertModel(config)
    base.save_pretrained(base_folder)
    model = peft.get_peft_model(base, peft.LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["query", "value"],
                                                      **lora))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    generator = torch.Generator().manual_seed(1)
    ids, target = torch.randint(0, 200, (64, 16), generator=generator), torch.randn(64, 64, generator=generator)
    for _ in range(steps):
        batch = torch.randint(0, 64, (16,), generator=generator)
        loss = torch.nn.functional.mse_loss(model(input_ids=ids[batch]).last_hidden_state.mean(1), target[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)


@dataclass
class Plant:
    """One defect: what it does, how, and the finding weightlint should give (code, factor, severity)."""

    id: str
    description: str
    tensors: Callable[[dict, str], None] | None = None  # (tensors, module prefix) → edited in place
    config: Callable[[dict], None] | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    expected: tuple[str, str | None, str] | None = None  # (code, "lora_A"/"lora_B"/None, severity)


def _zero_b(tensors, module):
    tensors[f"{module}.lora_B.weight"].zero_()


def _scale_b(tensors, module):
    tensors[f"{module}.lora_B.weight"].mul_(20)


def _three_rows(tensors, module):
    """The module's update replaced by a payload of the same energy on three output rows."""
    import torch

    b = tensors[f"{module}.lora_B.weight"]
    payload = torch.zeros_like(b)
    rows = [3, b.shape[0] // 2, b.shape[0] - 5]
    payload[rows] = b.norm() / 3 ** 0.5 * torch.nn.functional.normalize(
        torch.randn(3, b.shape[1], generator=torch.Generator().manual_seed(0)), dim=1)
    tensors[f"{module}.lora_B.weight"] = payload


def _rank_two(tensors, module):
    import torch

    b = tensors[f"{module}.lora_B.weight"]
    mix = torch.randn(2, b.shape[1], generator=torch.Generator().manual_seed(0))
    tensors[f"{module}.lora_B.weight"] = (b[:, :2] @ mix).contiguous()


def _nan(tensors, module):
    tensors[f"{module}.lora_A.weight"][0, 0] = float("nan")


def _all_zero(tensors, module):
    for name, tensor in tensors.items():
        if ".lora_B." in name:
            tensor.zero_()


def _full_head(tensors, module):
    """A trained-looking output head (a decaying spectrum, not random initialization)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    left, right = torch.linalg.qr(torch.randn(200, 64, generator=generator))[0], torch.linalg.qr(
        torch.randn(64, 64, generator=generator))[0]
    tensors["base_model.model.lm_head.weight"] = left @ torch.diag(1 / (1 + torch.arange(64.0))) @ right


PLANTS = [
    Plant("clean", "the adapter as trained"),
    Plant("b-zeroed", "one module's lora_B zeroed (never trained)", _zero_b, expected=("WL804", "lora_B", "warning")),
    Plant("scaled-x20", "one module's lora_B × 20", _scale_b, expected=("WL802", "lora_B", "warning")),
    Plant("three-rows", "one module's update moved onto 3 output rows (same energy)", _three_rows,
          expected=("WL803", "lora_B", "warning")),
    Plant("rank-2", "one module's update of rank 2 (declared 16)", _rank_two, expected=("WL801", "lora_B", "warning")),
    Plant("nan", "a NaN in one lora_A", _nan, expected=("WL100", "lora_A", "error")),
    Plant("all-zero", "every lora_B zero (saved before training)", _all_zero, expected=("WL804", None, "error")),
    Plant("missing-target", "adapter_config.json names a module with no tensors",
          config=lambda c: c.update(target_modules=[*c["target_modules"], "key"]), expected=("WL805", None, "warning")),
    Plant("rank-mismatch", "adapter_config.json declares r=4 for rank-16 tensors",
          config=lambda c: c.update(r=4), expected=("WL805", "lora_B", "error")),
    Plant("pickle", "a pickle next to the adapter", files={"extra.pkl": b"\x80\x04K\x01."},
          expected=("WL807", None, "warning")),
    Plant("full-head", "an undeclared full lm_head tensor in the adapter", _full_head,
          expected=("WL806", None, "warning")),
]


def plant(source: Path, target: Path, defect: Plant, module: str) -> Path:
    """A copy of the adapter folder ``source`` at ``target`` with ``defect`` planted on ``module``."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    if defect.tensors is not None:
        tensors = load_file(target / "adapter_model.safetensors")
        defect.tensors(tensors, module)
        save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, target / "adapter_model.safetensors")
    if defect.config is not None:
        config = json.loads((target / "adapter_config.json").read_text())
        defect.config(config)
        (target / "adapter_config.json").write_text(json.dumps(config))
    for name, data in defect.files.items():
        (target / name).write_bytes(data)
    return target
