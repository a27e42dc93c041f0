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


# -- summaries: what watch and the callbacks keep of the previous checkpoint ----------------------

def summarized_diff(old: dict, new: dict, **settings):
    """The new checkpoint compared with a summary of the old one, as watch and the callbacks do."""
    from weightlint.config import Config
    from weightlint.diff.engine import DiffSession, SummarySession, screening

    first = SummarySession([old], screening(Config()))
    first.run()
    return DiffSession(first.summary, [new], Config(**settings), spectra=False).run()


def test_a_summary_estimates_the_relative_change_and_keeps_the_norm_ratio_exact():
    rng = np.random.default_rng(0)
    old = {"w": (rng.standard_normal((1024, 1024)) * 0.02).astype(np.float32)}
    # An AdamW-like step: sign-like updates of one size, plus weight decay.
    new = {"w": (old["w"] * 0.999 + np.sign(rng.standard_normal(old["w"].shape)) * 2e-5).astype(np.float32)}
    measured = diff(old, new, spectra=False).tensors["w"]["diff"]
    estimated = summarized_diff(old, new).tensors["w"]["diff"]
    assert estimated["estimated"] is True and "estimated" not in measured
    # Norms: float32 dot products of 128 values summed in float64, ~1e-8 from float64 sums.
    assert estimated["l2_norm_ratio"] == pytest.approx(measured["l2_norm_ratio"], rel=1e-7)
    assert estimated["relative_change"] == pytest.approx(measured["relative_change"], rel=0.05)
    assert estimated["cosine"] == pytest.approx(measured["cosine"], abs=1e-5)


def test_a_change_the_sample_missed_is_still_a_change():
    """One row of a 4096×64 embedding changed: most samples miss it, the checksum does not."""
    rng = np.random.default_rng(0)
    old = {"embed.weight": rng.standard_normal((4096, 64)).astype(np.float32)}
    new = {"embed.weight": old["embed.weight"].copy()}
    new["embed.weight"][7, 3] += 0.5  # one value of 262,144
    report = summarized_diff(old, new, rules={"WL705": {"frozen": ["embed.*"]}})
    stats = report.tensors["embed.weight"]["diff"]
    assert stats["changed"] is True and stats["relative_change"] is None
    assert [(f.code, f.tensor, f.severity) for f in report.findings] == [("WL705", "embed.weight", Severity.ERROR)]
    assert "did not reach" in report.findings[0].message
    unchanged = summarized_diff(old, {"embed.weight": old["embed.weight"].copy()}, rules={"WL705": {"frozen": ["embed.*"]}})
    assert unchanged.tensors["embed.weight"]["diff"]["relative_change"] == 0
    assert unchanged.tensors["embed.weight"]["diff"]["changed"] is False
    assert found(unchanged) == {("WL704", None, Severity.INFO)}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64", "float8_e4m3fn"])
def test_tensors_read_in_chunks_equal_whole_tensors(tmp_path, dtype):
    """The one-pass readers (summaries, the exact diff) decode into reused buffers: every chunk
    must equal the matching stretch of the whole tensor, and the summaries must agree."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    from weightlint.diff.summary import summarize, summarize_chunks
    from weightlint.record import TensorRecord
    from weightlint.sources.safetensors_file import read_safetensors
    from weightlint.stats import TensorStats

    path = str(tmp_path / "model.safetensors")
    save_torch({"w": (torch.randn(3001, 7, generator=torch.Generator().manual_seed(0)) * 3).to(getattr(torch, dtype))},
               path)
    record = next(item for item in read_safetensors(path) if isinstance(item, TensorRecord))
    whole = np.asarray(TensorStats.load_values(record)).reshape(-1)
    chunks = [chunk.copy() for chunk in record.chunks(1000)]
    assert [chunk.size for chunk in chunks] == [1000] * 21 + [7]
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    from_chunks, from_whole = summarize_chunks(record, record.chunks(1000)), summarize(record, whole)
    assert from_chunks.checksum == from_whole.checksum
    np.testing.assert_array_equal(from_chunks.sample, from_whole.sample)
    assert from_chunks.l2 == pytest.approx(from_whole.l2, rel=1e-7)  # float32 products of 128 values


def test_a_frozen_tensor_holding_nan_is_unchanged_in_the_summary():
    rng = np.random.default_rng(0)
    old = {"frozen.weight": rng.standard_normal((128, 64)).astype(np.float32)}
    old["frozen.weight"][3, 3] = np.nan
    report = summarized_diff(old, {"frozen.weight": old["frozen.weight"].copy()},
                             rules={"WL705": {"frozen": ["frozen.*"]}})
    assert report.tensors["frozen.weight"]["diff"]["changed"] is False
    assert not [f for f in report.findings if f.code == "WL705"]
