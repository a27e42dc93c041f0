"""The NumPy backend (every CPU scan) and the PyTorch backend (CUDA) compute the same statistics,
and both match float64 references; stored bytes decode exactly without torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from weightlint import dtypes
from weightlint.backend import NUMPY, TORCH
from weightlint.quantization import median
from weightlint.record import TensorRecord
from weightlint.stats import TensorStats

GROUPS = ("finite", "norms", "sparsity", "precision", "quantization", "spectral")


# -- exact decoding ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                                  "float8_e8m0fnu"])
def test_every_float8_code_decodes_as_torch_does(name):
    if not hasattr(torch, name):
        pytest.skip(f"torch {torch.__version__} has no {name}")
    codes = torch.arange(256, dtype=torch.uint8)
    expected = codes.view(getattr(torch, name)).float().numpy()
    np.testing.assert_array_equal(dtypes.float8_table(name), expected)  # NaNs in the same places too


def test_bfloat16_and_float16_bits_decode_exactly():
    bits = np.arange(1 << 16, dtype=np.uint16)  # every bfloat16 / float16 value, NaN and Inf included
    as_torch = torch.from_numpy(bits.view(np.int16))
    np.testing.assert_array_equal(dtypes.decode(bits.view(np.uint8), dtypes.bfloat16, (1 << 16,)),
                                  as_torch.view(torch.bfloat16).float().numpy())
    np.testing.assert_array_equal(dtypes.decode(bits.view(np.uint8), dtypes.float16, (1 << 16,)),
                                  as_torch.view(torch.float16).float().numpy())


def test_safetensors_of_every_float_type_load_as_torch_would(tmp_path):
    from weightlint.sources.safetensors_file import read_safetensors

    base = torch.randn(8, 16) * 3
    tensors = {"f64": base.double(), "f32": base, "f16": base.half(), "bf16": base.bfloat16(),
               "e4m3": base.to(torch.float8_e4m3fn), "e5m2": base.to(torch.float8_e5m2),
               "ints": torch.arange(6, dtype=torch.int64)}
    save_file(tensors, tmp_path / "all.safetensors")
    records = {r.name: r for r in read_safetensors(str(tmp_path / "all.safetensors"))}
    for name, tensor in tensors.items():
        record = records[name]
        assert record.dtype == tensor.dtype, name
        loaded = record.load()
        assert isinstance(loaded, np.ndarray) and loaded.shape == tuple(tensor.shape)
        reference = tensor.numpy() if tensor.dtype in (torch.float64, torch.int64) else tensor.float().numpy()
        assert loaded.dtype == reference.dtype, name
        np.testing.assert_array_equal(loaded, reference, err_msg=name)


# -- the two backends agree -------------------------------------------------------------------
def _matrices():
    rng = np.random.default_rng(7)
    gaussian = rng.standard_normal((300, 128)).astype(np.float32) * 0.02
    outliers = gaussian.copy()
    outliers[rng.random(outliers.shape) < 0.02] *= 40
    dead = rng.standard_normal((96, 96)).astype(np.float32)
    dead[5] = 0
    dead[:, 17] = 0
    poisoned = rng.standard_normal((64, 80)).astype(np.float32)
    poisoned[3, 4], poisoned[10, 1], poisoned[0, 0] = np.nan, np.inf, -np.inf
    odd = rng.standard_normal((129, 65)).astype(np.float32)  # odd count: a single middle value
    conv = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    wide64 = rng.standard_normal((40, 200))  # float64 stays float64
    big = (rng.standard_normal((2000, 700)) * 0.05).astype(np.float32)  # > one block, SciPy's eigensolver
    return {"gaussian": gaussian, "outliers": outliers, "dead": dead, "poisoned": poisoned, "odd": odd,
            "conv": conv, "wide64": wide64, "big": big}


def _close(a, b, path="", rel=2e-5):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}", rel)
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isinf(a):
            assert repr(a) == repr(b), path
        else:
            assert b == pytest.approx(a, rel=rel, abs=1e-9), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name", list(_matrices()))
def test_numpy_and_torch_backends_compute_the_same_statistics(name):
    array = _matrices()[name]
    record = TensorRecord(name=f"{name}.weight", shape=array.shape, dtype=str(array.dtype), file="x",
                          load=lambda: array)
    on_numpy = TensorStats(record, values=array.copy())
    on_torch = TensorStats(record, values=torch.from_numpy(array.copy()))
    assert on_numpy.xp is NUMPY and on_torch.xp is TORCH
    for group in GROUPS:
        # Spectra of clearly rectangular, well-conditioned matrices come from a float32 Gram
        # matrix (~1e-5 relative; two LAPACKs round differently): compared to 1e-4 there.
        _close(getattr(on_numpy, group), getattr(on_torch, group), group, 1e-4 if group == "spectral" else 2e-5)
    assert on_numpy.content_hash == on_torch.content_hash
    assert on_numpy.fingerprint == on_torch.fingerprint


def test_statistics_match_float64_references():
    array = _matrices()["outliers"]
    record = TensorRecord(name="w.weight", shape=array.shape, dtype="float32", file="x", load=lambda: array)
    stats = TensorStats(record, values=array.copy())
    exact = array.astype(np.float64)
    assert stats.norms["l2"] == pytest.approx(np.linalg.norm(exact), rel=1e-6)
    assert stats.norms["mean_abs"] == pytest.approx(np.mean(np.abs(exact)), rel=1e-6)
    assert stats.quantization["outlier_center"] == np.median(array)
    scale = np.abs(exact).max() / 127
    noise = np.sum((np.round(exact / scale) * scale - exact) ** 2)
    assert stats.quantization["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(exact**2) / noise), abs=1e-4)
    rows = np.abs(exact).max(axis=1, keepdims=True) / 127
    noise = np.sum((np.round(exact / rows) * rows - exact) ** 2)
    assert stats.quantization["sqnr_db_per_channel"] == pytest.approx(10 * np.log10(np.sum(exact**2) / noise), abs=1e-4)
    centered = exact - exact.mean()
    assert stats.quantization["kurtosis"] == pytest.approx(np.mean(centered**4) / np.mean(centered**2) ** 2, rel=1e-5)
    sv = np.linalg.svd(exact, compute_uv=False)
    assert stats.spectral["condition_number"] == pytest.approx(sv[0] / sv[-1], rel=1e-5)
    assert stats.spectral["stable_rank"] == pytest.approx(np.sum(sv**2) / sv[0] ** 2, rel=1e-5)


def _wide(shape):
    """Rows longer than one block (65,536 values), with outliers, zeros, a dead row and values that
    fp16 would flush to zero or overflow."""
    rng = np.random.default_rng(shape[-1])
    array = (rng.standard_normal(shape) * 0.02).astype(np.float32)
    flat = array.reshape(-1)
    flat[rng.random(flat.size) < 0.01] *= 40
    flat[rng.random(flat.size) < 0.001] = 0
    flat[rng.random(flat.size) < 0.0005] = 2.0**-26
    flat[::100_003] = 70_000.0
    if shape[0] > 2:
        array[1] = 0
    return array


@pytest.mark.parametrize("shape", [(2, 70_000), (3, 1_048_577), (1, 300_000), (2, 2048, 512)])
def test_rows_longer_than_a_block_match_float64_references(shape):
    array = _wide(shape)
    record = TensorRecord(name="w.weight", shape=shape, dtype="float32", file="x", load=lambda: array)
    stats = TensorStats(record, values=array.copy())
    exact = array.astype(np.float64).reshape(shape[0], -1)
    magnitude = np.abs(exact)
    assert stats.norms["l2"] == pytest.approx(np.linalg.norm(exact), rel=1e-6)
    assert stats.norms["mean_abs"] == pytest.approx(magnitude.mean(), rel=1e-6)
    assert stats.norms["std"] == pytest.approx(exact.std(), rel=1e-6)
    assert stats.sparsity["zero_count"] == np.count_nonzero(exact == 0)
    nonzero = magnitude[magnitude > 0]
    assert stats.precision["fp16_overflow_count"] == np.count_nonzero(magnitude >= 65520)
    assert stats.precision["fp16_underflow_count"] == np.count_nonzero(nonzero <= 2.0**-25)
    assert stats.precision["fp16_subnormal_percentage"] == pytest.approx(
        100 * np.count_nonzero(nonzero < 2.0**-14) / nonzero.size, rel=1e-12)
    if shape[0] == 1:
        assert stats.quantization == {}
        return
    assert stats.sparsity["zero_rows"] == ([1] if shape[0] > 2 else [])
    quantization = stats.quantization
    center = np.median(exact)
    deviation = np.abs(exact - center)
    scale = 1.4826 * np.median(deviation)
    assert quantization["outlier_center"] == center
    assert quantization["outlier_scale"] == pytest.approx(scale, rel=1e-6)
    assert quantization["extreme_outlier_percentage"] == 100 * np.count_nonzero(deviation > 3 * scale) / exact.size
    step = magnitude.max() / 127
    noise = np.sum((np.round(exact / step) * step - exact) ** 2)
    assert quantization["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(exact**2) / noise), abs=1e-4)
    rows = magnitude.max(axis=1, keepdims=True) / 127
    rows[rows == 0] = 1
    noise = np.sum((np.round(exact / rows) * rows - exact) ** 2)
    assert quantization["sqnr_db_per_channel"] == pytest.approx(10 * np.log10(np.sum(exact**2) / noise), abs=1e-4)
    centered = exact - exact.mean()
    assert quantization["kurtosis"] == pytest.approx(np.mean(centered**4) / np.mean(centered**2) ** 2, rel=1e-5)
    on_torch = TensorStats(record, values=torch.from_numpy(array.copy()))
    for group in ("finite", "norms", "sparsity", "precision", "quantization"):
        _close(getattr(stats, group), getattr(on_torch, group), group)


def test_blocks_of_long_rows_cover_every_value_once_and_fit_the_buffer():
    from weightlint.backend import BLOCK_VALUES, _blocks

    matrix = np.arange(3 * (2 * BLOCK_VALUES + 5), dtype=np.float32).reshape(3, -1)[:, 1:]  # strided rows
    pieces = list(_blocks(matrix))
    assert all(block.size <= BLOCK_VALUES for block, _ in pieces)
    rebuilt = [np.concatenate([block.reshape(-1) for block, rows in pieces if rows == slice(row, row + 1)])
               for row in range(3)]
    np.testing.assert_array_equal(np.stack(rebuilt), matrix)
    scale = np.array([[1.0], [2.0], [4.0]], dtype=np.float32)
    wide = (matrix / matrix.max()).astype(np.float32)
    expected = np.sum((np.rint(wide / scale) * scale - wide).astype(np.float64) ** 2)
    assert NUMPY.rounding_noise(wide, scale) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("size", [1, 2, 7, 8, 1001, 70_000, 70_001])
def test_select_and_median_are_exact(size):
    values = np.random.default_rng(size).standard_normal(size).astype(np.float32)
    ordered = np.sort(values)
    assert median(values.copy()) == float(np.median(values.astype(np.float64)))
    kth = sorted({0, size // 3, max(size - 2, 0), size - 1})
    assert NUMPY.select(values.copy(), kth) == [float(ordered[k]) for k in kth]
    assert TORCH.select(torch.from_numpy(values.copy()), kth) == [float(ordered[k]) for k in kth]


# -- no torch on the way ----------------------------------------------------------------------
def test_safetensors_scan_imports_neither_torch_nor_transformers_once_the_skeleton_is_cached(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(tmp_path / "gpt2")
    state = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    assert state["model_type"] == "gpt2"
    probe = (
        "import json, sys\n"
        "from weightlint import check\n"
        f"report = check({str(tmp_path / 'gpt2')!r})\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules,\n"
        "                  'findings': sorted((f.code, f.tensor or '') for f in report.findings),\n"
        "                  'kinds': {r.name: r.metadata.get('module_kind') for r in report.records}}))\n"
    )
    env = {"WEIGHTLINT_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}

    def run():
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold, warm = run(), run()
    assert cold["transformers"] is True  # the first run builds the skeleton
    assert warm["torch"] is False and warm["transformers"] is False
    assert warm["findings"] == cold["findings"] and warm["kinds"] == cold["kinds"]
    assert warm["kinds"]["transformer.h.0.attn.c_attn.weight"] == "conv1d"  # from the cached skeleton
    assert len(list((tmp_path / "cache" / "skeletons").glob("*.json"))) == 1


def test_a_corrupt_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    from weightlint import architecture

    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 1, "n_embd": 16,
              "n_head": 2, "vocab_size": 32, "n_positions": 8}
    monkeypatch.setenv("WEIGHTLINT_CACHE_DIR", str(tmp_path))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    cache = architecture.SkeletonCache.for_config(config)
    built = architecture._read(str(tmp_path / "m" / "config.json"))
    assert built.skeleton is not None and cache.load() is not None
    with open(cache.path, "w") as handle:
        handle.write("{not json")
    assert cache.load() is None
    again = architecture._read(str(tmp_path / "m" / "config.json"))
    assert again.skeleton.expected == built.skeleton.expected
    assert cache.load()[0].expected == built.skeleton.expected


def test_auto_device_without_a_gpu_driver_does_not_import_torch():
    probe = ("import sys\nfrom weightlint.execution.device import resolve_device, _gpu_driver_present\n"
             "device = resolve_device('auto')\n"
             "print(device, _gpu_driver_present(), 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    device, driver, imported = done.stdout.split()
    if driver == "True":
        pytest.skip("this machine has a GPU driver")
    assert (device, imported) == ("cpu", "False")


def test_no_cache_flag_leaves_the_cache_empty(tmp_path, cli):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=8)).save_pretrained(tmp_path / "m")
    cache = tmp_path / "cache"
    result = cli(str(tmp_path / "m"), "-q", "--no-cache", env={"WEIGHTLINT_CACHE_DIR": str(cache)})
    assert result.returncode in (0, 1), result.stderr
    assert not cache.exists()
    result = cli(str(tmp_path / "m"), "-q", env={"WEIGHTLINT_CACHE_DIR": str(cache)})
    assert result.returncode in (0, 1), result.stderr
    assert len(list((cache / "skeletons").glob("*.json"))) == 1
