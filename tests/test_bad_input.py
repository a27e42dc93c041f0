"""Bad input: unreadable files (WL001), unsafe pickles (WL002) and shard indexes that lie (WL006).

A bad file gives exactly one finding naming it, never a traceback, and the other files of the same
run are still scanned. Every fixture is generated in ``tmp_path`` (also the working directory).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.engine_helpers import CLI_SELECT, SELECT, check, weights  # noqa: F401
from weightlint import ExitCode, Severity

NAN = float("nan")
GOOD = "good.safetensors"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)



def make_good() -> str:
    """A readable file with one planted NaN at [1, 2] and one zero row 0."""
    bad = weights(3, 4)
    bad[1, 2] = NAN
    dead = weights(2, 2, seed=1)
    dead[0] = 0
    save_file({"good.weight": bad, "good.dead": dead}, GOOD)
    return GOOD


def assert_good_scanned(report) -> None:
    nan = [f for f in report.findings if f.code == "WL100"]
    assert len(nan) == 1
    assert (nan[0].file, nan[0].tensor, nan[0].location) == (GOOD, "good.weight", {"index": [1, 2]})
    dead = [f for f in report.findings if f.code == "WL501"]
    assert len(dead) == 1
    assert (dead[0].file, dead[0].tensor, dead[0].location) == (GOOD, "good.dead", {"rows": [0], "columns": []})
    assert {r.name for r in report.records if r.file == GOOD} == {"good.weight", "good.dead"}


def file_findings(report, path: str) -> list:
    return [f for f in report.findings if f.file == path]


# -- generated bad files --------------------------------------------------------------------------

def truncated_safetensors() -> str:
    save_file({"w": weights(16, 16)}, "full.safetensors")
    data = Path("full.safetensors").read_bytes()
    Path("truncated.safetensors").write_bytes(data[:-100])
    os.remove("full.safetensors")
    return "truncated.safetensors"


def garbage_header() -> str:
    junk = b"this is not json at all!"
    Path("garbage.safetensors").write_bytes(struct.pack("<Q", len(junk)) + junk + b"\0" * 64)
    return "garbage.safetensors"


def header_not_object() -> str:
    header = b"[1, 2, 3]"
    Path("list_header.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return "list_header.safetensors"


def header_too_long() -> str:
    header = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
    Path("long_header.safetensors").write_bytes(struct.pack("<Q", 1_000_000) + header + b"\0" * 8)
    return "long_header.safetensors"


def bad_offsets() -> str:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    Path("bad_offsets.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    return "bad_offsets.safetensors"


def zero_byte_safetensors() -> str:
    Path("empty.safetensors").write_bytes(b"")
    return "empty.safetensors"


def zero_byte_bin() -> str:
    Path("empty.bin").write_bytes(b"")
    return "empty.bin"


def random_bin() -> str:
    Path("random.bin").write_bytes(random.Random(1234).randbytes(4096))
    return "random.bin"


def lfs_pointer_bin() -> str:
    Path("pytorch_model.bin").write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 440473133\n")
    return "pytorch_model.bin"


def plain_list_pickle() -> str:
    with open("list.pt", "wb") as handle:
        pickle.dump([1, 2, 3], handle)
    return "list.pt"


def plain_list_pickle_protocol2() -> str:
    with open("list2.pkl", "wb") as handle:
        pickle.dump([1.0, "two"], handle, protocol=2)
    return "list2.pkl"


def torch_saved_list() -> str:
    torch.save([1, 2, 3], "tlist.pth")
    return "tlist.pth"


def torch_saved_scalars() -> str:
    torch.save({"epoch": 3, "lr": 0.1}, "no_tensors.ckpt")
    return "no_tensors.ckpt"


def zip_not_torch() -> str:
    with zipfile.ZipFile("archive.pt", "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    return "archive.pt"


def truncated_gguf_bytes() -> bytes:
    """A GGUF v3 header announcing one 4×4 F32 tensor (64 bytes) followed by only 10 data bytes."""
    name = b"w"
    header = (b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + struct.pack("<Q", len(name)) + name
              + struct.pack("<I", 2) + struct.pack("<QQ", 4, 4) + struct.pack("<IQ", 0, 0))
    header += b"\0" * (-len(header) % 32)
    return header + b"\1" * 10


def gguf_file() -> str:
    Path("model.gguf").write_bytes(truncated_gguf_bytes())
    return "model.gguf"


def gguf_magic_unknown_suffix() -> str:
    Path("model.q4").write_bytes(truncated_gguf_bytes())
    return "model.q4"


def unknown_extension_junk() -> str:
    Path("weights.xyz").write_bytes(b"hello, these are not weights\n" * 20)
    return "weights.xyz"


BAD_FILES = {
    truncated_safetensors: "truncated",
    garbage_header: "bad header",
    header_not_object: "not a JSON object",
    header_too_long: "exceeds the file size",
    bad_offsets: "not a valid safetensors file",
    zero_byte_safetensors: "shorter than the 8-byte",
    zero_byte_bin: "not a PyTorch checkpoint",
    random_bin: "not a PyTorch checkpoint",
    lfs_pointer_bin: "a Git LFS pointer (134 bytes standing for a 440473133-byte file), not the weights: run `git lfs pull`",
    plain_list_pickle: "not a PyTorch checkpoint",
    plain_list_pickle_protocol2: "not a PyTorch checkpoint",
    torch_saved_list: "no tensors found",
    torch_saved_scalars: "no tensors found",
    zip_not_torch: "not a PyTorch checkpoint",
    gguf_file: "not a valid GGUF file: truncated",
    gguf_magic_unknown_suffix: "not a valid GGUF file: truncated",
    unknown_extension_junk: "unrecognized file format",
}


@pytest.mark.parametrize("make_bad, reason", list(BAD_FILES.items()), ids=[f.__name__ for f in BAD_FILES])
def test_unreadable_file_one_wl001_and_others_still_scanned(make_bad, reason):
    bad = make_bad()
    good = make_good()
    report = check(bad, good)

    errors = [f for f in report.findings if f.code == "WL001"]
    assert len(errors) == 1, [f.to_dict() for f in report.findings]
    error = errors[0]
    assert error.file == bad
    assert error.severity == Severity.ERROR
    assert error.rule == "unreadable-file"
    assert error.tensor is None
    assert reason in error.message, error.message
    assert "Traceback" not in error.message
    assert "\n" not in error.message
    assert file_findings(report, bad) == [error]
    assert [r for r in report.records if r.file == bad] == []
    assert report.exit_code == ExitCode.FINDINGS
    assert_good_scanned(report)


def test_plain_pickle_message_says_what_it_is():
    report = check(plain_list_pickle())
    (error,) = report.findings
    assert error.message == "not a PyTorch checkpoint: a plain Python pickle, not a file written by torch.save"


def test_gguf_message():
    report = check(gguf_file())
    (error,) = report.findings
    assert error.code == "WL001"
    assert error.message == ("not a valid GGUF file: truncated: the file is 106 bytes but its tensor data runs "
                             "to byte 160 (1 of 1 tensors cut off, first 'w')")
    assert report.exit_code == ExitCode.FINDINGS


def test_bad_file_alone_exit_code_is_findings_not_no_tensors():
    report = check(truncated_safetensors())
    assert report.records == []
    assert [f.code for f in report.findings] == ["WL001"]
    assert report.exit_code == ExitCode.FINDINGS


def test_bad_file_inside_folder_with_good_subfolder():
    Path("zoo/broken").mkdir(parents=True)
    Path("zoo/broken/model.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{not json}")
    Path("zoo/fine").mkdir()
    save_file({"fine.w": weights(2, 2)}, "zoo/fine/model.safetensors")
    report = check("zoo")
    assert [(f.code, f.file) for f in report.findings] == [("WL001", "zoo/broken/model.safetensors")]
    assert [(r.name, r.file) for r in report.records] == [("fine.w", "zoo/fine/model.safetensors")]


def test_unreadable_index_json():
    Path("m").mkdir()
    Path("m/model.safetensors.index.json").write_text("{ this is not json")
    good = make_good()
    report = check("m", good)
    errors = [f for f in report.findings if f.code == "WL001"]
    assert len(errors) == 1
    assert errors[0].file == "m/model.safetensors.index.json"
    assert "index is not valid JSON" in errors[0].message
    assert_good_scanned(report)


def test_index_without_weight_map():
    Path("m").mkdir()
    Path("m/pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}}))
    report = check("m")
    (error,) = report.findings
    assert (error.code, error.file) == ("WL001", "m/pytorch_model.bin.index.json")
    assert "weight_map" in error.message


def test_cli_bad_files_no_traceback(cli, tmp_path):
    bad = [make() for make in BAD_FILES]
    good = make_good()
    result = cli(*bad, good, "--format", "json", *CLI_SELECT, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    unreadable = [f for f in document["findings"] if f["code"] == "WL001"]
    assert sorted(f["file"] for f in unreadable) == sorted(bad)
    assert all(f["severity"] == "error" for f in unreadable)
    assert {f["code"] for f in document["findings"] if f["file"] == good} == {"WL100", "WL501"}
    assert sorted(document["tensors"]) == ["good.dead", "good.weight"]

    text = cli(*bad, good, *CLI_SELECT, cwd=tmp_path)
    assert text.returncode == 1
    assert "Traceback" not in text.stderr + text.stdout
    for path in bad:
        assert path in text.stdout
    assert "WL001" in text.stdout and "WL100" in text.stdout


# -- WL002 unsafe pickles -------------------------------------------------------------------------

class TouchFile:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class OpenFile:
    """Unpickling this would create (truncate) a file through ``open``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux and macOS
