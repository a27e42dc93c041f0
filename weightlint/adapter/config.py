"""A PEFT adapter's ``adapter_config.json``: what the adapter declares, and how PEFT reads it.

PEFT's rules are followed where they decide what a tensor means: the scale of an update is
``lora_alpha / r`` (``lora_alpha / √r`` with ``use_rslora``); ``rank_pattern`` and ``alpha_pattern``
override ``r`` and ``lora_alpha`` for the modules whose name ends with a key (a regex); a list of
``target_modules`` names modules by their last name parts, a string is a regex the whole module
name must match.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

CONFIG_NAME = "adapter_config.json"
LORA_TYPES = ("LORA", "ADALORA")  # the types whose tensors pair into low-rank updates


@dataclass
class AdapterConfig:
    """The fields of ``adapter_config.json`` that say what the adapter's tensors must be."""

    path: str
    peft_type: str = "LORA"
    r: int = 8
    lora_alpha: float = 8.0
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] = field(default_factory=list)
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    base_model: str | None = None

    @property
    def is_lora(self) -> bool:
        return self.peft_type.upper() in LORA_TYPES

    def rank_of(self, module: str) -> int:
        return int(_pattern_value(self.rank_pattern, module, self.r))

    def scale_of(self, module: str) -> float:
        """The factor PEFT multiplies B·A by for this module."""
        rank = self.rank_of(module)
        alpha = float(_pattern_value(self.alpha_pattern, module, self.lora_alpha))
        return alpha / (math.sqrt(rank) if self.use_rslora else rank) if rank > 0 else 0.0

    def targets(self, module: str) -> bool:
        """Whether ``target_modules`` names this module (as PEFT's ``check_target_module_exists``)."""
        if isinstance(self.target_modules, str):
            return re.fullmatch(self.target_modules, module) is not None
        names = self.target_modules or []
        return "all-linear" in names or any(module == name or module.endswith("." + name) for name in names)

    def saves(self, module: str) -> bool:
        """Whether ``modules_to_save`` names this module (a full copy the adapter replaces)."""
        return any(module == name or module.endswith("." + name) or f".{name}." in f".{module}."
                   for name in self.modules_to_save)


def _pattern_value(pattern: dict[str, Any], module: str, default: Any) -> Any:
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def find_config(path: str) -> str | None:
    """The ``adapter_config.json`` of an adapter folder, or beside an adapter file."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    candidate = os.path.join(folder, CONFIG_NAME)
    return candidate if os.path.isfile(candidate) else None


def read_config(path: str) -> AdapterConfig:
    """Parse ``adapter_config.json``; ValueError with a one-line reason when it is not usable."""
    from weightlint.config import limits

    with open(path, "rb") as handle:
        raw = limits.load_json(handle.read(limits.current().header_bytes + 1), "adapter_config.json")
    if not isinstance(raw, dict):
        raise ValueError("adapter_config.json is not a JSON object")
    try:
        targets = raw.get("target_modules")
        patterns = {name: raw.get(name) or {} for name in ("rank_pattern", "alpha_pattern")}
        for name, pattern in patterns.items():
            if not isinstance(pattern, dict):
                raise ValueError(f"{name} is not a mapping of module patterns")
        config = AdapterConfig(
            path=path,
            peft_type=str(raw.get("peft_type") or "LORA"),
            r=int(raw.get("r") or 8),
            lora_alpha=float(raw.get("lora_alpha") or raw.get("r") or 8),
            use_rslora=bool(raw.get("use_rslora")),
            use_dora=bool(raw.get("use_dora")),
            fan_in_fan_out=bool(raw.get("fan_in_fan_out")),
            target_modules=targets if isinstance(targets, str) else [str(t) for t in targets or []],
            modules_to_save=[str(m) for m in raw.get("modules_to_save") or []],
            rank_pattern={str(k): int(v) for k, v in patterns["rank_pattern"].items()},
            alpha_pattern={str(k): float(v) for k, v in patterns["alpha_pattern"].items()},
            base_model=raw.get("base_model_name_or_path"),
        )
        # Regexes from the file: compiled here, so that a broken one is the file's problem.
        for pattern in [*config.rank_pattern, *config.alpha_pattern] + (
                [config.target_modules] if isinstance(config.target_modules, str) else []):
            re.compile(pattern)
    except (TypeError, ValueError, OverflowError, AttributeError, re.error) as error:
        raise ValueError(f"adapter_config.json has a field of the wrong type or value: {error}") from error
    if not math.isfinite(config.lora_alpha) or config.r < 0:
        raise ValueError("adapter_config.json: r must be a non-negative integer and lora_alpha a finite number")
    return config
