"""PyTorch pickles (``.bin .pt .pth .ckpt``), read without running anything in them.

A torch.save zip is read by weightlint's own restricted unpickler (``torch_archive``): containers,
PyTorch's weights-only allowlist and deferred tensors, each read from its storage member when it
is checked; so every pickle protocol (0–5), compressed members and short members are handled. A
legacy (pre-1.6) pickle is loaded with ``torch.load(weights_only=True)``. When loading fails, the
pickle is read opcode by opcode (``pickletools``, nothing imported or called) to name every global
it would import; any outside PyTorch's allowlist is reported as WL002 (graded: see pickle_scan).

Trainers nest the weights anywhere (``{"model_state": ..., "optimizer_state": ..., "step": 3}``):
the loaded object is searched for tensors, optimizer state left out.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from typing import Any, Iterator, Mapping, NamedTuple

from weightlint.config import limits
from weightlint.record import TensorRecord
from weightlint.sources.base import (
    Item,
    Problem,
    Source,
    display_path,
    limit_problem,
    short_reason,
)
from weightlint.sources.pickle_scan import (
    allowed_globals,
    python3_name,
    scan_pickle,
    unsafe_pickle_problem,
)
from weightlint.sources.torch_archive import (
    MAX_DEPTH,
    RefusedGlobal,
    is_deferred_tensor,
    read_pickle_member,
    root_dir,
    starts_like_zip,
    unpickle,
)

# Where trainers nest the model's weights (Lightning, DeepSpeed, plain ``{"model": ...}``, EMA): when
# one of these holds tensors, tensors elsewhere (Lightning's callback scores …) are not weights.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "ema_state_dict", "network", "net")
# Optimizer state is not weights, wherever it is nested (any ``{"state", "param_groups"}`` mapping too).
_OPTIMIZER_KEY = re.compile(r"optim(izer)?s?(_?states?)?(_?dicts?)?|exp_avg(_sq)?|max_exp_avg_sq|momentum_buffer",
                            re.IGNORECASE)
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation",
                "Re-running `torch.load`", "In PyTorch 2.6", "You can use", "WeightsUnpickler error")


def _is_tensor(value: Any) -> bool:
    """A torch.Tensor (asked without importing torch) or a tensor of an archive, not yet read."""
    import sys

    torch = sys.modules.get("torch")
    return (torch is not None and isinstance(value, torch.Tensor)) or is_deferred_tensor(value)


def _load(path: str) -> Any:
    if starts_like_zip(path):
        with zipfile.ZipFile(path) as archive:
            return unpickle(archive, path, root_dir(archive), "data", script=False)
    import torch  # a legacy pickle needs PyTorch to be read; no other format does

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Legacy (pre-1.6) pickles cannot be memory-mapped; they are read whole.
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            if "Unsupported operand" not in str(error):
                raise
        # PyTorch's weights-only unpickler predates protocol 4's opcodes (FRAME, MEMOIZE …): the
        # same allowlist, enforced by a standard unpickler's find_class, reads such files.
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of PyTorch's weights-only allowlist; any other is refused."""

    def find_class(self, module: str, name: str) -> Any:
        full = python3_name(module, name)
        if full not in allowed_globals():
            raise RefusedGlobal(full)
        return super().find_class(module, name)


class _RestrictedPickle:
    """The ``pickle_module`` torch.load is given for legacy files of protocol 4 and 5."""

    Unpickler = _RestrictedUnpickler
    __name__ = "weightlint-restricted-pickle"

    @staticmethod
    def load(handle: Any, **options: Any) -> Any:
        return _RestrictedUnpickler(handle, **options).load()


def offending_globals(path: str) -> tuple[list[str], str | None]:
    """Unsafe globals the file's pickle(s) would import, and a better reason when it is a plain pickle.

    A file is scanned as what torch.load takes it for (a zip when it starts like one, else a
    pickle), and a pickle with a zip appended has both parts scanned.
    """
    allowed = allowed_globals()
    found: list[str] = []
    hint = None
    try:
        if not starts_like_zip(path):
            with open(path, "rb") as handle:
                found, complete, legacy = scan_pickle(handle)
            if complete and not legacy:
                hint = "a plain Python pickle, not a file written by torch.save"
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        found.extend(scan_pickle(io.BytesIO(read_pickle_member(archive, member)), max_pickles=1)[0])
    except Exception:  # unreadable: the load error says why
        return [name for name in dict.fromkeys(found) if name not in allowed], None
    unsafe = [name for name in dict.fromkeys(found) if name not in allowed]
    return unsafe, hint


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_BOILERPLATE)]
    return (useful or lines or [type(error).__name__])[0]


