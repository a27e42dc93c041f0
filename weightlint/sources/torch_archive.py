"""torch.save and torch.jit.save zips, unpickled without running code and without torch.load.

The archive's ``data.pkl`` is read with an unpickler that hands out only containers, PyTorch's
weights-only allowlist and deferred tensors: each tensor is the rebuild call PyTorch would make,
made only when the tensor is checked, from its storage member read through ``zipfile`` (so a
re-zipped archive with compressed members reads right, a member shorter than its tensors is an
error, never the neighbouring member's bytes). Every other global is refused (WL002).
"""

from __future__ import annotations

import functools
import importlib
import io
import math
import os
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass
from functools import partial
from typing import Any

from weightlint.config import limits
from weightlint.sources.pickle_scan import allowed_globals, python3_name

# Objects nested deeper are not searched: a self-referencing or adversarial pickle must not exhaust the stack.
MAX_DEPTH = 64
ZIP_MAGIC = b"PK\x03\x04"
# torch.jit._pickle's helpers tag lists with their TorchScript type; each returns its argument.
_JIT_HELPERS = {f"torch.jit._pickle.{name}" for name in (
    "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_tensor_from_id",
    "restore_type_tag")}
_REBUILD_PREFIXES = ("torch._utils._rebuild_", "torch._tensor._rebuild_")
# Rebuild functions whose arguments give the shape (and the storage the dtype) without reading data.
_STORAGE_REBUILDS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_qtensor")
_PARAMETER_REBUILDS = ("_rebuild_parameter", "_rebuild_parameter_with_state")
_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: C types such as OrderedDict, torch.Size, torch.device


def starts_like_zip(path: str) -> bool:
    """Whether the file begins with a zip entry, as torch.load decides (a legacy pickle with a zip
    appended is a pickle to torch.load, whatever ``zipfile.is_zipfile`` says about its end)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == ZIP_MAGIC
    except OSError:
        return False


@functools.lru_cache(maxsize=4)
def _members(archive_path: str, version: tuple[int, int]) -> dict[str, zipfile.ZipInfo]:
    """The archive's central directory, parsed once per file version (not once per tensor)."""
    with zipfile.ZipFile(archive_path) as archive:
        return {info.filename: info for info in archive.infolist()}


def read_member(archive_path: str, member: str, size: int) -> bytearray:
    """The first ``size`` bytes of a member: read in place when stored, through zipfile when
    compressed (never more than ``size`` decompressed). ValueError when the member is shorter."""
    status = os.stat(archive_path)
    info = _members(archive_path, (status.st_mtime_ns, status.st_size)).get(member)
    if info is None:
        raise ValueError(f"no member {member} in the archive")
    if info.file_size < size:
        raise ValueError(f"{member} holds {info.file_size} bytes, its tensors need {size}")
    buffer = bytearray(size)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(archive_path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            if local[:4] != ZIP_MAGIC:
                raise ValueError(f"{member}: bad local zip header")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            if handle.readinto(buffer) != size:
                raise ValueError(f"{member}: unexpected end of file")
    else:
        with zipfile.ZipFile(archive_path) as archive, archive.open(info) as handle:
            if handle.readinto(buffer) != size:
                raise ValueError(f"{member}: unexpected end of data")
    return buffer


def read_pickle_member(archive: zipfile.ZipFile, member: str) -> bytes:
    """A pickle member, at most ``limits.pickle_bytes`` decompressed (a zip bomb stops there)."""
    limit = limits.current().pickle_bytes
    limits.check("pickle_bytes", archive.getinfo(member).file_size, f"{member}: decompressed size")
    with archive.open(member) as handle:
        data = handle.read(limit + 1)
    limits.check("pickle_bytes", len(data), f"{member}: decompressed size")
    return data


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

        size = self.numel * self.dtype.itemsize
        raw = read_member(self.archive, self.member, size)
        # frombuffer shares the bytes (and keeps them alive): no second copy of the storage.
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if size else torch.UntypedStorage(0)
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

    def expanded(self) -> tuple[int, int] | None:
        """(values, stored values) when the tensor is a view repeating its storage (zero strides,
        ``expand()``): materializing it could take far more memory than the file holds."""
        if self.rebuild.__name__ in _STORAGE_REBUILDS and isinstance(self.args[0], _Storage):
            numel = math.prod(int(size) for size in self.args[2])
            if numel > self.args[0].numel:
                return numel, self.args[0].numel
        if self.rebuild.__name__ in _PARAMETER_REBUILDS and isinstance(self.args[0], _Tensor):
            return self.args[0].expanded()
        return None

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


class ArchiveUnpickler(pickle.Unpickler):
    """Builds nothing but containers, stand-ins and deferred tensors; any other global is refused.

    ``script``: a TorchScript archive, whose ``__torch__`` classes become inert stand-ins.
    """

    def __init__(self, data: bytes, archive: str, tensor_dir: str, big_endian: bool, script: bool) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._tensor_dir = tensor_dir
        self._big_endian = big_endian
        self._script = script
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Only immutable objects or fresh wrappers are handed out: BUILD may set attributes on them.
        full = python3_name(module, name)
        if not self._script and (full.startswith("__torch__.") or full in _JIT_HELPERS):
            raise RefusedGlobal(full)
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
            raise pickle.UnpicklingError(f"{full} is not expected in a checkpoint archive")
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"persistent id names no storage class: {str(pid)[:80]}")
        return _Storage(self._archive, f"{self._tensor_dir}{key}", storage_type.dtype, int(numel), self._big_endian)


def root_dir(archive: zipfile.ZipFile) -> str:
    """The archive's top folder (its name is the file's at save time), where data.pkl lies."""
    for name in archive.namelist():
        if name.endswith("/data.pkl") and name.count("/") == 1:
            return name[: -len("data.pkl")]
    raise ValueError("no data.pkl in the archive")


def unpickle(archive: zipfile.ZipFile, path: str, root: str, name: str, script: bool) -> Any:
    """``<root><name>.pkl`` with its tensors deferred to ``<root><name>/``."""
    big_endian = f"{root}byteorder" in archive.namelist() and archive.read(f"{root}byteorder").strip() == b"big"
    data = read_pickle_member(archive, f"{root}{name}.pkl")
    return ArchiveUnpickler(data, path, f"{root}{name}/", big_endian, script).load()


def is_deferred_tensor(value: Any) -> bool:
    return isinstance(value, _Tensor)
