"""PyTorch pickles (``.bin .pt .pth .ckpt``), loaded with ``weights_only=True`` and memory-mapped.

Nothing in the file is ever executed: PyTorch's restricted unpickler refuses every global outside
plain tensors and containers, and weightlint reports the refused global as WL002.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from typing import Any, Iterator, Mapping

import torch

from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Problem, Source, display_path

# Where trainers nest the model's weights (Lightning, DeepSpeed, plain ``{"model": ...}``, EMA).
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "ema_state_dict", "network", "net")
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation",
                "Re-running `torch.load`", "In PyTorch 2.6", "You can use", "WeightsUnpickler error")


def _load(path: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        # Legacy (pre-1.6) pickles cannot be memory-mapped; they are read whole.
        return torch.load(path, map_location="cpu", weights_only=True)


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_BOILERPLATE)]
    return (useful or lines or [type(error).__name__])[0]


def _unsafe_globals(error: BaseException) -> list[str]:
    return _UNSAFE_GLOBAL.findall(str(error))


def find_state_dict(obj: Any, prefix: str = "") -> tuple[str, Mapping] | None:
    """The mapping of tensors inside a checkpoint object, with the key path that led there."""
    if not isinstance(obj, Mapping):
        return None
    for key in NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            found = find_state_dict(inner, f"{prefix}{key}/")
            if found is not None:
                return found
    if any(isinstance(value, torch.Tensor) for value in obj.values()):
        return prefix, obj
    return None


def flatten_tensors(mapping: Mapping, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors of a state dict; nested plain dicts become dotted names."""
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            yield name, value
        elif isinstance(value, Mapping):
            yield from flatten_tensors(value, f"{name}.")


class TorchPickleSource(Source):
    def __init__(self, path: str) -> None:
        super().__init__(path=display_path(path), format="pytorch", files=[display_path(path)])
        self._real_path = str(path)

    def items(self) -> Iterator[Item]:
        yield from read_torch_pickle(self._real_path)


def read_torch_pickle(path: str, only: set[str] | None = None) -> Iterator[Item]:
    shown = display_path(path)
    try:
        obj = _load(path)
    except pickle.UnpicklingError as error:
        offending = _unsafe_globals(error)
        if offending:
            names = ", ".join(dict.fromkeys(offending))
            yield Problem("unsafe-pickle", shown, f"loading would import or call {names}; not executed",
                          detail={"globals": list(dict.fromkeys(offending))})
        else:
            yield Problem("unreadable", shown, f"not a PyTorch checkpoint: {_reason(error)}")
        return
    except Exception as error:  # torch raises RuntimeError, EOFError, zipfile errors …
        yield Problem("unreadable", shown, f"not a PyTorch checkpoint: {_reason(error)}")
        return
    if isinstance(obj, torch.Tensor):
        obj = {"tensor": obj}
    found = find_state_dict(obj)
    if found is None:
        yield Problem("unreadable", shown, f"no tensors found (top-level object is {type(obj).__name__})")
        return
    key_path, state = found
    for name, tensor in flatten_tensors(state):
        if only is not None and name not in only:
            continue
        yield TensorRecord(
            name=name,
            shape=tuple(tensor.shape),
            dtype=tensor.dtype,
            file=shown,
            load=lambda tensor=tensor: tensor,
            format="pytorch",
            metadata={"nested_under": key_path.rstrip("/")} if key_path else {},
        )
