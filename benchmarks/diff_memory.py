"""Memory and time of ``weightlint diff`` on two copies of a sharded Llama-shaped checkpoint, and
what a norm-based check costs next to writing the checkpoint (the training callback's budget).

    python benchmarks/diff_memory.py                  # ~0.5B parameters, bf16, 3 shards (~1 GB a copy)
    python benchmarks/diff_memory.py --layers 22      # the 1.1B shape of docs/performance.md

The second copy is the first after one "training interval" (every tensor moved by ~1 %). The
training callback's price per save is measured too: a ``TrainingMonitor`` sees the old copy (the
first checkpoint of a run), then the new one, compared with the summary it kept. Peak RSS
is the diff process's own (``ru_maxrss`` from ``wait4`` on it; the copies are written by another
child, so that it inherits nothing large at fork). Writes
benchmarks/results/diff-memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "diff"


def llama_shapes(layers: int, hidden: int = 2048, intermediate: int = 5632, vocab: int = 32000) -> dict[str, tuple]:
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    for i in range(layers):
        prefix = f"model.layers.{i}"
        shapes.update({f"{prefix}.self_attn.q_proj.weight": (hidden, hidden), f"{prefix}.self_attn.k_proj.weight": (256, hidden),
                       f"{prefix}.self_attn.v_proj.weight": (256, hidden), f"{prefix}.self_attn.o_proj.weight": (hidden, hidden),
                       f"{prefix}.mlp.gate_proj.weight": (intermediate, hidden), f"{prefix}.mlp.up_proj.weight": (intermediate, hidden),
                       f"{prefix}.mlp.down_proj.weight": (hidden, intermediate),
                       f"{prefix}.input_layernorm.weight": (hidden,), f"{prefix}.post_attention_layernorm.weight": (hidden,)})
    return shapes


def write_copies(layers: int, shards: int) -> tuple[Path, Path, float, int]:
    """Two sharded copies (old, new); the seconds the new copy took to write; the parameter count."""
    import torch
    from safetensors.torch import save_file

    old, new = CACHE / f"old-{layers}", CACHE / f"new-{layers}"
    shapes = llama_shapes(layers)
    parameters = sum(int(torch.Size(s).numel()) for s in shapes.values())
    names = list(shapes)
    groups = [names[i::shards] for i in range(shards)]
    save_seconds = 0.0
    for folder in (old, new):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    weight_map = {}
    generator = torch.Generator().manual_seed(0)
    for index, group in enumerate(groups, 1):
        shard = f"model-{index:05d}-of-{shards:05d}.safetensors"
        before = {name: (torch.randn(shapes[name], generator=generator) * 0.02).to(torch.bfloat16) for name in group}
        after = {name: (tensor.float() * 1.005 + torch.randn(tensor.shape, generator=generator) * 2e-4).to(torch.bfloat16)
                 for name, tensor in before.items()}
        save_file(before, str(old / shard))
        started = time.perf_counter()
        save_file(after, str(new / shard))
        save_seconds += time.perf_counter() - started
        weight_map.update({name: shard for name in group})
        del before, after
    for folder in (old, new):
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return old, new, save_seconds, parameters


def timed_child(command: list[str]) -> tuple[float, int, int, str]:
    """(seconds, peak RSS in MB, exit code, standard output) of a child process. This process must
    stay small: a child's peak RSS counts the pages it inherits at fork, so the copies are written
    by another child (``--write-only``) first."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own usage (not every child's maximum)
    seconds = time.perf_counter() - started
    return seconds, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status), output


def callback_cost(old: str, new: str) -> None:
    """What the training callback costs per save: the monitor sees ``old`` (the first checkpoint:
    checked and summarized), then ``new`` (compared with that summary); the second call is the
    steady-state price of every later save. Prints JSON."""
    from weightlint.integrations.training import TrainingMonitor

    monitor = TrainingMonitor()
    started = time.perf_counter()
    monitor.checkpoint_saved(old)
    first = time.perf_counter() - started
    started = time.perf_counter()
    outcome = monitor.checkpoint_saved(new)
    later = time.perf_counter() - started
    print(json.dumps({"first_seconds": round(first, 2), "per_save_seconds": round(later, 2),
                      "findings": [finding.code for finding in outcome.findings]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8, help="decoder layers (22: the 1.1B shape)")
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--callback-cost", nargs=2, metavar=("OLD", "NEW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callback_cost:
        callback_cost(*args.callback_cost)
        return
    if args.write_only:
        print(json.dumps(write_copies(args.layers, args.shards), default=str))
        return
    written = subprocess.run([sys.executable, __file__, "--layers", str(args.layers), "--shards", str(args.shards),
                              "--write-only"], capture_output=True, text=True, check=True).stdout
    old, new, save_seconds, parameters = json.loads(written)
    old, new = Path(old), Path(new)
    model_mb = sum(f.stat().st_size for f in new.glob("*.safetensors")) / 2**20
    seconds, peak_mb, code, _ = timed_child([sys.executable, "-m", "weightlint", "diff", str(old), str(new),
                                             "--no-spectra", "-q", "--isolated"])
    _, monitor_peak_mb, _, monitor = timed_child([sys.executable, __file__, "--callback-cost", str(old), str(new)])
    monitor = json.loads(monitor)
    result = {"parameters": parameters, "dtype": "bfloat16", "shards": args.shards, "model_mb": round(model_mb, 1),
              "save_seconds_one_copy": round(save_seconds, 2), "diff_seconds_norms_only": round(seconds, 2),
              "diff_peak_rss_mb": peak_mb, "diff_exit_code": code,
              "callback_first_checkpoint_seconds": monitor["first_seconds"],
              "callback_per_save_seconds": monitor["per_save_seconds"],
              "callback_per_save_fraction_of_save": round(monitor["per_save_seconds"] / save_seconds, 2),
              "callback_findings": monitor["findings"], "callback_peak_rss_mb": monitor_peak_mb,
              "cores": os.cpu_count()}
    out = ROOT / "benchmarks" / "results" / "diff-memory.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(old), shutil.rmtree(new)


if __name__ == "__main__":
    main()
