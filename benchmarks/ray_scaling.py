"""The local executor against Ray on this machine: a sharded checkpoint with 1 and 2 Ray workers,
and a generated 100-shard checkpoint of tiny tensors for Ray's cost per task. Not part of CI.

    python benchmarks/ray_scaling.py [--layers 22]     # 22: the 1.1B shape (minutes per run)
    python benchmarks/ray_scaling.py --watch 4         # `watch --spectra` over 4 checkpoints, local and Ray

Each run is a fresh process (`python -m weightlint … --format json`), so that Ray's start-up is
counted as a user pays it. Writes benchmarks/results/ray-scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def run(*arguments: str, workers: int | None = None) -> tuple[float, dict]:
    """One fresh process: ``weightlint ARGUMENTS`` (a path to check, or a command and its paths)."""
    env = dict(os.environ)
    command = [sys.executable, "-m", "weightlint", *arguments, "--format", "json", "-q", "--isolated", "--exit-zero"]
    if workers is not None:
        # A local cluster of `workers` CPUs: one task at a time on each.
        command = [sys.executable, "-c", "import ray, sys; from weightlint.cli import main; "
                   f"ray.init(num_cpus={workers}, include_dashboard=False, log_to_driver=False); "
                   "sys.exit(main(sys.argv[1:]))", *command[3:], "--executor", "ray"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    return seconds, json.loads(done.stdout)


def tiny_shards(folder: Path, count: int = 100) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    weight_map = {}
    for index in range(count):
        shard = f"model-{index + 1:05d}-of-{count:05d}.safetensors"
        name = f"model.layers.{index}.proj.weight"
        save_file({name: (rng.standard_normal((64, 64)) * 0.05).astype(np.float32)}, str(folder / shard))
        weight_map[name] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def training_run(folder: Path, checkpoints: int, layers: int) -> int:
    """``checkpoints`` Llama-shaped bf16 checkpoints (one file each) of a run, each moved ~1 % from
    the one before; the parameter count of one."""
    import torch
    from diff_memory import llama_shapes
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    weights = {name: torch.randn(shape, generator=generator) * 0.02 for name, shape in llama_shapes(layers).items()}
    for index in range(checkpoints):
        target = folder / f"checkpoint-{(index + 1) * 100}"
        target.mkdir(parents=True)
        weights = {name: w + 0.01 * w.std() * torch.randn(w.shape, generator=generator) for name, w in weights.items()}
        save_file({name: w.to(torch.bfloat16) for name, w in weights.items()}, str(target / "model.safetensors"))
    return sum(w.numel() for w in weights.values())


def watch_runs(checkpoints: int, layers: int) -> dict:
    """`watch --spectra` locally (each checkpoint read once) and on Ray with 2 workers (pairs in parallel)."""
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / ".cache") as scratch:
        parameters = training_run(Path(scratch), checkpoints, layers)
        runs = {"parameters_per_checkpoint": parameters, "checkpoints": checkpoints}
        for label, workers in (("local", None), ("ray, 2 workers", 2)):
            seconds, report = run("watch", scratch, "--spectra", workers=workers)
            runs[label] = {"seconds": round(seconds, 1), "findings": len(report["findings"]),
                           "steps": [step["step"] for step in report.get("steps", [])]}
            print(label, runs[label], flush=True)
    return runs


def main() -> None:
    import diff_memory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--watch", type=int, metavar="N", help="only `watch --spectra` over N checkpoints "
                        "(2 layers each unless --layers is given)")
    args, given = parser.parse_args(), sys.argv[1:]
    if args.watch:
        path = ROOT / "benchmarks" / "results" / "ray-scaling.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        result["watch"] = watch_runs(args.watch, args.layers if "--layers" in given else 2)
        path.write_text(json.dumps(result, indent=2) + "\n")
        return
    result: dict = {"cores": os.cpu_count(), "layers": args.layers}
    old, _, _, parameters = diff_memory.write_copies(args.layers, 5 if args.layers >= 22 else 3)
    result["parameters"] = parameters
    runs = {}
    for label, workers in (("local", None), ("ray, 1 worker", 1), ("ray, 2 workers", 2)):
        seconds, report = run(str(old), workers=workers)
        runs[label] = {"seconds": round(seconds, 1), "findings": len(report["findings"]),
                       "health_score": report["summary"]["health_score"]}
        print(label, runs[label], flush=True)
    result["checkpoint"] = runs
    with tempfile.TemporaryDirectory() as scratch:
        timings = {}
        for count in (1, 100):  # the difference removes start-up (Python, Ray) from the cost per task
            folder = Path(scratch) / str(count)
            folder.mkdir()
            tiny_shards(folder, count)
            timings[count] = (run(str(folder))[0], run(str(folder), workers=2)[0])
        (local_1, ray_1), (local_100, ray_100) = timings[1], timings[100]
        result["hundred_shards"] = {
            "local_seconds": round(local_100, 2), "ray_2_workers_seconds": round(ray_100, 2),
            "ray_startup_seconds": round(ray_1 - local_1, 2),
            "overhead_per_task_ms": round(1000 * ((ray_100 - ray_1) - (local_100 - local_1)) / 99, 1)}
        print(result["hundred_shards"], flush=True)
    (ROOT / "benchmarks" / "results" / "ray-scaling.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
