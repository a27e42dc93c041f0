"""A small GPT-2-shaped checkpoint with planted defects, so a newcomer sees real output offline."""

from __future__ import annotations

import json
import os
import tempfile

import torch

# A GPT-2 with the real tensor names and layouts (HF Conv1D stores (in, out)), scaled down.
VOCAB, POSITIONS, WIDTH, LAYERS = 1024, 256, 128, 4

# Each planted defect: tensor → what is wrong with it (the demo's own ground truth).
PLANTED = {
    "h.2.attn.c_proj.weight": "one NaN at [5, 17] (WL100)",
    "h.1.mlp.c_fc.weight": "output units 7, 42 and 99 zeroed (WL501)",
}


def gpt2_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """GPT-2's initialization: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2·layers)."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=generator) * std

    state = {"wte.weight": normal(VOCAB, WIDTH), "wpe.weight": normal(POSITIONS, WIDTH, std=0.01)}
    projection_std = 0.02 / (2 * LAYERS) ** 0.5
    for layer in range(LAYERS):
        prefix = f"h.{layer}."
        state.update({
            prefix + "ln_1.weight": torch.ones(WIDTH), prefix + "ln_1.bias": torch.zeros(WIDTH),
            prefix + "attn.c_attn.weight": normal(WIDTH, 3 * WIDTH), prefix + "attn.c_attn.bias": torch.zeros(3 * WIDTH),
            prefix + "attn.c_proj.weight": normal(WIDTH, WIDTH, std=projection_std),
            prefix + "attn.c_proj.bias": torch.zeros(WIDTH),
            prefix + "ln_2.weight": torch.ones(WIDTH), prefix + "ln_2.bias": torch.zeros(WIDTH),
            prefix + "mlp.c_fc.weight": normal(WIDTH, 4 * WIDTH), prefix + "mlp.c_fc.bias": torch.zeros(4 * WIDTH),
            prefix + "mlp.c_proj.weight": normal(4 * WIDTH, WIDTH, std=projection_std),
            prefix + "mlp.c_proj.bias": torch.zeros(WIDTH),
        })
    state.update({"ln_f.weight": torch.ones(WIDTH), "ln_f.bias": torch.zeros(WIDTH)})
    return state


def plant_defects(state: dict[str, torch.Tensor]) -> None:
    state["h.2.attn.c_proj.weight"][5, 17] = float("nan")
    state["h.1.mlp.c_fc.weight"][:, [7, 42, 99]] = 0.0  # Conv1D (in, out): output units are columns


def write_demo_checkpoint(folder: str | None = None) -> str:
    from safetensors.torch import save_file

    folder = folder or tempfile.mkdtemp(prefix="weightlint-demo-")
    os.makedirs(folder, exist_ok=True)
    state = gpt2_state_dict()
    plant_defects(state)
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    config = {"model_type": "gpt2", "architectures": ["GPT2Model"], "vocab_size": VOCAB, "n_positions": POSITIONS,
              "n_embd": WIDTH, "n_layer": LAYERS, "n_head": 4}
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    with open(os.path.join(folder, "PLANTED.json"), "w", encoding="utf-8") as handle:
        json.dump(PLANTED, handle, indent=2)
    return folder