OPEN = f"{open.__module__}.open"  # io.open


def _torch_zip(payload, path):
    torch.save({"w": torch.zeros(2), "payload": payload}, path)


def _torch_legacy(payload, path):
    torch.save({"w": torch.zeros(2), "payload": payload}, path, _use_new_zipfile_serialization=False)


def _pickle_default(payload, path):
    with open(path, "wb") as handle:
        pickle.dump({"payload": payload}, handle)


def _pickle_protocol(protocol):
    def dump(payload, path):
        with open(path, "wb") as handle:
            pickle.dump({"payload": payload}, handle, protocol=protocol)
    dump.__name__ = f"pickle_protocol{protocol}"
    return dump


WRITERS = [_torch_zip, _torch_legacy, _pickle_default, _pickle_protocol(0), _pickle_protocol(2),
           _pickle_protocol(5)]


@pytest.mark.parametrize("payload, global_name", [(TouchFile, SYSTEM), (OpenFile, OPEN)], ids=["os.system", "open"])
@pytest.mark.parametrize("write", WRITERS, ids=[w.__name__.strip("_") for w in WRITERS])
@pytest.mark.parametrize("suffix", [".bin", ".pt"])
def test_unsafe_pickle_is_reported_and_never_executed(tmp_path, payload, global_name, write, suffix):
    pwned = tmp_path / "pwned"
    evil = f"evil{suffix}"
    write(payload(str(pwned)), evil)
    assert not pwned.exists()
    good = make_good()

    report = check(evil, good)

    assert not pwned.exists(), "the pickle's payload ran"
    unsafe = file_findings(report, evil)
    assert len(unsafe) == 1, [f.to_dict() for f in report.findings]
    (finding,) = unsafe
    assert finding.code == "WL002"
    assert finding.rule == "unsafe-pickle"
    assert finding.severity == Severity.ERROR
    assert finding.tensor is None
    assert global_name in finding.message
    assert "not executed" in finding.message
    assert finding.extra["globals"] == [global_name]
    assert [r for r in report.records if r.file == evil] == []
    assert report.exit_code == ExitCode.FINDINGS
    assert_good_scanned(report)


