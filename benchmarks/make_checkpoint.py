"""Generate a Llama-shaped checkpoint of about 1.1B parameters in bf16, once, into a cache folder.

The shape is TinyLlama-1.1B's (hidden 2048, intermediate 5632, 22 layers, 32 heads, 4 KV heads,
vocab 32000, untied ``lm_head``) with the exact Hugging Face Llama tensor names, written as five
safetensors shards plus ``model.safetensors.index.json`` and a ``config.json``.

The weights look trained rather than random: every matrix is N(0, 0.02) noise plus a rank-16
component whose singular values sit well above the noise bulk, so every spectrum has spikes (as
trained layers do); RMSNorm weights are ones plus small noise.

Tensors are generated one at a time and streamed straight into the shard files (each shard's
header is computed from the shapes first), so memory stays around the largest tensor (the
32000 x 2048 embedding: ~260 MB in float32) instead of the model. Each tensor has its own seeded
generator, so the bytes do not depend on the order of generation.

    python benchmarks/make_checkpoint.py [--out DIR] [--force]

The default folder is ``$WEIGHTLINT_BENCH_CACHE/llama-1b`` or ``benchmarks/.cache/llama-1b``. A
finished folder carries a ``.complete`` stamp and is reused as is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys
import time
from pathlib import Path

import torch

GENERATOR_VERSION = 1
SEED = 20240607
SHARDS = 5
NOISE_STD = 0.02
RANK = 16

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "pretraining_tp": 1,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "use_cache": True,
    "torch_dtype": "bfloat16",
}

BYTES_PER_ELEMENT = 2  # bf16


def default_folder() -> Path:
    cache = os.environ.get("WEIGHTLINT_BENCH_CACHE")
    root = Path(cache) if cache else Path(__file__).resolve().parent / ".cache"
    return root / "llama-1b"


def tensor_shapes(config: dict = CONFIG) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of LlamaForCausalLM, in the order a Hugging Face save writes them."""
    hidden = config["hidden_size"]
    inter = config["intermediate_size"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    vocab = config["vocab_size"]
    shapes = [("model.embed_tokens.weight", (vocab, hidden))]
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}"
        shapes += [
            (f"{prefix}.self_attn.q_proj.weight", (hidden, hidden)),
            (f"{prefix}.self_attn.k_proj.weight", (kv, hidden)),
            (f"{prefix}.self_attn.v_proj.weight", (kv, hidden)),
            (f"{prefix}.self_attn.o_proj.weight", (hidden, hidden)),
            (f"{prefix}.mlp.gate_proj.weight", (inter, hidden)),
            (f"{prefix}.mlp.up_proj.weight", (inter, hidden)),
            (f"{prefix}.mlp.down_proj.weight", (hidden, inter)),
            (f"{prefix}.input_layernorm.weight", (hidden,)),
            (f"{prefix}.post_attention_layernorm.weight", (hidden,)),
        ]
    shapes += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return shapes


def numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def assign_shards(shapes, shards: int = SHARDS) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Split the tensors, in order, into ``shards`` groups of about equal size."""
    total = sum(numel(shape) for _, shape in shapes)
    target = total / shards
    groups: list[list] = [[] for _ in range(shards)]
    seen = 0
    for name, shape in shapes:
        size = numel(shape)
        # A tensor goes to the shard its middle falls into, so no shard stays empty.
        index = min(shards - 1, int((seen + size / 2) / target))
        groups[index].append((name, shape))
        seen += size
    return groups


def make_tensor(index: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(SEED + index)
    if len(shape) == 1:
        # RMSNorm gains: ones-ish.
        return (1.0 + 0.05 * torch.randn(shape, generator=generator)).to(torch.bfloat16)
    rows, cols = shape
    matrix = torch.randn(shape, generator=generator).mul_(NOISE_STD)
    # The noise bulk's top singular value is about NOISE_STD * (sqrt(rows) + sqrt(cols)); place
    # the rank-16 spikes between 1.5x and 6x that edge, decaying like a trained layer's head.
    edge = NOISE_STD * (rows**0.5 + cols**0.5)
    strengths = edge * torch.logspace(math.log10(6.0), math.log10(1.5), RANK)
    left = torch.linalg.qr(torch.randn(rows, RANK, generator=generator)).Q
    right = torch.linalg.qr(torch.randn(cols, RANK, generator=generator)).Q
    matrix.addmm_(left * strengths, right.T)
    return matrix.to(torch.bfloat16)


def shard_header(group) -> bytes:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in group:
        size = numel(shape) * BYTES_PER_ELEMENT
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    # safetensors pads the header with spaces to a multiple of 8 bytes.
    return encoded + b" " * (-len(encoded) % 8)


def write_shard(path: Path, group, first_index: int) -> None:
    header = shard_header(group)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)))
        handle.write(header)
        for position, (name, shape) in enumerate(group):
            tensor = make_tensor(first_index + position, shape)
            assert tuple(tensor.shape) == shape, name
            handle.write(tensor.contiguous().view(torch.int16).numpy().data)
            del tensor


def stamp() -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": SEED, "shards": SHARDS,
            "noise_std": NOISE_STD, "rank": RANK, "config": CONFIG}


def is_complete(folder: Path) -> bool:
    marker = folder / ".complete"
    try:
        return json.loads(marker.read_text()) == json.loads(json.dumps(stamp()))
    except (OSError, ValueError):
        return False


def generate(folder: Path, force: bool = False, quiet: bool = False) -> Path:
    """Write the checkpoint into ``folder`` unless a complete one is already there."""
    folder = Path(folder)
    if not force and is_complete(folder):
        return folder
    start = time.perf_counter()
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    shapes = tensor_shapes()
    groups = assign_shards(shapes)
    weight_map = {}
    index = 0
    for number, group in enumerate(groups, start=1):
        file_name = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        write_shard(staging / file_name, group, index)
        index += len(group)
        weight_map.update({name: file_name for name, _ in group})
        if not quiet:
            print(f"  wrote {file_name} ({len(group)} tensors, "
                  f"{time.perf_counter() - start:.0f} s)", file=sys.stderr)
    total_size = sum(numel(shape) for _, shape in shapes) * BYTES_PER_ELEMENT
    index_doc = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (staging / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2) + "\n")
    (staging / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    (staging / ".complete").write_text(json.dumps(stamp(), indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    if not quiet:
        params = sum(numel(shape) for _, shape in shapes)
        print(f"  {params / 1e9:.3f}B parameters, {total_size / 1e9:.2f} GB in "
              f"{time.perf_counter() - start:.0f} s -> {folder}", file=sys.stderr)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="target folder (default: $WEIGHTLINT_BENCH_CACHE/llama-1b or "
                             "benchmarks/.cache/llama-1b)")
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    args = parser.parse_args(argv)
    folder = args.out or default_folder()
    generate(folder, force=args.force)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
