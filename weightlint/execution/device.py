"""Which device a run computes on: CUDA when asked for (or available under ``auto``), else the CPU."""

from __future__ import annotations

import glob
import os
import sys

from weightlint.execution.errors import UsageError


def _gpu_driver_present() -> bool:
    """An NVIDIA or ROCm driver on this machine (checked without importing torch)."""
    return (os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))
            or os.path.exists("/dev/kfd"))


def cuda_available() -> bool:
    """Whether torch can use a GPU. Without a GPU driver torch is not imported to find out."""
    if "torch" not in sys.modules and not _gpu_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device {device}: expected auto, cpu or cuda")
    return device