def test_unsafe_pickle_names_os_system_for_readers():
    _pickle_default(TouchFile("/nonexistent/never"), "evil.bin")
    (finding,) = check("evil.bin").findings
    assert finding.code == "WL002"
    if SYSTEM != "os.system":
        assert f"{SYSTEM} (os.system)" in finding.message


def test_hand_written_protocol0_exec_pickle(tmp_path):
    pwned = tmp_path / "pwned"
    source = f"open({str(pwned)!r}, 'w').close()"
    Path("exec.pt").write_bytes(b"cbuiltins\nexec\n(V" + source.encode() + b"\ntR.")
    report = check("exec.pt")
    assert not pwned.exists()
    (finding,) = report.findings
    assert finding.code == "WL002"
    assert finding.message == "loading would import or call builtins.exec; not executed"


def test_two_globals_from_the_same_module_are_both_named(tmp_path):
    class Remove:
        def __reduce__(self):
            return (os.remove, (str(tmp_path / "victim"),))

    (tmp_path / "victim").write_text("keep me")
    with open("two.bin", "wb") as handle:
        pickle.dump([TouchFile(str(tmp_path / "pwned")), Remove()], handle)  # module string memoized
    report = check("two.bin")
    assert (tmp_path / "victim").exists()
    assert not (tmp_path / "pwned").exists()
    (finding,) = report.findings
    assert finding.code == "WL002"
    assert finding.extra["globals"] == [SYSTEM, f"{os.remove.__module__}.remove"]


