"""Peak memory and time of checking one giant tensor: a generated 128k × 4096 bf16 embedding (1 GiB
on disk, 2 GiB as float32), checked in row blocks (the default for tensors over
``weightlint.stats.blocked.WHOLE_TENSOR_VALUES``) and, with ``--compare``, whole as before.

    python benchmarks/giant_tensor.py                     # 131072 × 4096, blocked
    python benchmarks/giant_tensor.py --compare           # also whole, and the statistics side by side
    python benchmarks/giant_tensor.py --rows 16384        # a smaller one
    python benchmarks/giant_tensor.py --model PATH --blocked-from 4194304 --compare
                                                          # a real model, tensors over 4M values in blocks

The matrix looks trained rather than random: rows of unequal scale (Zipf-like token frequencies), a
low-rank part, a few outlier columns. Peak RSS is the child process's own (``ru_maxrss`` from
``wait4``). Writes benchmarks/results/giant-tensor.json. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "giant"
RESULTS = ROOT / "benchmarks" / "results" / "giant-tensor.json"


def write_embedding(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    """A bf16 safetensors file with one ``model.embed_tokens.weight`` (rows × cols), written in
    row blocks so that the generator itself stays small."""
    nbytes = rows * cols * 2
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [rows, cols],
                                                       "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((32, cols)).astype(np.float32)  # a shared low-rank part
    outlier_columns = rng.choice(cols, size=max(1, cols // 512), replace=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        step = max(1, (1 << 22) // cols)  # 4M values at a time
        for start in range(0, rows, step):
            count = min(step, rows - start)
            ranks = np.arange(start + 1, start + count + 1, dtype=np.float32)
            scale = (0.02 * (1.0 + 4.0 / np.sqrt(ranks)))[:, None]  # frequent tokens: larger rows
            block = rng.standard_normal((count, cols), dtype=np.float32) * scale
            block += 0.01 * rng.standard_normal((count, 32), dtype=np.float32) @ basis
            block[:, outlier_columns] *= 8.0
            bits = block.view(np.uint32)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
            handle.write(rounded.tobytes())


CHILD = """
import json, sys, time
import weightlint.stats.blocked as blocked
if sys.argv[2] == "whole":
    blocked.WHOLE_TENSOR_VALUES = 1 << 62
elif sys.argv[2] != "blocked":
    blocked.WHOLE_TENSOR_VALUES = int(sys.argv[2])
from weightlint.cli import main
started = time.perf_counter()
code = main([sys.argv[1], "--format", "json", "-o", sys.argv[3], "--isolated", "--jobs", "1"])
print(json.dumps({"seconds": time.perf_counter() - started, "exit": code}))
"""


def measure(path: Path, mode: str, out: Path) -> dict:
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode, str(out)], stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    output = child.stdout.read()
    child.stdout.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise SystemExit(f"{mode} run failed with exit {child.returncode}: {output}")
    inner = json.loads(output.strip().splitlines()[-1])
    return {"mode": mode, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "check_seconds": round(inner["seconds"], 1), "wall_seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=131072)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--compare", action="store_true", help="also check it whole, and compare the statistics")
    parser.add_argument("--model", help="a real model (file or folder) instead of the generated embedding")
    parser.add_argument("--blocked-from", type=int, help="values from which a tensor is checked in blocks "
                        "(default: weightlint's own, 64M)")
    args = parser.parse_args()
    path = Path(args.model) if args.model else CACHE / f"embedding-{args.rows}x{args.cols}.safetensors"
    if not path.exists():
        # In a child: a child's peak RSS starts from its parent's (Linux keeps the high-water mark
        # across fork and exec), so the checks below must not be forked from the writer.
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from giant_tensor import write_embedding; from pathlib import Path; "
                        "write_embedding(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))",
                        str(ROOT / "benchmarks"), str(path), str(args.rows), str(args.cols)], check=True)
    runs, reports = [], {}
    blocked_mode = str(args.blocked_from) if args.blocked_from else "blocked"
    for mode in (blocked_mode, "whole") if args.compare else (blocked_mode,):
        CACHE.mkdir(parents=True, exist_ok=True)
        out = CACHE / f"report-{mode}.json"
        runs.append(measure(path, mode, out))
        reports[mode] = json.loads(out.read_text())
        print(json.dumps(runs[-1]))
    size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*") if path.is_dir() else []))
    result = ({"model": str(path), "blocked_from": args.blocked_from} if args.model else
              {"rows": args.rows, "cols": args.cols})
    result.update({"disk_mb": round(size / 2**20, 1), "runs": runs})
    if args.compare:
        result["largest_relative_difference"] = largest_difference(
            reports[blocked_mode]["tensors"], reports["whole"]["tensors"])
        result["same_findings"] = ([(f["code"], f["tensor"]) for f in reports[blocked_mode]["findings"]]
                                   == [(f["code"], f["tensor"]) for f in reports["whole"]["findings"]])
        result["findings"] = len(reports["whole"]["findings"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results = results if isinstance(results, dict) and "runs" not in results else {}
    results[f"{path.parent.name}/{path.name}" if args.model else f"embedding-{args.rows}x{args.cols}"] = result
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def largest_difference(first: dict, second: dict) -> dict:
    """The largest relative difference of each statistic group between two reports' tensors."""
    worst: dict = {}

    def walk(a, b, group):
        if isinstance(a, dict):
            for key in a:
                walk(a[key], b.get(key) if isinstance(b, dict) else None, group or key)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for x, y in zip(a, b):
                walk(x, y, group)
        elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            scale = max(abs(a), abs(b))
            difference = abs(a - b) / scale if scale and np.isfinite(scale) else 0.0
            worst[group] = max(worst.get(group, 0.0), difference)
        elif a != b:
            worst[group] = float("inf")

    for name in first:
        walk(first[name], second.get(name, {}), None)
    return worst


if __name__ == "__main__":
    main()
