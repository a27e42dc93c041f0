"""weightlint and picklescan on the same malicious-pickle corpus, and on healthy checkpoints.

The corpus is tests/malicious_pickles.py (28 callables × protocols 0–5 × 5 forms = 840 files);
the healthy set is torch.save checkpoints of every protocol and format, Hugging Face trainer state
and a real transformers TrainingArguments. picklescan (PyPI, ``pip install picklescan``) is run
through its Python API, file by file, as its CLI does. Writes benchmarks/results/picklescan.json
and the tables of docs/security.md's comparison section (printed; paste them there).

    python benchmarks/picklescan_compare.py
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import weightlint  # noqa: E402
from tests.malicious_pickles import CALLABLES, FORMATS, build  # noqa: E402


def healthy_files(folder: Path) -> list[Path]:
    """Checkpoints nothing should flag as dangerous (WL002 info for inert trainer state is allowed)."""
    import argparse as argparse_module

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    state = {"layer.weight": torch.randn(8, 8), "layer.bias": torch.randn(8)}
    for protocol in (2, 3, 4, 5):
        for zip_format in (True, False):
            path = folder / f"state-p{protocol}-{'zip' if zip_format else 'legacy'}.pt"
            torch.save(state, path, pickle_protocol=protocol, _use_new_zipfile_serialization=zip_format)
            paths.append(path)
    torch.save({"state_dict": state, "epoch": 3, "optimizer_states": [{"state": {}, "param_groups": []}]},
               folder / "lightning.ckpt")
    torch.save(argparse_module.Namespace(lr=1e-3), folder / "training_args-namespace.bin")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
               folder / "rng_state.pth")
    paths += [folder / "lightning.ckpt", folder / "training_args-namespace.bin", folder / "rng_state.pth"]
    try:
        from transformers import TrainingArguments

        torch.save(TrainingArguments(output_dir=str(folder / "out"), report_to=[]), folder / "training_args.bin")
        paths.append(folder / "training_args.bin")
    except ImportError:  # accelerate missing
        pass
    return paths


def weightlint_verdicts(paths: list[Path]) -> tuple[dict[str, str], float]:
    """file → "dangerous" (WL002 error), "inert" (WL002 info), "clean" or "unread" (WL001)."""
    started = time.perf_counter()
    report = weightlint.check(*map(str, paths))
    seconds = time.perf_counter() - started
    verdicts = {weightlint.sources.display_path(path): "clean" for path in paths}
    for finding in report.findings:
        if finding.code == "WL002":
            verdicts[finding.file] = "dangerous" if finding.severity == weightlint.Severity.ERROR else "inert"
        elif finding.code == "WL001" and verdicts.get(finding.file) == "clean":
            verdicts[finding.file] = "unread"
    return verdicts, seconds


def picklescan_verdicts(paths: list[Path]) -> tuple[dict[str, str], float]:
    """file → "dangerous" (a dangerous global), "suspicious", "clean" or "error" (scan error)."""
    from picklescan.scanner import scan_file_path

    verdicts = {}
    started = time.perf_counter()
    for path in paths:
        result = scan_file_path(str(path))
        verdicts[weightlint.sources.display_path(path)] = (
            "dangerous" if result.issues_count else "suspicious" if getattr(result, "suspicious_count", 0)
            else "error" if result.scan_err else "clean")
    return verdicts, time.perf_counter() - started


def table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from importlib.metadata import version

    import picklescan  # noqa: F401 - fail early when it is not installed

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        samples = build(scratch / "malicious", marker=str(scratch / "pwned"))
        paths = [Path(sample.path) for sample in samples]
        ours, our_seconds = weightlint_verdicts(paths)
        theirs, their_seconds = picklescan_verdicts(paths)
        healthy = healthy_files(scratch / "healthy")
        ours_healthy, _ = weightlint_verdicts(healthy)
        theirs_healthy, _ = picklescan_verdicts(healthy)
        ran = (scratch / "pwned").exists()

    by_form: dict[str, Counter] = defaultdict(Counter)
    by_callable: dict[str, Counter] = defaultdict(Counter)
    for sample in samples:
        shown = weightlint.sources.display_path(sample.path)
        for tool, verdicts in (("weightlint", ours), ("picklescan", theirs)):
            caught = verdicts[shown] == "dangerous"
            by_form[sample.form][tool] += caught
            by_callable[f"{sample.module}.{sample.name}"][tool] += caught
        by_form[sample.form]["picklescan-suspicious"] += theirs[shown] == "suspicious"
        by_callable[f"{sample.module}.{sample.name}"]["picklescan-suspicious"] += theirs[shown] == "suspicious"
    per_form = len(CALLABLES) * 6
    form_rows = [[form, f"{by_form[form]['weightlint']}/{per_form}", f"{by_form[form]['picklescan']}/{per_form}",
                  f"{by_form[form]['picklescan-suspicious']}/{per_form}"] for form in FORMATS]
    form_rows.append(["**all**", *(f"{sum(c[tool] for c in by_form.values())}/{len(samples)}"
                                   for tool in ("weightlint", "picklescan", "picklescan-suspicious"))])
    missed_rows = [[name, f"{counts['weightlint']}/30", f"{counts['picklescan']}/30",
                    f"{counts['picklescan-suspicious']}/30"]
                   for name, counts in sorted(by_callable.items()) if counts["picklescan"] < 30 or counts["weightlint"] < 30]
    healthy_rows = [[Path(path).name, ours_healthy[weightlint.sources.display_path(path)],
                     theirs_healthy[weightlint.sources.display_path(path)]] for path in healthy]
    result = {
        "picklescan_version": version("picklescan"),
        "weightlint_version": weightlint.__version__,
        "samples": len(samples), "payload_ran": ran,
        "seconds": {"weightlint": round(our_seconds, 2), "picklescan": round(their_seconds, 2)},
        "caught_by_form": {form: dict(counts) for form, counts in by_form.items()},
        "caught_by_callable": {name: dict(counts) for name, counts in by_callable.items()},
        "healthy": {Path(p).name: {"weightlint": ours_healthy[weightlint.sources.display_path(p)],
                                   "picklescan": theirs_healthy[weightlint.sources.display_path(p)]} for p in healthy},
    }
    out = ROOT / "benchmarks" / "results" / "picklescan.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"picklescan {result['picklescan_version']}; {len(samples)} samples; any payload ran: {ran}; "
          f"seconds: weightlint {our_seconds:.1f}, picklescan {their_seconds:.1f}\n")
    print(table(form_rows, ["form", "weightlint: WL002 error", "picklescan: dangerous",
                            "picklescan: suspicious only"]) + "\n")
    print(table(missed_rows, ["callable (30 samples each)", "weightlint", "picklescan: dangerous",
                              "picklescan: suspicious only"]) + "\n")
    print(table(healthy_rows, ["healthy file", "weightlint", "picklescan"]))


if __name__ == "__main__":
    main()
