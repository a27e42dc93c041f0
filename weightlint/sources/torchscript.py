"""TorchScript archives (``torch.jit.save``), read without running any of their code.

An archive is a zip like a torch.save checkpoint plus the model's code (``code/``) and
``constants.pkl``. Its ``data.pkl`` pickles the module tree as ``__torch__.*`` classes that only the
TorchScript runtime can build: ``torch.load(weights_only=True)`` refuses the archive and
``torch.jit.load`` compiles and runs the code, so neither is used. ``data.pkl`` is read with an
unpickler that turns ``__torch__`` objects into inert stand-ins holding their pickled state, defers
each tensor to its storage in ``data/`` (read when the tensor is checked) and refuses every other
global outside PyTorch's weights-only allowlist (WL002). Which attributes are parameters and buffers
comes from the class declarations in ``code/``, parsed with ``ast``, never executed.
"""

from __future__ import annotations

import ast
import importlib
import io
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator, Mapping

from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Problem, Source, display_path, short_reason
from weightlint.sources.torch_pickle import (MAX_DEPTH, allowed_globals, counted, examples, python3_name,
                                             scan_pickle, unsafe_pickle_problem)

# torch.jit._pickle's helpers tag lists with their TorchScript type; each returns its argument.
_JIT_HELPERS = {f"torch.jit._pickle.{name}" for name in (
    "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_tensor_from_id",
    "restore_type_tag")}
_REBUILD_PREFIXES = ("torch._utils._rebuild_", "torch._tensor._rebuild_")
# Rebuild functions whose arguments give the shape (and the storage the dtype) without reading data.
_STORAGE_REBUILDS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_qtensor")
_PARAMETER_REBUILDS = ("_rebuild_parameter", "_rebuild_parameter_with_state")
_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: C types such as OrderedDict, torch.Size, torch.device


def is_torchscript_archive(path: str) -> bool:
    """A zip holding TorchScript code or constants, which a torch.save checkpoint never has."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(name.split("/")[-1] == "constants.pkl" or "code" in name.split("/")[:-1] for name in names)


class RefusedGlobal(pickle.UnpicklingError):
    """A global outside what a TorchScript archive may name: the archive is unsafe."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name}")
        self.name = name


# The unpickler's own objects are frozen with slots: a pickle's BUILD opcode cannot rewrite them
# (say, point a storage at another file).
@dataclass(frozen=True, slots=True)
class _StorageType:
    """What a storage class global stands for in a persistent id: the element type."""

    dtype: Any  # torch.dtype


@dataclass(frozen=True, slots=True)
class _Storage:
    """A storage of the archive, read only when a tensor on it is loaded."""

    archive: str
    member: str
    dtype: Any  # torch.dtype
    numel: int
    big_endian: bool

    def read(self) -> Any:
        import torch

        with zipfile.ZipFile(self.archive) as archive:
            raw = archive.read(self.member)
        size = self.numel * self.dtype.itemsize
        if len(raw) < size:
            raise ValueError(f"{self.member} holds {len(raw)} bytes, its tensors need {size}")
        untyped = torch.UntypedStorage.from_buffer(raw if len(raw) == size else raw[:size], dtype=torch.uint8)
        if self.big_endian and self.dtype.itemsize > 1:
            untyped.byteswap(self.dtype)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=self.dtype, _internal=True)


class _Tensor:
    """A tensor of the archive: the rebuild call PyTorch would make, deferred until its data is needed."""

    __slots__ = ("rebuild", "args")

    def __init__(self, rebuild: Any, *args: Any) -> None:
        self.rebuild = rebuild
        self.args = args

    def load(self) -> Any:
        return self.rebuild(*(_materialized(arg) for arg in self.args)).detach()

    def shape_and_dtype(self) -> tuple[tuple[int, ...], Any]:
        name, args = self.rebuild.__name__, self.args
        if name in _STORAGE_REBUILDS and isinstance(args[0], _Storage):
            return tuple(int(size) for size in args[2]), args[0].dtype
        if name == "_rebuild_tensor_v3" and isinstance(args[0], _Storage):
            return tuple(int(size) for size in args[2]), args[6]
        if name in _PARAMETER_REBUILDS and isinstance(args[0], _Tensor):
            return args[0].shape_and_dtype()
        tensor = self.load()  # sparse, nested, subclass …: rare enough to build once for the shape
        return tuple(tensor.shape), tensor.dtype


