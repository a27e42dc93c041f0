"""Fuzz tier: generated corrupted checkpoints of every format, through the real command line.

Hypothesis draws a valid seed file (safetensors, GGUF, torch zip, legacy torch pickle, plain
pickle, ONNX, a shard index, a config.json) and corrupts it: flipped, deleted, inserted and
overwritten bytes, a truncation, or a structural change (header numbers, dtypes, shapes and
lengths replaced by hostile values; a torch zip's pickle rewritten and re-zipped with valid CRCs,
so the unpickler sees the garbage). Every case must end in a report (a finding, or none) with a
documented exit code (0, 1 or 5), valid JSON, the valid second file reported, within a time and
memory bound: never a traceback, never exit 3, never code run.

``WEIGHTLINT_FUZZ_EXAMPLES`` sets the examples per format (default 60: about ten seconds in all on
two cores; 600 take a minute). The examples are derandomized, so a CI failure reproduces;
``WEIGHTLINT_FUZZ_EXPLORE=1`` draws fresh ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import resource
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from weightlint import ExitCode
from weightlint.cli import main

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("WEIGHTLINT_FUZZ_EXAMPLES", "60"))
EXPLORE = bool(os.environ.get("WEIGHTLINT_FUZZ_EXPLORE"))  # fresh random examples instead of CI's fixed ones
SECONDS_PER_CASE = 20
PEAK_RSS_BYTES = 3 << 30
HOSTILE_NUMBERS = [-1, 0, 1, 7, 2**31 - 1, 2**32, 2**62, 2**64 - 1, 10**400, -(10**30), 1e400, 0.5]
SEEDS = ("safetensors", "gguf", "torch-zip", "torch-legacy", "plain-pickle", "onnx", "index", "config")


class Payload:
    def __reduce__(self):
        return (os.system, ("touch fuzz-pwned",))


def _rng_weights(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def seed_bytes(kind: str, folder: Path) -> dict[str, bytes]:
    """Files of a valid checkpoint of ``kind`` (name → bytes), written into nothing yet."""
    if kind == "safetensors":
        buffer = folder / "seed.safetensors"
        save_file({"a.weight": _rng_weights(8, 6), "a.bias": _rng_weights(1, 8)[0]}, str(buffer))
        return {"model.safetensors": buffer.read_bytes()}
    if kind == "gguf":
        import gguf

        path = folder / "seed.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_name("fuzz")
        writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
        writer.add_uint32("llama.block_count", 1)
        writer.add_tensor("blk.0.attn_q.weight", _rng_weights(8, 32))
        writer.add_tensor("blk.0.ffn_up.weight", _rng_weights(4, 32, seed=1))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return {"model.gguf": path.read_bytes()}
    if kind in ("torch-zip", "torch-legacy"):
        buffer = io.BytesIO()
        torch.save({"state_dict": {"a.weight": torch.from_numpy(_rng_weights(8, 6)), "step": torch.tensor(3)}},
                   buffer, _use_new_zipfile_serialization=kind == "torch-zip")
        return {"model.pt": buffer.getvalue()}
    if kind == "plain-pickle":
        return {"model.pkl": pickle.dumps({"weights": [1.0, 2.0], "note": "plain"}, protocol=4)}
    if kind == "onnx":
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
            [numpy_helper.from_array(_rng_weights(8, 6), "W"), numpy_helper.from_array(_rng_weights(1, 6)[0], "b")])
        return {"model.onnx": helper.make_model(graph).SerializeToString()}
    if kind == "index":
        buffer = folder / "shard.safetensors"
        save_file({"a.weight": _rng_weights(8, 6)}, str(buffer))
        index = {"metadata": {"total_size": 192}, "weight_map": {"a.weight": "model-00001-of-00001.safetensors"}}
        return {"model-00001-of-00001.safetensors": buffer.read_bytes(),
                "model.safetensors.index.json": json.dumps(index).encode()}
    if kind == "config":
        buffer = folder / "config-model.safetensors"
        save_file({"h.0.mlp.c_fc.weight": _rng_weights(4, 16)}, str(buffer))
        config = {"model_type": "gpt2", "n_layer": 1, "n_embd": 4, "n_head": 2, "vocab_size": 10, "n_positions": 8}
        return {"model.safetensors": buffer.read_bytes(), "config.json": json.dumps(config).encode()}
    raise ValueError(kind)


# -- corruptions ---------------------------------------------------------------------------------

def byte_edit(data: bytes, draw) -> bytes:
    if not data:
        return draw(st.binary(max_size=64))
    position = draw(st.integers(0, len(data) - 1))
    kind = draw(st.sampled_from(["flip", "delete", "insert", "overwrite", "truncate", "duplicate"]))
    if kind == "flip":
        return data[:position] + bytes([data[position] ^ (1 << draw(st.integers(0, 7)))]) + data[position + 1:]
    if kind == "delete":
        return data[:position] + data[position + draw(st.integers(1, 64)):]
    if kind == "insert":
        return data[:position] + draw(st.binary(min_size=1, max_size=64)) + data[position:]
    if kind == "overwrite":
        chunk = draw(st.sampled_from([b"\xff" * 8, b"\x00" * 8, struct.pack("<Q", 2**62), struct.pack("<q", -1)]))
        return data[:position] + chunk + data[position + len(chunk):]
    if kind == "truncate":
        return data[:position]
    return data[:position] + data[position:position + 4096] * draw(st.integers(2, 5)) + data[position:]


def json_edit(value, draw, depth: int = 0):
    """The same JSON value with one leaf replaced by something hostile."""
    if isinstance(value, dict) and value and depth < 6:
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: json_edit(value[key], draw, depth + 1)}
    if isinstance(value, list) and value and depth < 6:
        index = draw(st.integers(0, len(value) - 1))
        return value[:index] + [json_edit(value[index], draw, depth + 1)] + value[index + 1:]
    return draw(st.sampled_from([*HOSTILE_NUMBERS, None, True, "", "F99", "../../x", [], {}, [[[[1]]]], "\x00"]))


def dump_json(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def structural_edit(kind: str, name: str, data: bytes, draw) -> bytes:
    if name.endswith(".json"):
        return dump_json(json_edit(json.loads(data), draw))
    if name.endswith(".safetensors"):
        (length,) = struct.unpack("<Q", data[:8])
        header = json_edit(json.loads(data[8:8 + length]), draw)
        raw = dump_json(header)
        declared = draw(st.sampled_from([len(raw), len(raw), 2**63, len(raw) + len(data), 0]))
        return struct.pack("<Q", declared) + raw + data[8 + length:]
    if kind == "torch-zip":
        source = zipfile.ZipFile(io.BytesIO(data))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:
            for info in source.infolist():
                member = source.read(info.filename)
                if info.filename.endswith("data.pkl"):
                    member = byte_edit(member, draw)
                elif "/data/" in info.filename and draw(st.booleans()):
                    member = member[: draw(st.integers(0, len(member)))]
                target.writestr(info.filename, member)
        return out.getvalue()
    if kind == "gguf":
        # a count or length field near the start: tensor count, key count, string or array lengths
        position = draw(st.sampled_from([8, 16, 24, 32, 40, 48, 56, 64]))
        value = draw(st.sampled_from([0, 1, 2**31, 2**62, 2**64 - 1]))
        return data[:position] + struct.pack("<Q", value) + data[position + 8:]
    if kind == "onnx":
        import onnx

        model = onnx.load_from_string(data)
        tensor = model.graph.initializer[draw(st.integers(0, len(model.graph.initializer) - 1))]
        field = draw(st.sampled_from(["data_type", "dims", "raw_data", "external"]))
        if field == "data_type":
            tensor.data_type = draw(st.sampled_from([0, 2, 3, 8, 16, 17, 23, 999]))
        elif field == "dims":
            del tensor.dims[:]
            tensor.dims.extend(draw(st.lists(st.sampled_from([0, 1, 3, 2**31, -5]), max_size=4)))
        elif field == "raw_data":
            tensor.raw_data = tensor.raw_data[: draw(st.integers(0, len(tensor.raw_data)))]
        else:
            tensor.data_location = onnx.TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value=draw(st.sampled_from(["w.bin", "../../w", "/etc/x", ""])))
            tensor.external_data.add(key="offset", value=draw(st.sampled_from(["0", "-1", "x", str(2**62)])))
        return model.SerializeToString()
    return byte_edit(data, draw)


@st.composite
def corrupted_checkpoints(draw, kind: str, files: dict[str, bytes]):
    name = draw(st.sampled_from(sorted(files)))
    structural = draw(st.booleans())
    data = structural_edit(kind, name, files[name], draw) if structural else files[name]
    for _ in range(draw(st.integers(0 if structural else 1, 3))):
        data = byte_edit(data, draw)
    if kind == "plain-pickle" and draw(st.booleans()):
        data = pickle.dumps(Payload(), protocol=draw(st.integers(0, 5)))
    return {**files, name: data}


def run_case(files: dict[str, bytes], root: Path, good: Path) -> None:
    case = root / f"case-{len(list(root.glob('case-*'))):05d}"
    case.mkdir()
    for name, data in files.items():
        (case / name).write_bytes(data)
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(case), str(good), "--format", "json", "--isolated"])
    elapsed = time.perf_counter() - started
    described = {name: len(data) for name, data in files.items()}
    assert code in (ExitCode.OK, ExitCode.FINDINGS, ExitCode.NO_TENSORS), (code, stderr.getvalue(), described)
    assert "Traceback" not in stderr.getvalue() and "INTERNAL ERROR" not in stderr.getvalue()
    document = json.loads(stdout.getvalue())
    assert any(key.endswith("good.weight") for key in document["tensors"]), "the valid file was not reported"
    assert not any(f["code"] == "WL008" for f in document["findings"]), document["findings"]
    assert elapsed < SECONDS_PER_CASE, (elapsed, described)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < PEAK_RSS_BYTES
    assert not Path("fuzz-pwned").exists()


@pytest.mark.parametrize("kind", SEEDS)
def test_corrupted_files_end_in_a_report(kind, tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp(f"fuzz-{kind}")
    monkeypatch.chdir(root)
    good = root / "good.safetensors"
    save_file({"good.weight": _rng_weights(4, 4, seed=9)}, str(good))
    files = seed_bytes(kind, tmp_path_factory.mktemp(f"seeds-{kind}"))  # once: torch.save output varies

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORE, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        run_case(data.draw(corrupted_checkpoints(kind, files)), root, good)

    check()
