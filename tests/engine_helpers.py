"""Helpers shared by the source and bad-input tests: the engine rules only, dense weights."""

from __future__ import annotations

import torch

import weightlint

# The rules these tests are about; other rules (added over time) must not change the exact counts.
SELECT = ["WL001", "WL002", "WL006", "WL100", "WL501"]
CLI_SELECT = ("--select", ",".join(SELECT))


def check(*targets, **settings):
    settings.setdefault("select", SELECT)
    return weightlint.check(*targets, **settings)


def weights(*shape: int, seed: int = 0) -> torch.Tensor:
    """Dense random weights: no zero rows or columns, no non-finite values."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator) + 0.5