def _unsafe_globals(error: BaseException) -> list[str]:
    return _UNSAFE_GLOBAL.findall(str(error))


# -- where the weights are: a search of the loaded object ---------------------------------------------

_WEIGHT, _OPTIMIZER, _TOO_DEEP = "weight", "optimizer", "too deep"


class StateDict(NamedTuple):
    """The weights found in a checkpoint object, named relative to the key path ``nested_under``."""

    nested_under: str  # "model_state", "a/b"; "" when the names start at the top
    tensors: dict[str, Any]
    skipped: list[str]  # what was left out, as sentences for the source's notes
    optimizer_state: bool  # nothing but optimizer state was found: these tensors are its moments


def _is_optimizer_state(key: Any, value: Any) -> bool:
    named = key is not None and _OPTIMIZER_KEY.fullmatch(str(key)) is not None
    return named or (isinstance(value, Mapping) and "state" in value and "param_groups" in value)


def _tensor_paths(obj: Any, path: tuple[str, ...] = (), seen: set[int] | None = None,
                  optimizer: bool = False) -> Iterator[tuple[str, tuple[str, ...], Any]]:
    """(kind, key path, tensor) for every tensor in nested dicts, lists and tuples.

    Each container is entered once (a self-reference is not followed) and not below ``MAX_DEPTH``
    (reported as kind ``_TOO_DEEP``).
    """
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if len(path) >= MAX_DEPTH:
        yield _TOO_DEEP, path, None
        return
    children = obj.items() if isinstance(obj, Mapping) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in children:
        child = (*path, str(key))
        inner_optimizer = optimizer or _is_optimizer_state(key, value)
        if _is_tensor(value):
            yield (_OPTIMIZER if inner_optimizer else _WEIGHT), child, value
        elif isinstance(value, (Mapping, list, tuple)):
            yield from _tensor_paths(value, child, seen, inner_optimizer)