class TrainingConfig:
    """A class of 'training code' pickled into a checkpoint: loading would import it."""

    def __init__(self) -> None:
        self.lr = 0.1


def test_checkpoint_with_a_custom_class_is_unsafe():
    torch.save({"state_dict": {"w": weights(2, 2)}, "config": TrainingConfig()}, "custom.ckpt")
    report = check("custom.ckpt")
    (finding,) = report.findings
    assert finding.code == "WL002"
    assert "TrainingConfig" in finding.message
    assert report.records == []


def test_whole_module_pickled_names_its_classes():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.LayerNorm(2),
                                torch.nn.Dropout(), torch.nn.GELU(), torch.nn.Tanh())
    torch.save(model, "full_model.pt")
    report = check("full_model.pt")
    (finding,) = report.findings
    assert finding.code == "WL002"
    assert finding.message.startswith("loading would import or call torch.nn.modules.container.Sequential, ")
    assert finding.message.endswith(" and 2 more; not executed")
    assert finding.extra["globals"] == [
        "torch.nn.modules.container.Sequential", "torch.nn.modules.linear.Linear",
        "torch.nn.modules.activation.ReLU", "torch.nn.modules.normalization.LayerNorm",
        "torch.nn.modules.dropout.Dropout", "torch.nn.modules.activation.GELU",
        "torch.nn.modules.activation.Tanh",
    ]  # plain containers (builtins.set, collections.OrderedDict) are not unsafe


