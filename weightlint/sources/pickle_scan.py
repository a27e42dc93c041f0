"""What a pickle would import, read from its opcodes without executing anything.

``pickletools.genops`` walks the opcodes; GLOBAL, STACK_GLOBAL (with the strings it consumes, memo
included), INST and the copyreg extensions name every global a load would import. Globals are then
graded: PyTorch's weights-only allowlist is safe, a few classes of trainer state are inert, anything
else may run code (WL002).
"""

from __future__ import annotations

import _compat_pickle
import pickletools
import re
from typing import IO, Any

from weightlint.sources.base import Problem

_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy (non-zip) torch.save file
# How a few builtins modules are imported in practice (``os.system`` pickles as ``posix.system``).
_MODULE_ALIASES = {"posix": "os", "nt": "os", "_io": "io"}
_LISTED_GLOBALS = 5  # the message names this many; the finding's ``globals`` keeps them all
_allowed: set[str] | None = None
# Classes that Hugging Face Trainer and Accelerate pickle into trainer state (``training_args.bin``,
# ``rng_state.pth``), and the ``argparse.Namespace`` of older training scripts (rxnmapper's
# published training_args.bin holds one), as found in files they write: dataclasses of plain values, enums and NumPy
# arrays, rebuilt by ``__new__`` and ``__setstate__``/``__dict__`` updates that run no code of the
# file. A pickle naming only these is WL002 info, not an error.
INERT_GLOBALS = frozenset({
    "transformers.training_args.TrainingArguments", "transformers.training_args_seq2seq.Seq2SeqTrainingArguments",
    "transformers.training_args.OptimizerNames", "transformers.trainer_utils.IntervalStrategy",
    "transformers.trainer_utils.SaveStrategy", "transformers.trainer_utils.HubStrategy",
    "transformers.trainer_utils.SchedulerType", "transformers.trainer_utils.FSDPOption",
    "transformers.debug_utils.DebugOption", "transformers.trainer_pt_utils.AcceleratorConfig",
    "accelerate.utils.dataclasses.DistributedType", "accelerate.state.PartialState",
    "argparse.Namespace",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "torch.device", "torch.torch_version.TorchVersion",
})


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


def _shown_global(name: str) -> str:
    module, _, attr = name.rpartition(".")
    alias = _MODULE_ALIASES.get(module)
    return f"{name} ({alias}.{attr})" if alias and attr else name


def is_inert(name: str) -> bool:
    """A global known to rebuild plain data without running code: trainer state's classes."""
    return name in INERT_GLOBALS or (name.startswith(("numpy.dtypes.", "numpy._core.dtypes."))
                                     and name.endswith("DType"))


def unsafe_pickle_problem(shown: str, offending: list[str]) -> Problem:
    """WL002 naming the first few globals a pickle would import; ``detail`` keeps them all.

    Graded: when every global is a known-inert class of trainer state (``INERT_GLOBALS``) the
    finding is informational (``torch.load(weights_only=True)`` still refuses the file, but
    nothing in it runs code); any other global can run code and is an error.
    """
    shown_names = [_shown_global(name) for name in offending[:_LISTED_GLOBALS]]
    more = len(offending) - _LISTED_GLOBALS
    names = ", ".join(shown_names) + (f" and {more} more" if more > 0 else "")
    if all(is_inert(name) for name in offending):
        return Problem("unsafe-pickle", shown, f"pickles {names}: classes of trainer state known to be inert, "
                       "which torch.load(weights_only=True) refuses; nothing in it runs code",
                       detail={"globals": offending, "inert": True})
    return Problem("unsafe-pickle", shown, f"loading would import or call {names}; not executed",
                   detail={"globals": offending})


