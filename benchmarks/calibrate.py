"""Calibrate the default rules on real models: no false alarms on healthy ones, every planted defect caught.

Two parts, each optional:

* **The corpus** (``benchmarks/corpus.yaml``, installed by ``benchmarks/corpus.py``): every model
  is linted with the default rules (``weightlint.check(path, config_file=None)``: no project
  configuration). A healthy published model must have no error, at most 3 warnings, a verdict that
  says deploy, and exit code 0. Every warning and error is listed with the reason it is acceptable,
  from ``benchmarks/calibration_notes.yaml``, or ``UNJUSTIFIED``.
* **Planted defects** (``tests/defects.py``) in real models of several families: MiniLM
  (encoder), CRAFT and CREPE full (CNNs), SmolLM2-135M Q4_1 (decoder LLM). Each model is first
  converted to a float safetensors checkpoint (cached in ``benchmarks/.cache/calibration``),
  linted once unplanted (the base), then once per defect with one mid-depth weight replaced.
  Findings are compared by (code, tensor, severity): a defect is *caught* when a new finding of
  one of its codes, at or above its minimum severity, is on the planted tensor; a *collateral*
  finding is any new warning or error on another tensor (WL502 on the duplicate's source is allowed).

Writes ``docs/calibration.md`` (generated) and ``benchmarks/results/calibration.json``; progress
goes to stderr. Exit status 1 when a corpus model fails a criterion, a defect is missed, or a plant
causes a collateral finding; 2 on a usage error.

    python benchmarks/corpus.py                       # install the corpus once
    python benchmarks/calibrate.py                    # everything (a few minutes on 2 cores)
    python benchmarks/calibrate.py --only minilm --defect nan --output /tmp/c.md --json /tmp/c.json
    python benchmarks/calibrate.py --no-plants        # the corpus only
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402  (a sibling script, not a package)


def _load_defects():
    """``tests/defects.py``, loaded by path (``tests`` is not an installed package)."""
    name = "weightlint_calibration_defects"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "defects.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


defects = _load_defects()
DEFECTS = defects.DEFECTS

NOTES_FILE = HERE / "calibration_notes.yaml"
DEFAULT_OUTPUT = ROOT / "docs" / "calibration.md"
DEFAULT_JSON = HERE / "results" / "calibration.json"
CONVERTER_VERSION = 1  # bump to rebuild every cached base checkpoint
SHARD_BYTES = 128 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf")
SEVERITIES = ("error", "warning", "info")
RANK = {"info": 1, "warning": 2, "error": 3}
MAX_WARNINGS = 3


def calibration_dir() -> Path:
    return Path(os.environ.get("WEIGHTLINT_CALIBRATION_DIR") or HERE / ".cache" / "calibration")


@dataclass(frozen=True)
class PlantTarget:
    """Where defects are planted in one corpus model: a mid-depth weight that is not tied to any
    other tensor, and a tensor of the same shape that ``duplicate`` copies over it."""

    model: str
    family: str
    tensor: str
    duplicate_source: str


PLANT_TARGETS = {
    target.model: target for target in (
        PlantTarget("minilm", "encoder", "encoder.layer.2.attention.self.query.weight",
                    "encoder.layer.3.attention.self.query.weight"),
        # VGG16-BN backbone: conv 3 of stage 3 (512 × 512 × 3 × 3), mid-depth; "module." is stripped.
        PlantTarget("craft", "cnn", "basenet.slice3.27.weight", "basenet.slice4.30.weight"),
        # CREPE: conv3 of 6 (128 × 128 × 64 × 1); conv4 has the same shape.
        PlantTarget("crepe-full", "cnn", "conv3.weight", "conv4.weight"),
        # SmolLM2-135M: block 15 of 30, the query projection (576 × 576); GGUF names are kept.
        PlantTarget("smollm2-q4_1", "decoder", "blk.15.attn_q.weight", "blk.16.attn_q.weight"),
    )
}


# ---------------------------------------------------------------------------------------------
# Running weightlint


def config_fields() -> set[str]:
    from weightlint.config import Config

    return {f.name for f in dataclasses.fields(Config)}


def settings_from(profile: str | None = None, jobs: int | None = None, device: str | None = None) -> dict[str, Any]:
    """``weightlint.check`` settings. ``profile`` only when this weightlint's Config has the field."""
    settings: dict[str, Any] = {}
    if profile is not None:
        if "profile" not in config_fields():
            raise ValueError(f"--profile {profile}: this weightlint's Config has no 'profile' field")
        settings["profile"] = profile
    if jobs is not None:
        settings["jobs"] = jobs
    if device is not None:
        settings["device"] = device
    return settings


