"""What a new user hits in the first hour (issue 13), one test per item.

Every fixture is generated in ``tmp_path`` (also the working directory).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightlint
from weightlint import ExitCode
from weightlint.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def healthy(rows: int = 16, cols: int = 16, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((rows, cols)) * 0.02).astype(np.float32)


def with_nan(seed: int) -> np.ndarray:
    values = healthy(seed=seed)
    values[0, 0] = np.nan
    return values


def test_suppressed_findings_are_counted_in_text_and_listed_in_json(capsys):
    save_file({"a.weight": with_nan(1), "b.weight": with_nan(2)}, "model.safetensors")
    Path("weightlint.yaml").write_text("suppress:\n  - rule: WL100\n    tensor: a.weight\n    reason: known, fixed upstream\n")
    assert main(["model.safetensors"]) == ExitCode.FINDINGS
    text = capsys.readouterr().out
    assert "1 error, 1 suppressed in" in text
    assert "not shown: 1 suppressed by the configuration (" in text
    assert main(["model.safetensors", "--format", "json"]) == ExitCode.FINDINGS
    document = json.loads(capsys.readouterr().out)
    assert [(f["tensor"], f["suppressed_by"]) for f in document["suppressed"]] == [
        ("a.weight", f"known, fixed upstream ({Path('weightlint.yaml').resolve()}:2)")]
    assert document["summary"]["suppressed"] == 1 and document["baselined"] == []


def test_the_header_and_the_json_list_only_the_selected_rules(capsys):
    save_file({"w": healthy()}, "model.safetensors")
    assert main(["model.safetensors", "--select", "WL100,WL5"]) == ExitCode.OK
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rules:"))
    assert header == "rules: 5 of 23 (WL008 WL100 WL501 WL502 WL503)"
    assert main(["model.safetensors", "--select", "WL100", "--format", "json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["rules"] == ["WL008", "WL100"]


def test_tensors_and_findings_are_in_natural_order(capsys):
    save_file({f"blk.{i}.weight": with_nan(i) for i in (0, 1, 2, 10, 11, 20)}, "model.safetensors")
    report = weightlint.check("model.safetensors", select=["WL100"])
    expected = ["blk.0.weight", "blk.1.weight", "blk.2.weight", "blk.10.weight", "blk.11.weight", "blk.20.weight"]
    assert [r.name for r in report.records] == expected
    assert [f.tensor for f in report.findings] == expected
    assert list(report.tensors) == expected
    main(["model.safetensors", "--select", "WL100"])
    shown = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("blk.")]
    assert shown == expected


@pytest.mark.parametrize("contents", [{}, {"config.json": '{"model_type": "bert"}'}, {"README.md": "# a model"}])
def test_a_folder_without_weights_says_what_was_looked_for(contents, capsys):
    Path("empty").mkdir()
    for name, text in contents.items():
        Path("empty", name).write_text(text)
    assert main(["empty"]) == ExitCode.NO_TENSORS
    out = capsys.readouterr().out
    assert ("note: empty: no weight files found in the folder or its subfolders (looked for *.safetensors, *.bin, "
            "*.pt, *.pth, *.ckpt, *.gguf, *.onnx, or a shard index") in out
    assert "no tensors checked in" in out and "no findings" not in out


def test_a_git_lfs_pointer_says_git_lfs_pull():
    Path("model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 90868376\n")
    report = weightlint.check("model.safetensors")
    (finding,) = report.findings
    assert finding.code == "WL001"
    assert finding.message == ("a Git LFS pointer (133 bytes standing for a 90868376-byte file), not the weights: run "
                               "`git lfs pull` (in GitHub Actions: actions/checkout with `lfs: true`)")


def test_every_check_option_is_in_the_readme_table():
    help_text = subprocess.run([sys.executable, "-m", "weightlint", "check", "--help"], capture_output=True,
                               text=True, check=True).stdout
    options = set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", help_text, re.MULTILINE)) - {"--help"}
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("Options of `check`:"):readme.index("### Inputs")]
    missing = sorted(option for option in options if f"`{option}" not in table and f" {option}`" not in table
                     and f"{option}`" not in table)
    assert missing == []