def _materialized(value: Any, depth: int = 0) -> Any:
    """Rebuild arguments with storages read and tensors built (quantizer parameters hold tensors)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"rebuild arguments nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, _Storage):
        return value.read()
    if isinstance(value, _Tensor):
        return value.load()
    if isinstance(value, (list, tuple)):
        return type(value)(_materialized(item, depth + 1) for item in value)
    return value


class _ScriptObject:
    """An inert stand-in for a ``__torch__`` object: its class name and the state pickled for it."""

    qualified_name = "__torch__"
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.state = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _plain_value(value: Any, *_type_tag: Any) -> Any:
    return value


def _inert(obj: Any) -> bool:
    """Nothing a pickle's BUILD could change: an immutable type, or an object without a writable __dict__."""
    if isinstance(obj, type):
        return bool(obj.__flags__ & _IMMUTABLE_TYPE)
    return not isinstance(getattr(obj, "__dict__", None), dict)


def _storage_dtype(storage_class: Any) -> Any:
    import torch

    if storage_class is torch.UntypedStorage:
        return torch.uint8
    with warnings.catch_warnings():  # the legacy classes (FloatStorage …) warn that TypedStorage is deprecated
        warnings.simplefilter("ignore")
        dtype = getattr(storage_class, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError(f"{storage_class} is not a storage class of one dtype")
    return dtype


class _ArchiveUnpickler(pickle.Unpickler):
    """Builds nothing but containers, stand-ins and deferred tensors; any other global is refused."""

    def __init__(self, data: bytes, archive: str, tensor_dir: str, big_endian: bool) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._tensor_dir = tensor_dir
        self._big_endian = big_endian
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Only immutable objects or fresh wrappers are handed out: BUILD may set attributes on them.
        full = python3_name(module, name)
        if full.startswith("__torch__."):
            if full not in self._classes:
                self._classes[full] = type(name, (_ScriptObject,), {"qualified_name": full})
            return self._classes[full]
        if full in _JIT_HELPERS:
            return partial(_plain_value)
        if full not in allowed_globals():
            raise RefusedGlobal(full)
        module, _, name = full.rpartition(".")
        found = getattr(importlib.import_module(module), name)
        if full.startswith(_REBUILD_PREFIXES):
            return partial(_Tensor, found)
        if name.endswith("Storage"):
            return _StorageType(_storage_dtype(found))
        if not _inert(found):
            raise pickle.UnpicklingError(f"{full} is not expected in a TorchScript archive")
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"persistent id names no storage class: {str(pid)[:80]}")
        return _Storage(self._archive, f"{self._tensor_dir}{key}", storage_type.dtype, int(numel), self._big_endian)


@dataclass(frozen=True)
class _Declaration:
    """What ``code/`` declares about a class: whether it is a module, its parameters and buffers."""

    is_module: bool
    parameters: tuple[str, ...]
    buffers: tuple[str, ...]


def _declaration(node: ast.ClassDef) -> _Declaration:
    lists: dict[str, tuple[str, ...]] = {}
    for statement in node.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and statement.targets[0].id in ("__parameters__", "__buffers__")):
            try:
                lists[statement.targets[0].id] = tuple(str(name) for name in ast.literal_eval(statement.value))
            except (ValueError, TypeError, SyntaxError, RecursionError):
                pass  # not a literal list: nothing declared
    is_module = any(isinstance(base, ast.Name) and base.id == "Module" for base in node.bases)
    return _Declaration(is_module, lists.get("__parameters__", ()), lists.get("__buffers__", ()))