def _wrapper_path(obj: Any, weights: Mapping[tuple[str, ...], Any]) -> tuple[str, ...]:
    """The chain of known wrapper keys (``NESTED_KEYS``) from the top that still holds weights."""
    path: tuple[str, ...] = ()
    while isinstance(obj, Mapping) and len(path) < MAX_DEPTH:
        for key in NESTED_KEYS:
            candidate = (*path, key)
            if isinstance(obj.get(key), Mapping) and any(p[:len(candidate)] == candidate for p in weights):
                path, obj = candidate, obj[key]
                break
        else:
            break
    return path


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    shortest = min(paths, key=len)
    for index, key in enumerate(shortest):
        if any(path[index] != key for path in paths):
            return shortest[:index]
    return shortest


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def examples(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (" …" if len(names) > shown else "")


def find_state_dict(obj: Any) -> StateDict | None:
    """The weights inside a checkpoint object, wherever they are nested; None for a non-container.

    Under a known wrapper key (Lightning's ``state_dict``, DeepSpeed's ``module`` …) when one holds
    tensors, else every tensor outside optimizer state. Names are relative to the deepest key path
    all the weights share: one nested state dict keeps its own names (``nested_under`` says where it
    was), several are told apart by their key paths (``generator.conv.weight``).
    """
    if not isinstance(obj, (Mapping, list, tuple)):
        return None
    weights: dict[tuple[str, ...], Any] = {}
    optimizer: dict[tuple[str, ...], Any] = {}
    too_deep = False
    for kind, path, tensor in _tensor_paths(obj, optimizer=_is_optimizer_state(None, obj)):
        if kind == _TOO_DEEP:
            too_deep = True
        else:
            (weights if kind == _WEIGHT else optimizer)[path] = tensor
    wrapper = _wrapper_path(obj, weights)
    chosen = {path: tensor for path, tensor in weights.items() if path[:len(wrapper)] == wrapper}
    skipped = []
    outside = [path for path in weights if path not in chosen]
    if outside:
        skipped.append(f"read the weights under '{'/'.join(wrapper)}'; {counted(len(outside), 'other tensor')} "
                       f"not checked ({examples(['.'.join(path) for path in outside])})")
    if optimizer and chosen:
        skipped.append(f"optimizer state not checked ({counted(len(optimizer), 'tensor')})")
    elif optimizer:
        skipped.append(f"only optimizer state found ({counted(len(optimizer), 'tensor')}): listed as buffers, "
                       "not judged")
    if too_deep:
        skipped.append(f"objects nested deeper than {MAX_DEPTH} levels not searched for tensors")
    optimizer_state = not chosen and bool(optimizer)
    chosen = chosen or optimizer
    if not chosen:
        return StateDict("", {}, skipped, False)
    base = _common_prefix([path[:-1] for path in chosen])
    tensors = {".".join(path[len(base):]): tensor for path, tensor in chosen.items()}
    return StateDict("/".join(base), tensors, skipped, optimizer_state)


def flatten_tensors(mapping: Mapping) -> Iterator[tuple[str, Any]]:
    """Tensors of a state dict; nested containers become dotted names."""
    for kind, path, tensor in _tensor_paths(mapping):
        if kind != _TOO_DEEP:
            yield ".".join(path), tensor


def scan_problem(path: str) -> Problem | None:
    """WL002 for a pickle whose weights are not judged, from its opcodes alone (nothing loaded)."""
    from weightlint.sources.torchscript import (
        is_torchscript_archive,
        script_offending_globals,
    )

    if is_torchscript_archive(path):
        with zipfile.ZipFile(path) as archive:
            offending = script_offending_globals(archive)
    else:
        offending = offending_globals(path)[0]
    return unsafe_pickle_problem(display_path(path), offending) if offending else None


class TorchPickleSource(Source):
    def __init__(self, path: str) -> None:
        super().__init__(path=display_path(path), format="pytorch", files=[display_path(path)])
        self._real_path = str(path)

    def items(self) -> Iterator[Item]:
        yield from read_torch_pickle(self._real_path, notes=self.notes)


def read_torch_pickle(path: str, only: set[str] | None = None, notes: list[str] | None = None) -> Iterator[Item]:
    """Records of a torch.save file; what was left out of the search goes to ``notes``."""
    shown = display_path(path)
    try:
        obj = _load(path)
    except limits.LimitExceeded as error:
        yield limit_problem(shown, error)
        return
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError, zipfile errors …
        # The unpicklers name the first global they refused; a pickle PyTorch's cannot even parse
        # (written by pickle.dump) is read opcode by opcode, still never executed. The scan names
        # every offending global, fully qualified; the unpickler's word is the fallback.
        scanned, hint = offending_globals(path)
        refused = ([error.name] if isinstance(error, RefusedGlobal) else
                   _unsafe_globals(error) if isinstance(error, pickle.UnpicklingError) else [])
        offending = scanned or list(dict.fromkeys(n if "." in n else f"builtins.{n}" for n in refused))
        if offending:
            yield unsafe_pickle_problem(shown, offending)
        else:
            yield Problem("unreadable", shown, f"not a PyTorch checkpoint: {hint or _reason(error)}")
        return
    if _is_tensor(obj):
        obj = {"tensor": obj}
    found = find_state_dict(obj)
    if found is not None and notes is not None:
        notes.extend(f"{shown}: {sentence}" for sentence in found.skipped)
    if found is None or not found.tensors:
        yield Problem("unreadable", shown, f"no tensors found (top-level object is {type(obj).__name__})")
        return
    metadata = {"nested_under": found.nested_under} if found.nested_under else {}
    if found.optimizer_state:
        metadata["buffer"] = True
    for name, tensor in found.tensors.items():
        if only is not None and name not in only:
            continue
        try:
            yield _record(name, tensor, shown, metadata)
        except Exception as error:  # a malformed rebuild call
            yield Problem("unreadable", shown, f"tensor unreadable: {short_reason(error)}", tensor=name)


def _record(name: str, tensor: Any, shown: str, metadata: dict) -> Item:
    """A tensor's record, or WL007 for a view that repeats its storage (``expand()``): its values
    are the stored ones, and materializing it could take far more memory than the file holds."""
    if is_deferred_tensor(tensor):
        shape, dtype = tensor.shape_and_dtype()
        expanded, load = tensor.expanded(), tensor.load
    else:
        shape, dtype, load = tuple(tensor.shape), tensor.dtype, lambda: tensor
        stored = tensor.untyped_storage().nbytes() // max(1, tensor.element_size())
        expanded = (tensor.numel(), stored) if tensor.numel() > stored else None
    if expanded is not None:
        return Problem("unsupported-tensor", shown, f"an expanded view: {expanded[0]:,} values repeat "
                       f"{expanded[1]:,} stored ones; values not checked", tensor=name,
                       detail={"shape": list(shape)})
    return TensorRecord(name=name, shape=tuple(shape), dtype=dtype, file=shown, load=load, format="pytorch",
                        metadata=dict(metadata))
