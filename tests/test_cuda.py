"""The CUDA path on a GPU: the same statistics and findings as the CPU. Skipped without CUDA (CI);
`tests/test_backends.py` runs the same PyTorch backend on the CPU everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import weightlint
from weightlint.execution.device import resolve_device
from weightlint.record import TensorRecord
from weightlint.stats import TensorStats

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the GPU checks run where one is (benchmarks/cuda_check.sh)")


def test_auto_picks_the_gpu():
    assert resolve_device("auto") == "cuda"


def test_gpu_statistics_match_the_cpu():
    from test_backends import GROUPS, _close, _matrices

    for name, array in _matrices().items():
        record = TensorRecord(name=f"{name}.weight", shape=array.shape, dtype=str(array.dtype), file="x",
                              load=lambda array=array: array)
        on_cpu = TensorStats(record, values=array.copy())
        on_gpu = TensorStats(record, "cuda", values=TensorStats.load_values(record, "cuda"))
        assert on_gpu.values.is_cuda and on_gpu.values.dtype in (torch.float32, torch.float64)
        for group in GROUPS:
            _close(getattr(on_cpu, group), getattr(on_gpu, group), f"{name}.{group}",
                   1e-4 if group == "spectral" else 2e-5)


def test_minilm_findings_are_the_same_on_the_gpu(minilm):
    def summary(device):
        report = weightlint.check(minilm, device=device)
        assert report.device.startswith(device)
        return sorted((f.code, f.tensor or "", f.severity.name) for f in report.findings)

    assert summary("cuda") == summary("cpu")


def test_values_never_go_below_float32_on_the_gpu(tmp_path):
    from safetensors.torch import save_file

    save_file({"w.weight": torch.randn(64, 32).half(), "b.weight": torch.randn(64, 32).bfloat16()},
              str(tmp_path / "m.safetensors"))
    for record in weightlint.check(tmp_path / "m.safetensors", device="cuda").records:
        values = TensorStats.load_values(record, "cuda")
        assert values.dtype == torch.float32
        np.testing.assert_array_equal(values.cpu().numpy(), TensorStats.load_values(record, "cpu"))


def test_a_large_tensor_is_streamed_to_the_gpu_with_the_same_statistics(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from weightlint.stats import tensor as tensor_stats

    monkeypatch.setattr(tensor_stats, "DEVICE_STREAM_VALUES", 1 << 10)
    monkeypatch.setattr(tensor_stats, "DEVICE_STREAM_CHUNK", 1 << 12)
    save_file({"w.weight": torch.randn(512, 96).bfloat16()}, str(tmp_path / "m.safetensors"))
    on_gpu = weightlint.check(tmp_path / "m.safetensors", device="cuda").tensors["w.weight"]
    on_cpu = weightlint.check(tmp_path / "m.safetensors", device="cpu").tensors["w.weight"]
    assert on_gpu["norms"]["max_abs"] == on_cpu["norms"]["max_abs"]
    assert on_gpu["norms"]["l2"] == pytest.approx(on_cpu["norms"]["l2"], rel=1e-5)
    assert on_gpu["spectral"]["sv_max"] == pytest.approx(on_cpu["spectral"]["sv_max"], rel=1e-4)