def run_weightlint(path: str | os.PathLike, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``weightlint.check`` with the default rules and no configuration file, as plain data.
    An exception (a rule or source crashing) is recorded in ``crash``, never raised."""
    import weightlint
    from weightlint.execution.errors import UsageError

    started = time.perf_counter()
    try:
        report = weightlint.check(os.fspath(path), config_file=None, **(settings or {}))
    except UsageError:
        raise  # bad settings (an unknown profile or device): the harness's usage error, not a result
    except Exception as error:  # a crash is a result to report, not the end of the calibration
        return {"path": os.fspath(path), "crash": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(limit=-4), "seconds": round(time.perf_counter() - started, 3),
                "findings": [], "counts": {s: 0 for s in SEVERITIES}, "exit_code": None,
                "verdict": None, "health_score": None, "tensors": 0}
    summary = report.summary()
    return {
        "path": os.fspath(path),
        "crash": None,
        "seconds": round(time.perf_counter() - started, 3),
        "exit_code": int(report.exit_code),
        "verdict": summary["verdict"],
        "health_score": summary["health_score"],
        "counts": {s: summary["counts"].get(s, 0) for s in SEVERITIES},
        "tensors": len(report.records),
        "device": report.device,
        "notes": list(report.notes),
        "findings": [{"code": f.code, "rule": f.rule, "severity": str(f.severity), "tensor": f.tensor,
                      "file": f.file, "message": f.message} for f in report.findings],
    }


# ---------------------------------------------------------------------------------------------
# Part 1: the corpus


def load_notes(path: str | os.PathLike | None = NOTES_FILE) -> dict[str, list[tuple[str, str, str]]]:
    """``model_id: {"CODE tensor-glob": reason}`` → model → [(code, glob, reason)]. A key without a
    glob matches every tensor of that code; the glob also matches file-level findings by file."""
    if path is None or not Path(path).is_file():
        return {}
    raw = yaml.safe_load(Path(path).read_text()) or {}
    notes: dict[str, list[tuple[str, str, str]]] = {}
    for model_id, entries in raw.items():
        for key, reason in (entries or {}).items():
            code, _, pattern = str(key).strip().partition(" ")
            notes.setdefault(str(model_id), []).append((code.upper(), pattern.strip() or "*", str(reason).strip()))
    return notes


def justification(notes: dict[str, list[tuple[str, str, str]]], model_id: str, finding: dict) -> str | None:
    for code, pattern, reason in notes.get(model_id, []):
        if code != finding["code"]:
            continue
        names = [finding.get("tensor") or "", finding.get("file") or ""]
        if any(fnmatch.fnmatchcase(name, pattern) for name in names if name) or pattern == "*":
            return reason
    return None


def corpus_failures(result: dict[str, Any]) -> list[str]:
    """Why a healthy corpus model fails calibration (empty: it passes)."""
    if result.get("crash"):
        return [f"crashed: {result['crash']}"]
    failures = []
    counts = result["counts"]
    if counts["error"]:
        failures.append(f"{counts['error']} error(s)")
    if counts["warning"] > MAX_WARNINGS:
        failures.append(f"{counts['warning']} warnings > {MAX_WARNINGS}")
    verdict = result["verdict"] or ""
    if not (verdict.startswith("good") or verdict.startswith("deploy")):
        failures.append(f"verdict {verdict!r}")
    if result["exit_code"] != 0:
        failures.append(f"exit code {result['exit_code']}")
    return failures


def run_corpus_model(model: "corpus.CorpusModel", settings: dict[str, Any] | None = None,
                     notes: dict | None = None) -> dict[str, Any]:
    path = corpus.install([model])[model.id]
    result = run_weightlint(path, settings)
    result.update(id=model.id, family=model.family, format=model.format, package=model.requirement)
    result["failures"] = corpus_failures(result)
    notes = load_notes() if notes is None else notes
    for finding in result["findings"]:
        if RANK[finding["severity"]] >= RANK["warning"]:
            finding["justification"] = justification(notes, model.id, finding)
    return result


# ---------------------------------------------------------------------------------------------
# Part 2: base checkpoints (converted once, cached)


def _stamp(source: Path) -> dict[str, Any]:
    status = source.stat()
    return {"converter": CONVERTER_VERSION, "source": str(source), "size": status.st_size,
            "mtime_ns": status.st_mtime_ns}


def _save_safetensors(tensors: dict[str, np.ndarray], folder: Path) -> None:
    """One ``model.safetensors``, or shards of ≤ SHARD_BYTES with ``model.safetensors.index.json``."""
    from safetensors.numpy import save_file

    total = sum(array.nbytes for array in tensors.values())
    if total <= SHARD_BYTES:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes
    weight_map = {}
    for number, shard in enumerate(shards, 1):
        file_name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / file_name), metadata={"format": "pt"})
        weight_map.update({name: file_name for name in shard})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _state_dict_of(loaded: Any) -> dict[str, Any]:
    import torch

    if isinstance(loaded, dict) and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("state_dict", "model", "module"):
            if isinstance(loaded.get(key), dict):
                return _state_dict_of(loaded[key])
    return loaded


def _convert_pth(source: Path, folder: Path) -> None:
    """A PyTorch state dict: its floating tensors as float32, without DataParallel's "module."."""
    import torch

    state = _state_dict_of(torch.load(str(source), weights_only=True, map_location="cpu"))
    tensors = {}
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            clean = name[len("module."):] if name.startswith("module.") else name
            tensors[clean] = tensor.detach().to(torch.float32).contiguous().numpy()
    _save_safetensors(tensors, folder)


def _convert_gguf(source: Path, folder: Path) -> None:
    """A GGUF file: every tensor dequantized to float32 under its GGUF name, PyTorch orientation."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(source))
    tensors = {}
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        kind = tensor.tensor_type.name
        if kind in ("F32", "F16", "BF16", "F64"):
            values = np.asarray(tensor.data)
            if kind == "BF16":
                values = dequantize(values, tensor.tensor_type)
        else:
            values = dequantize(tensor.data, tensor.tensor_type)
        tensors[tensor.name] = np.ascontiguousarray(values, dtype=np.float32).reshape(shape)
    _save_safetensors(tensors, folder)


def _convert_safetensors_folder(source: Path, folder: Path) -> None:
    """A Hugging Face safetensors folder: its top-level non-weight files (config.json …) copied,
    its tensors re-saved unchanged."""
    from safetensors.numpy import load_file

    for item in source.iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and not item.name.endswith(".index.json"):
            shutil.copy2(item, folder / item.name)
    index = source / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    tensors = {}
    for file_name in files:
        tensors.update(load_file(str(source / file_name)))
    _save_safetensors(tensors, folder)


def converter_for(path: Path) -> Callable[[Path, Path], None]:
    if path.is_dir():
        return _convert_safetensors_folder
    if path.suffix == ".gguf":
        return _convert_gguf
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return _convert_pth
    raise ValueError(f"no converter for {path}")


def base_checkpoint(model_id: str, log: Callable[[str], None] = lambda _: None) -> tuple[Path, float, bool]:
    """The float safetensors folder of a corpus model (converted once, then cached): its path, the
    seconds taken, and whether it came from the cache."""
    started = time.perf_counter()
    (model,) = corpus.load_corpus([model_id])
    source = corpus.install([model])[model_id]
    folder = calibration_dir() / model_id
    stamp = _stamp(source)
    marker = folder / ".complete"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return folder, time.perf_counter() - started, True
        except ValueError:
            pass
    log(f"converting {model_id} ({source.name}) to float safetensors in {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=folder.parent))
    try:
        converter_for(source)(source, partial)
        (partial / ".complete").write_text(json.dumps(stamp))
        if folder.exists():
            shutil.rmtree(folder)
        partial.chmod(0o755)
        partial.rename(folder)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return folder, time.perf_counter() - started, False


def _shard_of(folder: Path, tensor: str) -> str:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return json.loads(index.read_text())["weight_map"][tensor]
    return "model.safetensors"


def read_tensor(folder: Path, tensor: str) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(str(folder / _shard_of(folder, tensor)), framework="numpy") as handle:
        return handle.get_tensor(tensor)


def plant(base: Path, tensor: str, values: np.ndarray, destination: Path) -> Path:
    """A copy of the base checkpoint in ``destination`` with ``tensor`` replaced: the shard that
    holds it is rewritten, every other file is a symbolic link to the base."""
    from safetensors.numpy import load_file, save_file

    shard = _shard_of(base, tensor)
    destination.mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        if item.name == ".complete" or item.name == shard:
            continue
        os.symlink(item.resolve(), destination / item.name)
    tensors = load_file(str(base / shard))
    original = tensors[tensor]
    if values.shape != original.shape:
        raise ValueError(f"planted {tensor}: shape {values.shape} != {original.shape}")
    tensors[tensor] = np.ascontiguousarray(values, dtype=original.dtype)
    save_file(tensors, str(destination / shard), metadata={"format": "pt"})
    return destination


# ---------------------------------------------------------------------------------------------
# Part 2: plants


def _keys(findings: list[dict]) -> Counter:
    return Counter((f["code"], f["tensor"], f["severity"]) for f in findings)


def evaluate_plant(base: dict[str, Any], planted: dict[str, Any], defect: str, target: PlantTarget) -> dict[str, Any]:
    """Compare a planted run with its base run, by (code, tensor, severity)."""
    spec = DEFECTS[defect]
    minimum = RANK[spec.severity]
    if planted.get("crash"):
        return {"status": "crash", "caught_by": [], "collateral": [], "on_tensor": [], "pre_existing": [],
                "removed_elsewhere": [], "crash": planted["crash"]}
    before, after = _keys(base["findings"]), _keys(planted["findings"])
    added = after - before
    removed = before - after
    messages = {(f["code"], f["tensor"], f["severity"]): f["message"] for f in planted["findings"]}
    base_messages = {(f["code"], f["tensor"], f["severity"]): f["message"] for f in base["findings"]}

    def entry(key: tuple, text: dict) -> dict:
        return {"code": key[0], "tensor": key[1], "severity": key[2], "message": text.get(key, "")}

    on_tensor = sorted((k for k in added if k[1] == target.tensor), key=lambda k: (-RANK[k[2]], k[0]))
    caught_by = [k for k in on_tensor if k[0] in spec.codes and RANK[k[2]] >= minimum]
    pre_existing = [k for k in after if k[1] == target.tensor and k[0] in spec.codes
                    and RANK[k[2]] >= minimum and k not in added]
    allowed = {("WL502", target.duplicate_source)} if defect == "duplicate" else set()
    collateral = sorted((k for k in added if k[1] != target.tensor and RANK[k[2]] >= RANK["warning"]
                         and (k[0], k[1]) not in allowed), key=lambda k: (str(k[1]), k[0]))
    removed_elsewhere = sorted((k for k in removed if k[1] != target.tensor), key=lambda k: (str(k[1]), k[0]))
    return {
        "status": "caught" if caught_by else "missed",
        "caught_by": [entry(k, messages) for k in caught_by],
        "on_tensor": [entry(k, messages) for k in on_tensor],
        "pre_existing": [entry(k, messages) for k in pre_existing],
        "collateral": [entry(k, messages) for k in collateral],
        "removed_elsewhere": [entry(k, base_messages) for k in removed_elsewhere],
    }


def planted_values(base: Path, target: PlantTarget, defect: str, seed: int = 0) -> np.ndarray:
    original = read_tensor(base, target.tensor).astype(np.float32)
    generate = DEFECTS[defect].generate
    if defect == "duplicate":
        return generate(original, read_tensor(base, target.duplicate_source).astype(np.float32), seed=seed)
    return generate(original, seed=seed)


def run_plant(base_folder: Path, base_result: dict[str, Any], target: PlantTarget, defect: str,
              settings: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Plant one defect in a temporary copy of the base checkpoint, lint it, compare with the base."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"weightlint-plant-{target.model}-{defect}-") as temp:
        folder = plant(base_folder, target.tensor, planted_values(base_folder, target, defect, seed), Path(temp) / "model")
        prepared = time.perf_counter() - started
        result = run_weightlint(folder, settings)
    outcome = evaluate_plant(base_result, result, defect, target)
    outcome.update(model=target.model, family=target.family, defect=defect, tensor=target.tensor,
                   expected=sorted(DEFECTS[defect].codes), min_severity=DEFECTS[defect].severity,
                   counts=result["counts"], lint_seconds=result["seconds"], prepare_seconds=round(prepared, 3),
                   seconds=round(time.perf_counter() - started, 3))
    if defect == "duplicate":
        outcome["duplicate_source"] = target.duplicate_source
    return outcome


def plant_failures(outcome: dict[str, Any]) -> list[str]:
    """A plant fails when the run crashed or added warnings elsewhere; a miss on one model is judged
    by :func:`recall_failures`, across families."""
    failures = []
    if outcome["status"] == "crash":
        failures.append(f"crashed: {outcome.get('crash')}")
    if outcome["collateral"]:
        failures.append(f"{len(outcome['collateral'])} collateral finding(s)")
    return failures


def recall_failures(outcomes: list[dict[str, Any]]) -> list[str]:
    """Every defect must be caught on at least one planted model of every family planted (an
    encoder, a CNN, a decoder LLM): the issue's recall criterion. A miss on a second model of a
    family is reported in the matrix, not failed."""
    failures = []
    for defect in dict.fromkeys(o["defect"] for o in outcomes):
        runs = [o for o in outcomes if o["defect"] == defect]
        for family in dict.fromkeys(o["family"] for o in runs):
            if not any(o["status"] == "caught" for o in runs if o["family"] == family):
                models = ", ".join(o["model"] for o in runs if o["family"] == family)
                failures.append(f"plant {defect}: missed on every {family} ({models})")
    return failures


# ---------------------------------------------------------------------------------------------
# Reports


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _finding_line(finding: dict) -> str:
    where = finding.get("tensor") or finding.get("file") or "(model)"
    return f"{finding['code']} {finding['severity']} `{where}`"


def _versions() -> dict[str, str]:
    import importlib.metadata

    versions = {"python": platform.python_version()}
    for name in ("weightlint", "numpy", "scipy", "torch", "safetensors", "gguf", "onnx", "transformers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}{' (uncommitted changes)' if dirty else ''}" if commit else None


def render_markdown(results: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add("# Calibration of the default rules")
    add("")
    add("<!-- Generated by benchmarks/calibrate.py: do not edit by hand. -->")
    add(f"Generated by `{results['command']}` on {results['date']} — do not edit by hand; rerun it. "
        "Raw results: `benchmarks/results/calibration.json`; the harness and its criteria: "
        "[benchmarks/README.md](../benchmarks/README.md#calibration-calibratepy).")
    add("")
    env = results["environment"]
    add(f"weightlint {env['versions'].get('weightlint', '?')} (commit {env.get('commit') or '?'}), "
        f"numpy {env['versions'].get('numpy', '?')}, Python {env['versions']['python']}, "
        f"{env['cores']} cores, {env['machine']}; settings: {results['settings'] or 'defaults'}.")
    add("")
    failures = results["failures"]
    add(f"**Result: {'PASS' if not failures else f'FAIL ({len(failures)} failure(s))'}.**")
    add("")
    for failure in failures:
        add(f"- {failure}")
    if failures:
        add("")

    corpus_results = results.get("corpus") or []
    if corpus_results:
        add("## (a) Healthy corpus models, default rules")
        add("")
        add(f"Criteria: no error, at most {MAX_WARNINGS} warnings, a verdict that says deploy, exit code 0. "
            "Every warning and error needs a justification in `benchmarks/calibration_notes.yaml`.")
        add("")
        add("| model | family | format | tensors | exit | verdict | score | errors | warnings | info | s | result |")
        add("|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
        for r in corpus_results:
            c = r["counts"]
            result = "pass" if not r["failures"] else "FAIL: " + "; ".join(r["failures"])
            add(f"| {r['id']} | {r['family']} | {_cell(r['format'])} | {r.get('tensors', '—')} | {r['exit_code'] if r['exit_code'] is not None else '—'} "
                f"| {r['verdict'] or '—'} | {r['health_score'] if r['health_score'] is not None else '—'} "
                f"| {c['error']} | {c['warning']} | {c['info']} | {r['seconds']:.1f} | {_cell(result)} |")
        add("")
        codes = sorted({f["code"] for r in corpus_results for f in r["findings"]})
        if codes:
            add("Findings per rule, `errors/warnings/info`:")
            add("")
            add("| model | " + " | ".join(codes) + " |")
            add("|---|" + "---:|" * len(codes))
            for r in corpus_results:
                per = {code: Counter() for code in codes}
                for f in r["findings"]:
                    per[f["code"]][f["severity"]] += 1
                cells = [(f"{p['error']}/{p['warning']}/{p['info']}" if sum(p.values()) else "") for p in per.values()]
                add(f"| {r['id']} | " + " | ".join(cells) + " |")
            add("")
        add("### Warnings and errors")
        add("")
        for r in corpus_results:
            serious = [f for f in r["findings"] if RANK[f["severity"]] >= RANK["warning"]]
            if r.get("crash"):
                add(f"**{r['id']}** crashed: `{_cell(r['crash'])}`")
                add("")
                continue
            if not serious:
                continue
            unjustified = sum(1 for f in serious if not f.get("justification"))
            add(f"**{r['id']}** ({len(serious)}; {unjustified} unjustified)")
            add("")
            for f in serious:
                reason = f.get("justification") or "**UNJUSTIFIED**"
                add(f"- {_finding_line(f)}: {f['message']} — *{reason}*" if f.get("justification")
                    else f"- {_finding_line(f)}: {f['message']} — {reason}")
            add("")

    plants = results.get("plants") or []
    if plants:
        models = list(dict.fromkeys(p["model"] for p in plants))
        families = {p["model"]: p["family"] for p in plants}
        names = list(dict.fromkeys(p["defect"] for p in plants))
        by = {(p["defect"], p["model"]): p for p in plants}
        add("## (b) Recall on planted defects")
        add("")
        add("One tensor per model is replaced (`tests/defects.py`), and the findings are compared with "
            "the unplanted model's by (code, tensor, severity). A cell names the new findings of an "
            "expected code on the planted tensor at or above the defect's minimum severity; "
            "*collateral* counts new warnings and errors on other tensors.")
        add("")
        add("Planted tensors: " + "; ".join(
            f"{m} (`{PLANT_TARGETS[m].tensor}`, duplicate of `{PLANT_TARGETS[m].duplicate_source}`)"
            for m in models if m in PLANT_TARGETS) + ".")
        add("")
        add("| defect | expected (any of) | " + " | ".join(f"{m} ({families[m]})" for m in models) + " |")
        add("|---|---|" + "---|" * len(models))
        for name in names:
            spec = DEFECTS[name]
            cells = []
            for m in models:
                p = by.get((name, m))
                if p is None:
                    cells.append("")
                    continue
                if p["status"] == "crash":
                    text = "CRASH"
                elif p["caught_by"]:
                    text = " + ".join(f"{f['code']} {f['severity']}" for f in p["caught_by"])
                else:
                    text = "**missed**"
                if p["collateral"]:
                    text += f" ⚠ collateral ({len(p['collateral'])})"
                cells.append(text)
            add(f"| {name} | {' / '.join(sorted(spec.codes))} ≥ {spec.severity} | " + " | ".join(cells) + " |")
        add("")
        problems = [p for p in plants if p["status"] != "caught" or p["collateral"]]
        if problems:
            add("### Misses and collateral findings")
            add("")
            for p in problems:
                add(f"**{p['defect']} in {p['model']}** (`{p['tensor']}`): {', '.join(plant_failures(p))}")
                add("")
                if p["status"] == "missed":
                    if p["on_tensor"]:
                        add("- new findings on the planted tensor: " + "; ".join(
                            f"{f['code']} {f['severity']} ({f['message']})" for f in p["on_tensor"]))
                    else:
                        add("- no new finding on the planted tensor")
                    for f in p["pre_existing"]:
                        add(f"- already in the unplanted model: {f['code']} {f['severity']} ({f['message']})")
                for f in p["collateral"]:
                    add(f"- collateral: {_finding_line(f)}: {f['message']}")
                add("")

    timings = results["timings"]
    add("## (c) Timings")
    add("")
    load = env.get("load_average")
    add(f"Total {timings['total']:.1f} s wall on {env['cores']} cores"
        + (f"; 1-minute load average {load['start']:.1f} at the start, {load['end']:.1f} at the end "
           "(above the core count, other processes were competing and every time is inflated)" if load else "")
        + ".")
    add("")
    add("| part | s |")
    add("|---|---:|")
    for part in ("corpus", "convert", "base", "plants"):
        if part in timings:
            add(f"| {part} | {timings[part]:.1f} |")
    add("")
    if plants or results.get("bases"):
        add("| planted model | convert s | base lint s | plants | plant s total | plant s mean |")
        add("|---|---:|---:|---:|---:|---:|")
        for m, base in (results.get("bases") or {}).items():
            own = [p for p in plants if p["model"] == m]
            total = sum(p["seconds"] for p in own)
            add(f"| {m} | {base['convert_seconds']:.1f}{' (cached)' if base['cached'] else ''} "
                f"| {base['result']['seconds']:.1f} | {len(own)} | {total:.1f} | {total / len(own) if own else 0:.1f} |")
        add("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Main


def log(message: str) -> None:
    print(f"[calibrate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _summarise(result: dict[str, Any]) -> str:
    if result.get("crash"):
        return f"CRASH {result['crash']}"
    c = result["counts"]
    return (f"{result['seconds']:.1f} s: {c['error']} errors, {c['warning']} warnings, {c['info']} info, "
            f"exit {result['exit_code']}, {result['verdict']}")


def base_run(model_id: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    folder, convert_seconds, cached = base_checkpoint(model_id, log)
    result = run_weightlint(folder, settings)
    return {"folder": str(folder), "convert_seconds": round(convert_seconds, 3), "cached": cached, "result": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="MODEL", help="a corpus model id (repeatable)")
    parser.add_argument("--defect", action="append", metavar="NAME", choices=list(DEFECTS),
                        help="a defect of tests/defects.py (repeatable; default all)")
    parser.add_argument("--no-plants", action="store_true", help="skip the planted defects")
    parser.add_argument("--no-corpus", action="store_true", help="skip the healthy corpus")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="the Markdown report (default docs/calibration.md)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), metavar="PATH",
                        help="the raw results (default benchmarks/results/calibration.json)")
    parser.add_argument("--notes", default=str(NOTES_FILE), help="justifications (default benchmarks/calibration_notes.yaml)")
    parser.add_argument("--profile", help="weightlint's Config(profile=...), when this weightlint has that field")
    parser.add_argument("--jobs", type=int, help="weightlint's --jobs (default: its own)")
    parser.add_argument("--device", help="weightlint's --device (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the defect generators (default 0)")
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args.profile, args.jobs, args.device)
    except ValueError as error:
        parser.error(str(error))
    models = corpus.load_corpus(args.only)
    names = args.defect or list(DEFECTS)
    try:
        from weightlint.execution.errors import UsageError
        from weightlint.config import Config

        if settings:  # fail fast on settings weightlint rejects, before any model is read
            from weightlint.execution.session import Session

            Session([], Config(**settings))
    except (UsageError, TypeError, ValueError) as error:
        parser.error(f"weightlint rejects {settings}: {error}")
    notes = load_notes(args.notes)
    started = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results: dict[str, Any] = {
        "command": "python benchmarks/calibrate.py" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": settings,
        "environment": {"versions": _versions(), "commit": _git_commit(), "cores": len(os.sched_getaffinity(0))
                        if hasattr(os, "sched_getaffinity") else os.cpu_count(), "machine": f"{platform.machine()} {platform.system()}"},
        "criteria": {"max_warnings": MAX_WARNINGS},
        "corpus": [], "bases": {}, "plants": [], "failures": [], "timings": {},
    }
    failures = results["failures"]

    if not args.no_corpus:
        part = time.perf_counter()
        for number, model in enumerate(models, 1):
            log(f"corpus {number}/{len(models)} {model.id} …")
            result = run_corpus_model(model, settings, notes)
            log(f"corpus {number}/{len(models)} {model.id}: {_summarise(result)}"
                + (f" — FAIL: {'; '.join(result['failures'])}" if result["failures"] else ""))
            results["corpus"].append(result)
            failures.extend(f"corpus {model.id}: {failure}" for failure in result["failures"])
        results["timings"]["corpus"] = round(time.perf_counter() - part, 3)

    if not args.no_plants:
        targets = [PLANT_TARGETS[m.id] for m in models if m.id in PLANT_TARGETS]
        convert_total = base_total = plants_total = 0.0
        for target in targets:
            log(f"plants {target.model}: base checkpoint …")
            base = base_run(target.model, settings)
            results["bases"][target.model] = base
            convert_total += base["convert_seconds"]
            base_total += base["result"]["seconds"]
            log(f"plants {target.model}: base {'(cached) ' if base['cached'] else ''}{_summarise(base['result'])}")
            if base["result"].get("crash"):
                failures.append(f"plants {target.model}: the unplanted base crashed: {base['result']['crash']}")
            for number, name in enumerate(names, 1):
                outcome = run_plant(Path(base["folder"]), base["result"], target, name, settings, args.seed)
                plants_total += outcome["seconds"]
                results["plants"].append(outcome)
                caught = ", ".join(f"{f['code']} {f['severity']}" for f in outcome["caught_by"]) or outcome["status"].upper()
                problems = plant_failures(outcome)
                log(f"plants {target.model} {number}/{len(names)} {name}: {caught} ({outcome['seconds']:.1f} s)"
                    + (f" — FAIL: {'; '.join(problems)}" if problems else ""))
                failures.extend(f"plant {name} in {target.model}: {problem}" for problem in problems)
        failures.extend(recall_failures(results["plants"]))
        results["timings"].update(convert=round(convert_total, 3), base=round(base_total, 3), plants=round(plants_total, 3))

    results["timings"]["total"] = round(time.perf_counter() - started, 3)
    if hasattr(os, "getloadavg"):
        results["environment"]["load_average"] = {"start": load_start, "end": os.getloadavg()[0]}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(render_markdown(results) + "\n")
    log(f"done in {results['timings']['total']:.1f} s: {len(failures)} failure(s); wrote {args.output} and {args.json}")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
