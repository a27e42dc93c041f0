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
    "h.2.attn.c_proj.weight": "one NaN at [5, 17] (WL100 error)",
    "h.3.attn.c_proj.weight": "collapsed to rank 8 of 128 (WL101 warning)",
    "wpe.weight": "2% of the hidden dimensions are 100× outliers: int8 needs per-channel scales (WL202 info)",
    "h.0.mlp.c_proj.weight": "scaled ×20 against its siblings (WL301 warning)",
    "h.3.mlp.c_fc.weight": "a copy of h.2.mlp.c_fc.weight (WL502 warning, on both)",
    "h.3.attn.c_attn.weight": "left at its random initialization (WL601 warning)",
    "h.1.mlp.c_fc.weight": "output units 7, 42 and 99 zeroed (WL501 info)",
}


def _trained_like(rows: int, cols: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise plus a rank-8 signal: the spectrum of a trained layer (spikes above the MP bulk)."""
    noise = torch.randn(rows, cols, generator=generator)
    signal = torch.randn(rows, 8, generator=generator) @ torch.randn(8, cols, generator=generator) / 8**0.5
    return (noise + 0.5 * signal) * std


def gpt2_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """GPT-2's layout and scales: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2·layers)."""
    generator = torch.Generator().manual_seed(seed)

    def matrix(stored_rows: int, stored_cols: int, std: float = 0.02) -> torch.Tensor:
        return _trained_like(stored_rows, stored_cols, std, generator)

    state = {"wte.weight": matrix(VOCAB, WIDTH), "wpe.weight": matrix(POSITIONS, WIDTH, std=0.01)}
    projection_std = 0.02 / (2 * LAYERS) ** 0.5
    for layer in range(LAYERS):
        prefix = f"h.{layer}."
        state.update({
            prefix + "ln_1.weight": torch.ones(WIDTH), prefix + "ln_1.bias": torch.zeros(WIDTH),
            prefix + "attn.c_attn.weight": matrix(WIDTH, 3 * WIDTH), prefix + "attn.c_attn.bias": torch.zeros(3 * WIDTH),
            prefix + "attn.c_proj.weight": matrix(WIDTH, WIDTH, std=projection_std),
            prefix + "attn.c_proj.bias": torch.zeros(WIDTH),
            prefix + "ln_2.weight": torch.ones(WIDTH), prefix + "ln_2.bias": torch.zeros(WIDTH),
            prefix + "mlp.c_fc.weight": matrix(WIDTH, 4 * WIDTH), prefix + "mlp.c_fc.bias": torch.zeros(4 * WIDTH),
            prefix + "mlp.c_proj.weight": matrix(4 * WIDTH, WIDTH, std=projection_std),
            prefix + "mlp.c_proj.bias": torch.zeros(WIDTH),
        })
    state.update({"ln_f.weight": torch.ones(WIDTH), "ln_f.bias": torch.zeros(WIDTH)})
    return state


def plant_defects(state: dict[str, torch.Tensor], seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    state["h.2.attn.c_proj.weight"][5, 17] = float("nan")
    # Rank collapse: the best rank-8 approximation, as a bad merge or factorization leaves it.
    u, singular, vt = torch.linalg.svd(state["h.3.attn.c_proj.weight"].double())
    state["h.3.attn.c_proj.weight"] = ((u[:, :8] * singular[:8]) @ vt[:8]).float()
    # Outlier features, as trained transformers grow them: 2% of the hidden dimensions 100× larger.
    # One int8 scale for the tensor leaves the other 98% a few levels; one per position absorbs them.
    outlier_dims = torch.randperm(WIDTH, generator=generator)[: int(0.02 * WIDTH)]
    state["wpe.weight"][:, outlier_dims] *= 100
    state["h.0.mlp.c_proj.weight"] *= 20
    state["h.3.mlp.c_fc.weight"] = state["h.2.mlp.c_fc.weight"].clone()
    state["h.3.attn.c_attn.weight"] = torch.randn(WIDTH, 3 * WIDTH, generator=generator) * 0.02
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
