"""PyTorch pickles (``.bin .pt .pth .ckpt``), loaded with ``weights_only=True`` and memory-mapped.

Nothing in the file is ever executed: PyTorch's restricted unpickler refuses every global outside
plain tensors and containers. When loading fails, the pickle is read opcode by opcode
(``pickletools``, nothing imported or called) to name every global it would import; any outside
PyTorch's allowlist is reported as WL002. This also covers plain ``pickle.dump`` files (protocol 4+),
which PyTorch's unpickler cannot parse at all.

Trainers nest the weights anywhere (``{"model_state": ..., "optimizer_state": ..., "step": 3}``):
the loaded object is searched for tensors, optimizer state left out.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
import re
import warnings
import zipfile
from typing import IO, Any, Iterator, Mapping, NamedTuple

from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Problem, Source, display_path

# Where trainers nest the model's weights (Lightning, DeepSpeed, plain ``{"model": ...}``, EMA): when
# one of these holds tensors, tensors elsewhere (Lightning's callback scores …) are not weights.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "ema_state_dict", "network", "net")
# Optimizer state is not weights, wherever it is nested (any ``{"state", "param_groups"}`` mapping too).
_OPTIMIZER_KEY = re.compile(r"optim(izer)?s?(_?states?)?(_?dicts?)?|exp_avg(_sq)?|max_exp_avg_sq|momentum_buffer",
                            re.IGNORECASE)
# Deeper objects are not searched: a self-referencing or adversarial pickle must not exhaust the stack.
MAX_DEPTH = 64
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation",
                "Re-running `torch.load`", "In PyTorch 2.6", "You can use", "WeightsUnpickler error")


def _is_tensor(value: Any) -> bool:
    """A torch.Tensor, asked without importing torch (a mapping of them means torch is loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _load(path: str) -> Any:
    import torch  # a pickle needs PyTorch to be read; safetensors, GGUF and ONNX files do not

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


# -- static scan: what a pickle would import, read from its opcodes without executing anything --------

_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy (non-zip) torch.save file
# How a few builtins modules are imported in practice (``os.system`` pickles as ``posix.system``).
_MODULE_ALIASES = {"posix": "os", "nt": "os", "_io": "io"}
_LISTED_GLOBALS = 5  # the message names this many; the finding's ``globals`` keeps them all
_allowed: set[str] | None = None


def allowed_globals() -> set[str]:
    """The globals PyTorch's restricted unpickler accepts (plain tensors, storages, containers)."""
    global _allowed
    if _allowed is None:
        try:
            from torch import _weights_only_unpickler

            _allowed = set(_weights_only_unpickler._get_allowed_globals())
        except Exception:  # private API: fall back to the obvious set
            _allowed = set()
        _allowed |= {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.Size",
                     "torch._utils._rebuild_parameter", "_codecs.encode", "builtins.set"}
    return _allowed


def python3_name(module: str, attr: str) -> str:
    """Protocol 0-2 pickles name Python 2 modules (``__builtin__.set``); map them as pickle does."""
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{attr}"


def _scan_one(stream: IO[bytes]) -> tuple[list[str], bool] | None:
    """Globals of the next complete pickle in ``stream`` and whether it is torch's magic number.

    None when the bytes are not one complete pickle: globals of garbage are not trusted.
    """
    found: list[str] = []
    memo: dict[int, Any] = {}
    strings: list[str] = []  # strings pushed so far, most recent last (STACK_GLOBAL's operands)
    last: Any = None  # what the previous opcode left on top of the stack, when it is a string
    magic = False
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name = opcode.name
            top: Any = None
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.append(python3_name(module, attr))
            elif name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]) if len(strings) >= 2 else "<unresolved global>")
            elif name in ("EXT1", "EXT2", "EXT4"):
                found.append(f"<copyreg extension {arg}>")
            elif name in _STRING_OPS:
                top = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
                strings.append(top)
            elif name == "MEMOIZE":
                memo[len(memo)] = last
                top = last
            elif name in _PUT_OPS:
                memo[int(arg)] = last
                top = last
            elif name in _GET_OPS:
                top = memo.get(int(arg))
                if isinstance(top, str):
                    strings.append(top)
            elif name == "LONG1" and arg == _TORCH_MAGIC:
                magic = True
            elif name == "FRAME":
                top = last
            last = top
    except Exception:  # not a complete pickle
        return None
    return found, magic


def scan_pickle(data: IO[bytes], max_pickles: int = 5) -> tuple[list[str], bool, bool]:
    """(globals, complete, torch_legacy) of the pickles at the start of ``data``, never executed.

    A legacy torch.save file is five pickles (magic, protocol, sys info, object, storage keys)
    followed by raw storage bytes, which are not scanned.
    """
    found: list[str] = []
    complete = False
    legacy = False
    for position in range(max_pickles):
        start = data.tell()
        if not data.read(1):
            break
        data.seek(start)
        scanned = _scan_one(data)
        if scanned is None:
            break
        globals_, magic = scanned
        if position == 0:
            legacy = magic
        found.extend(globals_)
        complete = True
    return found, complete, legacy


def _offending_globals(path: str) -> tuple[list[str], str | None]:
    """Unsafe globals the file's pickle(s) would import, and a better reason when it is a plain pickle."""
    allowed = allowed_globals()
    found: list[str] = []
    hint = None
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        with archive.open(member) as handle:
                            found.extend(scan_pickle(io.BytesIO(handle.read()), max_pickles=1)[0])
        else:
            with open(path, "rb") as handle:
                found, complete, legacy = scan_pickle(handle)
            if complete and not legacy:
                hint = "a plain Python pickle, not a file written by torch.save"
    except Exception:  # unreadable: the load error says why
        return [], None
    unsafe = [name for name in dict.fromkeys(found) if name not in allowed]
    return unsafe, hint


def _shown_global(name: str) -> str:
    module, _, attr = name.rpartition(".")
    alias = _MODULE_ALIASES.get(module)
    return f"{name} ({alias}.{attr})" if alias and attr else name


def unsafe_pickle_problem(shown: str, offending: list[str]) -> Problem:
    """WL002 naming the first few globals a pickle would import; ``detail`` keeps them all."""
    shown_names = [_shown_global(name) for name in offending[:_LISTED_GLOBALS]]
    more = len(offending) - _LISTED_GLOBALS
    names = ", ".join(shown_names) + (f" and {more} more" if more > 0 else "")
    return Problem("unsafe-pickle", shown, f"loading would import or call {names}; not executed",
                   detail={"globals": offending})


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
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError, zipfile errors …
        # PyTorch names the first global it refused; a pickle its unpickler cannot even parse
        # (protocol 4+, written by pickle.dump) is read opcode by opcode, still never executed.
        # The scan names every offending global, fully qualified; PyTorch names the first one only
        # (builtins without their module: ``exec``), so its word is the fallback.
        scanned, hint = _offending_globals(path)
        refused = _unsafe_globals(error) if isinstance(error, pickle.UnpicklingError) else []
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
        yield TensorRecord(
            name=name,
            shape=tuple(tensor.shape),
            dtype=tensor.dtype,
            file=shown,
            load=lambda tensor=tensor: tensor,
            format="pytorch",
            metadata=dict(metadata),
        )