def test_cli_unsafe_pickle(cli, tmp_path):
    pwned = tmp_path / "pwned"
    _pickle_default(TouchFile(str(pwned)), "evil.bin")
    _torch_zip(OpenFile(str(tmp_path / "opened")), "evil2.pt")
    good = make_good()
    result = cli("evil.bin", "evil2.pt", good, "--format", "json", *CLI_SELECT, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not pwned.exists()
    assert not (tmp_path / "opened").exists()
    document = json.loads(result.stdout)
    unsafe = sorted((f["file"], f["severity"]) for f in document["findings"] if f["code"] == "WL002")
    assert unsafe == [("evil.bin", "error"), ("evil2.pt", "error")]
    messages = {f["file"]: f["message"] for f in document["findings"] if f["code"] == "WL002"}
    assert SYSTEM in messages["evil.bin"]
    assert OPEN in messages["evil2.pt"]
    assert {f["code"] for f in document["findings"] if f["file"] == good} == {"WL100", "WL501"}


# -- WL006 index mismatch -------------------------------------------------------------------------

def _save(fmt: str, path: str, tensors: dict) -> None:
    if fmt == "safetensors":
        save_file(tensors, path)
    else:
        torch.save(tensors, path)


def _sharded(fmt: str, shards: dict[str, dict], weight_map: dict[str, str]) -> str:
    Path("m").mkdir()
    for name, tensors in shards.items():
        _save(fmt, f"m/{name}", tensors)
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    Path(f"m/{index}").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return f"m/{index}"


def _shard_names(fmt: str) -> tuple[str, str]:
    ext = "safetensors" if fmt == "safetensors" else "bin"
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    return f"{stem}-00001-of-00002.{ext}", f"{stem}-00002-of-00002.{ext}"


@pytest.fixture(params=["safetensors", "pytorch"])
def fmt(request):
    return request.param


def test_index_names_missing_shard(fmt):
    shard1, shard2 = _shard_names(fmt)
    index = _sharded(fmt, {shard1: {"a.weight": weights(2, 2)}},
                     {"a.weight": shard1, "b.weight": shard2, "c.weight": shard2})
    good = make_good()
    report = check("m", good)

    mismatch = [f for f in report.findings if f.code == "WL006"]
    assert len(mismatch) == 1, [f.to_dict() for f in report.findings]
    (finding,) = mismatch
    assert finding.severity == Severity.ERROR
    assert finding.rule == "index-mismatch"
    assert finding.file == index
    assert finding.tensor is None
    assert shard2 in finding.message
    assert "does not exist" in finding.message
    assert finding.extra["shard"] == shard2
    assert finding.extra["tensors"] == 2
    assert [f for f in report.findings if f.code == "WL001"] == []
    assert [(r.name, r.file) for r in report.records if r.file != good] == [("a.weight", f"m/{shard1}")]
    assert report.exit_code == ExitCode.FINDINGS
    assert_good_scanned(report)


def test_index_maps_tensor_to_shard_that_lacks_it(fmt):
    shard1, shard2 = _shard_names(fmt)
    index = _sharded(fmt, {shard1: {"a.weight": weights(2, 2)}, shard2: {"c.weight": weights(2, 2)}},
                     {"a.weight": shard1, "b.weight": shard1, "c.weight": shard2})
    report = check("m")
    (finding,) = report.findings
    assert (finding.code, finding.severity, finding.tensor) == ("WL006", Severity.ERROR, "b.weight")
    assert finding.file == index
    assert shard1 in finding.message
    assert finding.extra == {"shard": shard1, "missing_tensor": True}
    assert sorted(r.name for r in report.records) == ["a.weight", "c.weight"]
    assert report.exit_code == ExitCode.FINDINGS


def test_shard_tensor_missing_from_index_is_a_warning(fmt):
    shard1, shard2 = _shard_names(fmt)
    _sharded(fmt, {shard1: {"a.weight": weights(2, 2), "extra.weight": weights(2, 2)},
                   shard2: {"c.weight": weights(2, 2)}},
             {"a.weight": shard1, "c.weight": shard2})
    report = check("m")
    (finding,) = report.findings
    assert (finding.code, finding.severity, finding.tensor) == ("WL006", Severity.WARNING, "extra.weight")
    assert finding.file == f"m/{shard1}"
    assert "index does not map" in finding.message
    assert sorted(r.name for r in report.records) == ["a.weight", "c.weight", "extra.weight"]
    assert report.exit_code == ExitCode.OK
    assert check("m", fail_on="warning").exit_code == ExitCode.FINDINGS


def test_tensor_in_the_wrong_shard_gives_both_findings():
    shard1, shard2 = _shard_names("safetensors")
    _sharded("safetensors", {shard1: {"a.weight": weights(2, 2), "b.weight": weights(2, 2)},
                             shard2: {"c.weight": weights(2, 2)}},
             {"a.weight": shard1, "b.weight": shard2, "c.weight": shard2})
    report = check("m")
    got = sorted((f.severity, f.tensor, f.file) for f in report.findings if f.code == "WL006")
    assert got == [
        (Severity.WARNING, "b.weight", f"m/{shard1}"),
        (Severity.ERROR, "b.weight", "m/model.safetensors.index.json"),
    ]
    assert len(report.findings) == 2


def test_broken_shard_is_unreadable_not_missing_tensors():
    shard1, shard2 = _shard_names("safetensors")
    index = _sharded("safetensors", {shard1: {"a.weight": weights(2, 2)}},
                     {"a.weight": shard1, "b.weight": shard2, "c.weight": shard2})
    Path(f"m/{shard2}").write_bytes(b"\0" * 4)
    report = check(index)
    assert [(f.code, f.file) for f in report.findings] == [("WL001", f"m/{shard2}")]
    assert [r.name for r in report.records] == ["a.weight"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifos_and_devices_are_never_read(tmp_path):
    """A FIFO, or a link to /dev/zero, named like a checkpoint blocked or read forever (issue 12):
    only regular files are read, the rest is said, and the valid file beside them is reported."""
    import subprocess
    import sys

    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w.weight": np.full((4, 4), np.nan, dtype=np.float32)}, str(folder / "b.safetensors"))
    os.mkfifo(folder / "a.safetensors")
    os.symlink("/dev/zero", folder / "c.safetensors")
    result = subprocess.run([sys.executable, "-m", "weightlint", str(folder), "--format", "json", "--isolated"],
                            capture_output=True, text=True, timeout=300)
    document = json.loads(result.stdout)
    assert result.returncode == 1  # the NaN in the valid file
    assert [(f["code"], f["tensor"]) for f in document["findings"]] == [("WL100", "w.weight")]
    assert any("not regular files, not read: a.safetensors, c.safetensors" in note for note in document["notes"])
    direct = subprocess.run([sys.executable, "-m", "weightlint", str(folder / "a.safetensors"), "/dev/zero",
                             "--format", "json", "--isolated"], capture_output=True, text=True, timeout=300)
    findings = json.loads(direct.stdout)["findings"]
    assert direct.returncode == 1 and {f["code"] for f in findings} == {"WL001"} and len(findings) == 2
    assert all("not a regular file" in f["message"] for f in findings)
