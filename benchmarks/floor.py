"""The floor: the least any spectral linter must do — read every tensor, one SVD per matrix.

A bare loop over the safetensors files of a folder (following ``model.safetensors.index.json``
for sharded checkpoints), ``safe_open`` / ``get_tensor`` for every tensor, and one
``torch.linalg.svdvals`` per floating tensor with at least two dimensions, reshaped to
``out x rest`` and cast to float32. Torch keeps its default intra-op threads (all cores). On
``--device cuda`` each tensor is moved to the GPU before the cast, and the GPU is synchronised
at the end. No statistics, no rules, no report.

    python benchmarks/floor.py FOLDER_OR_FILE [--device cpu|cuda] [--tall]

``--tall`` transposes wide matrices (out < rest) before the SVD: same singular values, but on the
CPU torch's LAPACK is several times faster on the tall orientation (2048 x 5632: 3.5 s, its
transpose: 0.9 s), so this is a stricter floor than the plain loop the benchmark defines.

Prints one JSON line: matrices, tensors, bytes read and the time inside the loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open


def files_and_keys(path: Path) -> list[tuple[Path, list[str] | None]]:
    """The files to read, with their tensor names in index order (None: every tensor)."""
    if path.is_file():
        return [(path, None)]
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        by_file: dict[str, list[str]] = {}
        for name, file_name in weight_map.items():
            by_file.setdefault(file_name, []).append(name)
        return [(path / file_name, names) for file_name, names in by_file.items()]
    return [(file, None) for file in sorted(path.glob("*.safetensors"))]


def run(path: Path, device: str, tall: bool = False) -> dict:
    matrices = tensors = read_bytes = 0
    start = time.perf_counter()
    for file, names in files_and_keys(path):
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name in names if names is not None else handle.keys():
                tensor = handle.get_tensor(name)
                tensors += 1
                read_bytes += tensor.numel() * tensor.element_size()
                if tensor.ndim < 2 or not tensor.is_floating_point():
                    continue
                if device != "cpu":
                    tensor = tensor.to(device)
                matrix = tensor.reshape(tensor.shape[0], -1).to(torch.float32)
                if tall and matrix.shape[0] < matrix.shape[1]:
                    matrix = matrix.T  # same singular values; LAPACK is faster on tall input
                torch.linalg.svdvals(matrix)
                matrices += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"matrices": matrices, "tensors": tensors, "bytes": read_bytes,
            "loop_s": round(time.perf_counter() - start, 3), "device": device,
            "threads": torch.get_num_threads(), "tall": tall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--tall", action="store_true",
                        help="transpose wide matrices first (a stricter floor; not the default)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.path, args.device, args.tall)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
