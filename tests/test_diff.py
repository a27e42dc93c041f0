"""``weightlint diff`` on synthetic pairs of checkpoints with planted changes: each change gives
exactly its finding (tensor, rule, severity), and nothing else fires."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightlint
from weightlint import ExitCode, Severity
from weightlint.cli import main
from weightlint.diff.engine import diff


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def base() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tensors = {f"h.{i}.mlp.weight": (rng.standard_normal((48, 32)) * 0.02).astype(np.float32) for i in range(10)}
    tensors["h.0.mlp.bias"] = np.zeros(48, np.float32)
    return tensors


def trained(tensors: dict[str, np.ndarray], seed: int = 1) -> dict[str, np.ndarray]:
    """One healthy training interval: every tensor moves by about 1 %."""
    rng = np.random.default_rng(seed)
    return {name: (value + rng.standard_normal(value.shape).astype(np.float32) * 2e-4).astype(np.float32)
            for name, value in tensors.items()}


def found(report) -> set[tuple[str, str | None, Severity]]:
    return {(f.code, f.tensor, f.severity) for f in report.findings}


def test_a_healthy_interval_raises_nothing():
    old = base()
    assert found(diff(old, trained(old))) == set()


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.__setitem__("h.3.mlp.weight", t["h.3.mlp.weight"] * 25), ("WL701", "h.3.mlp.weight", Severity.ERROR)),
    (lambda t: t["h.3.mlp.weight"].__setitem__((0, 0), np.nan), ("WL701", "h.3.mlp.weight", Severity.ERROR)),
    (lambda t: t.__setitem__("h.4.mlp.weight", t["h.4.mlp.weight"] * 3), ("WL702", "h.4.mlp.weight", Severity.WARNING)),
    (lambda t: t.__setitem__("h.4.mlp.weight", t["h.4.mlp.weight"] * 0.3), ("WL702", "h.4.mlp.weight", Severity.WARNING)),
    (lambda t: t.pop("h.9.mlp.weight"), ("WL707", "h.9.mlp.weight", Severity.INFO)),
    (lambda t: t.__setitem__("extra.weight", np.ones((4, 4), np.float32)), ("WL707", "extra.weight", Severity.INFO)),
    (lambda t: t.__setitem__("h.5.mlp.weight", t["h.5.mlp.weight"][:40]), ("WL707", "h.5.mlp.weight", Severity.WARNING)),
    (lambda t: t.__setitem__("h.5.mlp.weight", t["h.5.mlp.weight"].astype(np.float16)),
     ("WL707", "h.5.mlp.weight", Severity.WARNING)),
])
def test_each_planted_change_gives_exactly_its_finding(change, expected):
    old = base()
    new = trained(old)
    change(new)
    assert found(diff(old, new)) == {expected}


def test_condition_number_growth():
    old = base()
    new = trained(old)
    u, s, vh = np.linalg.svd(new["h.6.mlp.weight"].astype(np.float64), full_matrices=False)
    s[-1] /= 1e4
    new["h.6.mlp.weight"] = (u @ np.diag(s) @ vh).astype(np.float32)
    assert found(diff(old, new)) == {("WL703", "h.6.mlp.weight", Severity.WARNING)}
    assert found(diff(old, new, spectra=False)) == set()


def test_a_zero_initialized_bias_is_judged_on_its_new_norm_not_an_infinite_ratio():
    old = base()
    new = trained(old)
    new["h.0.mlp.bias"] = np.full(48, 0.5, np.float32)
    report = diff(old, new)
    assert report.tensors["h.0.mlp.bias"]["diff"]["l2_norm_ratio"] is None
    assert found(report) == set()


def test_stagnation_is_one_finding_about_the_model():
    old = base()
    report = diff(old, {name: value.copy() for name, value in old.items()})
    (finding,) = report.findings
    assert (finding.code, finding.tensor, finding.severity, finding.value) == ("WL704", None, Severity.INFO, 1.0)
    assert finding.message.startswith("11 of 11 tensors (100%) did not move")
    # The guide's band on the norm ratio counts a healthy interval as stalled too.
    assert {f.code for f in diff(old, trained(old), profile="guide").findings} == {"WL704"}


def test_frozen_and_trainable_globs():
    old = base()
    new = {name: value.copy() for name, value in old.items()}
    new["h.1.mlp.weight"] = trained(old)["h.1.mlp.weight"]
    rules = {"WL705": {"frozen": ["h.1.*"]}, "WL706": {"trainable": ["re:h\\.[23]\\."]}}
    report = diff(old, new, rules=rules, ignore=["WL704"])
    assert found(report) == {("WL705", "h.1.mlp.weight", Severity.ERROR), ("WL706", "h.2.mlp.weight", Severity.WARNING),
                             ("WL706", "h.3.mlp.weight", Severity.WARNING)}


def test_the_command_line_writes_every_format_and_exits_like_check(capsys):
    old = base()
    new = trained(old)
    new["h.3.mlp.weight"] *= 25
    save_file(old, "old.safetensors")
    save_file(new, "new.safetensors")
    assert main(["diff", "old.safetensors", "new.safetensors", "--format", "json", "--junit-xml", "diff.xml"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["model"]["compared"] == {"old": ["old.safetensors"], "new": ["new.safetensors"]}
    assert [(f["code"], f["tensor"]) for f in document["findings"]] == [("WL701", "h.3.mlp.weight")]
    assert document["tensors"]["h.3.mlp.weight"]["diff"]["l2_norm_ratio"] == pytest.approx(25, rel=1e-3)
    assert "WL701" in document["rules"] and "WL100" not in document["rules"]
    assert "exploding-change" in open("diff.xml").read()
    assert main(["diff", "old.safetensors", "new.safetensors", "--ignore", "WL701", "-q"]) == ExitCode.OK
    assert main(["diff", "old.safetensors", "missing.safetensors"]) == ExitCode.USAGE_ERROR


def test_diff_rules_never_run_in_check():
    report = weightlint.check(base())
    assert not [code for code in report.selected_rules if code.startswith("WL7")]
