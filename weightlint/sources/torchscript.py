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
import io
import zipfile
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Problem, Source, display_path, short_reason
from weightlint.sources.pickle_scan import (
    allowed_globals,
    scan_pickle,
    unsafe_pickle_problem,
)
from weightlint.sources.torch_archive import (
    _JIT_HELPERS,
    MAX_DEPTH,
    RefusedGlobal,
    _ScriptObject,
    _Tensor,
    read_pickle_member,
    root_dir,
    starts_like_zip,
    unpickle,
)
from weightlint.sources.torch_pickle import counted, examples


def is_torchscript_archive(path: str) -> bool:
    """A zip holding TorchScript code or constants, which a torch.save checkpoint never has."""
    try:
        if not starts_like_zip(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except Exception:  # a corrupt zip (bad offsets, names that are not UTF-8 …) is read, and reported, as a checkpoint
        return False
    return any(name.split("/")[-1] == "constants.pkl" or "code" in name.split("/")[:-1] for name in names)


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


def script_offending_globals(archive: zipfile.ZipFile) -> list[str]:
    """Globals of the archive's pickles, read from the opcodes, that TorchScript weights never need."""
    allowed = allowed_globals() | _JIT_HELPERS
    found: list[str] = []
    for member in archive.namelist():
        if member.endswith(".pkl"):
            found.extend(scan_pickle(io.BytesIO(read_pickle_member(archive, member)), max_pickles=1)[0])
    return [name for name in dict.fromkeys(found) if name not in allowed and not name.startswith("__torch__.")]


def _read_archive(archive: zipfile.ZipFile, path: str) -> tuple[_ModuleTree, int]:
    """The module tree of data.pkl, and how many non-empty tensors constants.pkl holds."""
    root = root_dir(archive)
    model = unpickle(archive, path, root, "data", script=True)
    if not isinstance(model, _ScriptObject):
        raise ValueError(f"data.pkl holds a {type(model).__name__}, not a TorchScript module")
    tree = _ModuleTree(_Declarations(archive, f"{root}code/"))
    tree.module(model)
    has_constants = f"{root}constants.pkl" in archive.namelist()
    return tree, _constant_tensors(unpickle(archive, path, root, "constants", script=True)) if has_constants else 0


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
            offending = script_offending_globals(archive)
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