class _Declarations:
    """Class declarations of the archive, one ``code/`` file parsed per module name, on demand."""

    def __init__(self, archive: zipfile.ZipFile, code_dir: str) -> None:
        self._archive = archive
        self._code_dir = code_dir
        self._files: dict[str, dict[str, _Declaration]] = {}

    def get(self, qualified_name: str) -> _Declaration | None:
        module, _, name = qualified_name.rpartition(".")
        if module not in self._files:
            self._files[module] = self._parse(module)
        return self._files[module].get(name)

    def _parse(self, module: str) -> dict[str, _Declaration]:
        try:
            source = self._archive.read(f"{self._code_dir}{module.replace('.', '/')}.py").decode("utf-8")
            tree = ast.parse(source)
        except (KeyError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError, MemoryError):
            return {}
        return {node.name: _declaration(node) for node in tree.body if isinstance(node, ast.ClassDef)}


class _ModuleTree:
    """The parameters and buffers of an unpickled module tree, named and ordered as ``state_dict()``."""

    def __init__(self, declarations: _Declarations) -> None:
        self._declarations = declarations
        self.weights: list[tuple[str, _Tensor, bool, str]] = []  # name, tensor, is a buffer, module class
        self._other_tensors: list[tuple[str, _Tensor]] = []  # in plain attributes and non-module objects
        self.undeclared: set[str] = set()  # classes without a declaration in code/
        self.too_deep = False
        self._seen: set[int] = set()

    def unchecked(self) -> list[str]:
        """Tensors that are neither parameters nor buffers (LSTM's ``_flat_weights`` repeat its parameters)."""
        weights = {id(tensor) for _, tensor, _, _ in self.weights}
        return [name for name, tensor in self._other_tensors if id(tensor) not in weights]

    def _is_module(self, obj: _ScriptObject) -> bool:
        declaration = self._declarations.get(obj.qualified_name)
        return declaration is None or declaration.is_module

    def module(self, obj: _ScriptObject, prefix: str = "", depth: int = 0) -> None:
        if id(obj) in self._seen:
            return
        self._seen.add(id(obj))
        if depth > MAX_DEPTH:
            self.too_deep = True
            return
        if not isinstance(obj.state, Mapping):  # a custom __getstate__: no named attributes
            self._other(obj.state, prefix.rstrip(".") or "<root>", depth + 1)
            return
        declaration = self._declarations.get(obj.qualified_name)
        if declaration is None:
            self.undeclared.add(obj.qualified_name)
        class_name = obj.qualified_name.rpartition(".")[2]
        parameters, buffers, submodules = [], [], []
        for attribute, value in obj.state.items():
            name = f"{prefix}{attribute}"
            if isinstance(value, _Tensor) and (declaration is None or attribute in declaration.parameters):
                parameters.append((name, value, False, class_name))
            elif isinstance(value, _Tensor) and attribute in declaration.buffers:
                buffers.append((name, value, True, class_name))
            elif isinstance(value, _ScriptObject) and self._is_module(value):
                submodules.append((value, f"{name}."))
            else:
                self._other(value, name, depth + 1)
        self.weights.extend(parameters + buffers)
        for submodule, subprefix in submodules:
            self.module(submodule, subprefix, depth + 1)

    def _other(self, value: Any, name: str, depth: int) -> None:
        if isinstance(value, _Tensor):
            self._other_tensors.append((name, value))
            return
        if not isinstance(value, (_ScriptObject, Mapping, list, tuple)) or id(value) in self._seen:
            return
        self._seen.add(id(value))
        if depth > MAX_DEPTH:
            self.too_deep = True
            return
        if isinstance(value, _ScriptObject):
            self._other(value.state, name, depth + 1)
            return
        children = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, inner in children:
            self._other(inner, f"{name}.{key}", depth + 1)


def _offending_globals(archive: zipfile.ZipFile) -> list[str]:
    """Globals of the archive's pickles, read from the opcodes, that TorchScript weights never need."""
    allowed = allowed_globals() | _JIT_HELPERS
    found: list[str] = []
    for member in archive.namelist():
        if member.endswith(".pkl"):
            found.extend(scan_pickle(io.BytesIO(archive.read(member)), max_pickles=1)[0])
    return [name for name in dict.fromkeys(found) if name not in allowed and not name.startswith("__torch__.")]


def _root_dir(archive: zipfile.ZipFile) -> str:
    """The archive's top folder (its name is the file's at save time), where data.pkl lies."""
    for name in archive.namelist():
        if name.endswith("/data.pkl") and name.count("/") == 1:
            return name[: -len("data.pkl")]
    raise ValueError("no data.pkl in the archive")


def _unpickle(archive: zipfile.ZipFile, path: str, root: str, name: str) -> Any:
    big_endian = f"{root}byteorder" in archive.namelist() and archive.read(f"{root}byteorder").strip() == b"big"
    unpickler = _ArchiveUnpickler(archive.read(f"{root}{name}.pkl"), path, f"{root}{name}/", big_endian)
    return unpickler.load()


def _read_archive(archive: zipfile.ZipFile, path: str) -> tuple[_ModuleTree, int]:
    """The module tree of data.pkl, and how many non-empty tensors constants.pkl holds."""
    root = _root_dir(archive)
    model = _unpickle(archive, path, root, "data")
    if not isinstance(model, _ScriptObject):
        raise ValueError(f"data.pkl holds a {type(model).__name__}, not a TorchScript module")
    tree = _ModuleTree(_Declarations(archive, f"{root}code/"))
    tree.module(model)
    has_constants = f"{root}constants.pkl" in archive.namelist()
    return tree, _constant_tensors(_unpickle(archive, path, root, "constants")) if has_constants else 0


def _constant_tensors(constants: Any) -> int:
    """Non-empty tensors among the code's constants (``CONSTANTS.c0`` …, a flat tuple)."""
    tensors = [value for value in constants if isinstance(value, _Tensor)] if isinstance(constants, tuple) else []
    return sum(1 for tensor in tensors if 0 not in tensor.shape_and_dtype()[0])


class TorchScriptSource(Source):
    def __init__(self, path: str) -> None:
        super().__init__(path=display_path(path), format="torchscript", files=[display_path(path)])
        self._real_path = str(path)

    def items(self) -> Iterator[Item]:
        yield from read_torchscript(self._real_path, self.notes)


def read_torchscript(path: str, notes: list[str]) -> Iterator[Item]:
    """The parameters and buffers of a TorchScript archive; what else it holds goes to ``notes``."""
    shown = display_path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            offending = _offending_globals(archive)
            if not offending:
                tree, constant_tensors = _read_archive(archive, path)
    except RefusedGlobal as error:  # a global the opcode scan could not name
        offending = [error.name]
    except Exception as error:  # zip, pickle and malformed-state errors alike
        yield Problem("unreadable", shown, f"not a readable TorchScript archive: {short_reason(error)}")
        return
    if offending:
        yield unsafe_pickle_problem(shown, offending)
        return
    unchecked = tree.unchecked()
    if unchecked:
        notes.append(f"{shown}: {counted(len(unchecked), 'tensor')} neither parameter nor buffer (TorchScript "
                     f"attributes, not in state_dict()) not checked: {examples(unchecked)}")
    if constant_tensors:
        notes.append(f"{shown}: {counted(constant_tensors, 'tensor constant')} of the TorchScript code not checked")
    if tree.undeclared:
        notes.append(f"{shown}: no declaration in code/ for {examples(sorted(tree.undeclared))}; "
                     "their tensor attributes are all taken as parameters")
    if tree.too_deep:
        notes.append(f"{shown}: objects nested deeper than {MAX_DEPTH} levels not searched for tensors")
    for name, tensor, is_buffer, class_name in tree.weights:
        try:
            shape, dtype = tensor.shape_and_dtype()
            yield TensorRecord(name=name, shape=shape, dtype=dtype, file=shown, load=tensor.load,
                               format="torchscript",
                               metadata={"module_type": class_name, **({"buffer": True} if is_buffer else {})})
        except Exception as error:  # a malformed rebuild call
            yield Problem("unreadable", shown, f"tensor unreadable: {short_reason(error)}", tensor=name)
