"""Input formats. ``resolve(path)`` turns what the user named into sources of tensor records.

Every format lives in its own module of this package; a source never holds the whole model in
memory, and a file it cannot read becomes a ``Problem`` (reported as WL001), never a crash.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Iterator

from weightlint.sources.base import Item, Problem, Source, display_path, limit_problem
from weightlint.sources.gguf_file import GGUFSource
from weightlint.sources.huggingface import INDEX_NAMES, ShardedSource
from weightlint.sources.memory import MemorySource
from weightlint.sources.onnx_file import OnnxSource
from weightlint.sources.safetensors_file import SafetensorsSource
from weightlint.sources.torch_pickle import TorchPickleSource
from weightlint.sources.torchscript import TorchScriptSource, is_torchscript_archive

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Pickles that hold no weights a folder scan judges, but whose globals are still checked (WL002).
ANY_PICKLE_SUFFIXES = (*PICKLE_SUFFIXES, ".pkl", ".pickle", ".jit")
CHECKPOINT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".gguf", ".onnx")
# Files that Hugging Face ``Trainer`` and Accelerate write next to the weights: trainer state, not
# weights (``training_args.bin`` even pickles a class). Folder discovery skips them; naming one
# explicitly still lints it.
TRAINER_STATE = ("training_args.bin", "optimizer*.pt", "optimizer*.bin", "scheduler*.pt", "scheduler*.bin",
                 "rng_state*.pth", "scaler*.pt", "random_states*.pkl")

# What folder discovery looks for, as the "no weight files found" note says it.
LOOKED_FOR = ("*.safetensors, *.bin, *.pt, *.pth, *.ckpt, *.gguf, *.onnx, or a shard index "
              "model.safetensors.index.json / pytorch_model.bin.index.json")
LFS_POINTER = b"version https://git-lfs.github.com/spec/"

__all__ = ["LOOKED_FOR", "Item", "Problem", "Source", "MemorySource", "GGUFSource", "OnnxSource", "TorchScriptSource", "resolve",
           "CHECKPOINT_SUFFIXES"]


class UnsupportedSource(Source):
    """A file weightlint recognizes but cannot read in this build: one WL001 (or the WL008 of a
    failure while recognizing it)."""

    def __init__(self, path: str, reason: str, fmt: str, kind: str = "unreadable") -> None:
        super().__init__(path=display_path(path), format=fmt, files=[display_path(path)])
        self._reason, self._kind = reason, kind

    def items(self) -> Iterator[Item]:
        yield Problem(self._kind, self.files[0], self._reason)


def _sniff(path: str) -> str:
    """Guess a format from the first bytes, for files with an unfamiliar suffix."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return "unreadable"
    if head[:4] == b"GGUF":
        return "gguf"
    if len(head) >= 9 and head[8:9] == b"{":  # a safetensors header length may begin with 0x80
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
        return "pytorch"
    return "unknown"


def _lfs_pointer(path: str) -> str | None:
    """Why the file is a Git LFS pointer rather than the weights, or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(200)
    except OSError:
        return None
    if not head.startswith(LFS_POINTER):
        return None
    size = next((line.split()[1].decode(errors="replace") for line in head.splitlines()
                 if line.startswith(b"size ") and len(line.split()) == 2), "?")
    return (f"a Git LFS pointer ({os.path.getsize(path)} bytes standing for a {size}-byte file), not the "
            "weights: run `git lfs pull` (in GitHub Actions: actions/checkout with `lfs: true`)")


def _is_pickle(path: str) -> bool:
    """Whether the file starts with one complete pickle (protocols 0 and 1 have no header byte)."""
    from weightlint.sources.pickle_scan import scan_pickle

    try:
        with open(path, "rb") as handle:
            return scan_pickle(handle, max_pickles=1)[1]
    except OSError:
        return False


def _pytorch_source(path: str) -> Source:
    """torch.save and torch.jit.save both write zips of pickles; TorchScript's also hold code."""
    return TorchScriptSource(path) if is_torchscript_archive(path) else TorchPickleSource(path)


def source_for_file(path: str) -> Source:
    """The source of one file, chosen by name and first bytes; never raises."""
    try:
        return _source_for_file(path)
    except Exception as error:  # recognizing a hostile file must not lose the rest of the run
        return UnsupportedSource(path, f"not checked: weightlint failed ({type(error).__name__}: {error})",
                                 "unknown", kind="internal-error")


def _source_for_file(path: str) -> Source:
    name = os.path.basename(path).lower()
    pointer = _lfs_pointer(path)
    if pointer is not None:
        return UnsupportedSource(path, pointer, "lfs-pointer")
    if name.endswith(".index.json"):
        return ShardedSource(path)
    if name.endswith(".safetensors"):
        # A pickle under a safetensors name is read (and its globals named) as the pickle it is.
        kind = _sniff(path)
        return _pytorch_source(path) if kind == "pytorch" or (kind != "safetensors" and _is_pickle(path)) \
            else SafetensorsSource(path)
    if name.endswith(PICKLE_SUFFIXES + (".pkl", ".pickle")):
        return _pytorch_source(path)
    kind = _sniff(path)
    if kind == "gguf" or name.endswith(".gguf"):
        return GGUFSource(path)
    if name.endswith(".onnx"):
        return OnnxSource(path)
    if kind == "safetensors":
        return SafetensorsSource(path)
    if kind == "pytorch":
        return _pytorch_source(path)
    return UnsupportedSource(path, "unrecognized file format (not safetensors, PyTorch, GGUF or ONNX)", "unknown")


def _folder_sources(folder: str) -> list[Source]:
    listed = sorted(os.listdir(folder))
    # Only regular files are read: a FIFO, a device or a symlink to one (which a repository can
    # carry) would block or never end.
    entries = [e for e in listed if os.path.isfile(os.path.join(folder, e))]
    for index_name in INDEX_NAMES:
        index = os.path.join(folder, index_name)
        if os.path.isfile(index):
            source = ShardedSource(index)
            return [_with_scanned_pickles(_with_skipped_note(source, folder), folder, entries)]
    special = [e for e in listed if e.endswith(CHECKPOINT_SUFFIXES) and e not in entries
               and not os.path.isdir(os.path.join(folder, e))]
    sources = _regular_folder_sources(folder, entries)
    if sources:
        _with_scanned_pickles(sources[0], folder, entries, judged=sources)
    if special and sources:
        sources[0].notes.append(f"{display_path(folder)}: not regular files, not read: {', '.join(special)}")
    elif special:
        sources = [UnsupportedSource(os.path.join(folder, special[0]), "not a regular file (a FIFO, device or "
                                     "socket, or a link to one): not read", "unknown")]
    return sources


def _regular_folder_sources(folder: str, entries: list[str]) -> list[Source]:
    safetensors = [e for e in entries if e.endswith(".safetensors")]
    if safetensors:
        sources = [source_for_file(os.path.join(folder, e)) for e in safetensors]
        return [_with_skipped_note(sources[0], folder), *sources[1:]]
    pickles = [e for e in entries if e.endswith(PICKLE_SUFFIXES)]
    trainer_state = [e for e in pickles if _is_trainer_state(e)]
    pickles = [e for e in pickles if e not in trainer_state]
    others = [e for e in entries if e.endswith((".gguf", ".onnx"))]
    if pickles or others:
        sources = [source_for_file(os.path.join(folder, e)) for e in pickles + others]
        if trainer_state:
            sources[0].notes.append(
                f"{display_path(folder)}: trainer state files, weights not checked (their globals are; pass "
                f"them explicitly to lint them): {', '.join(trainer_state)}"
            )
        return sources
    sources: list[Source] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "node_modules"))
        if root != folder and any(f.endswith(CHECKPOINT_SUFFIXES) or f in INDEX_NAMES for f in files):
            sources.extend(_folder_sources(root))
            dirs[:] = []
    return sources


def _with_scanned_pickles(source: Source, folder: str, entries: list[str], judged: list[Source] = ()) -> Source:
    """Every other pickle of the folder is checked for unsafe globals (WL002), though its weights
    are not judged: a malicious ``pytorch_model.bin`` or ``training_args.bin`` next to clean
    safetensors weights is still what ``from_pretrained`` or a trainer may load."""
    read = {os.path.abspath(file) for other in [source, *judged] for file in other.files}
    source.scan_only.extend(os.path.join(folder, e) for e in entries if e.lower().endswith(ANY_PICKLE_SUFFIXES)
                            and os.path.abspath(os.path.join(folder, e)) not in read)
    return source


def _is_trainer_state(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in TRAINER_STATE)


def _with_skipped_note(source: Source, folder: str) -> Source:
    """Hugging Face folders often ship the same weights twice; say which copy was not scanned."""
    if source.format.startswith("safetensors"):
        skipped = [e for e in sorted(os.listdir(folder)) if e.endswith(PICKLE_SUFFIXES) or e == INDEX_NAMES[1]]
        if skipped:
            source.notes.append(
                f"{display_path(folder)}: checked the safetensors weights; also present, weights not checked "
                f"(their globals are; pass them explicitly to lint them): {', '.join(skipped)}"
            )
    return source


def resolve(path: str | os.PathLike, architecture: bool = True) -> list[Source]:
    """Sources for one path. Raises FileNotFoundError for a path that does not exist.

    ``architecture=False`` skips reading ``config.json`` into a model skeleton.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        sources = _folder_sources(path)
    elif os.path.isfile(path):
        sources = [source_for_file(path)]
    elif os.path.exists(path):
        sources = [UnsupportedSource(path, "not a regular file (a FIFO, device or socket): not read", "unknown")]
    else:
        raise FileNotFoundError(path)
    _with_adapter_config(sources)
    if not architecture:
        for source in sources:
            source.architecture = False
        return sources
    return _with_architecture_notes(sources)


def _with_adapter_config(sources: list[Source]) -> None:
    """A source whose folder holds ``adapter_config.json`` is a PEFT adapter: its configuration is
    read once (an unusable one is the config file's WL001)."""
    from weightlint.adapter.config import find_config, read_config

    for source in sources:
        config = find_config(source.files[0]) if source.files and source.format != "unknown" else None
        if config is None:
            continue
        try:
            source.adapter = read_config(config)
        except (OSError, ValueError) as error:
            source.problems.append(Problem("unreadable", display_path(config), f"not a usable adapter config: {error}"))


def _with_architecture_notes(sources: list[Source]) -> list[Source]:
    """A ``config.json`` whose model cannot be built is said once, as a note of its first source.

    Reading the config here also builds the model skeleton (cached) that the architecture rules
    and :func:`weightlint.architecture.annotate_sources` use; transformers is imported only when a
    folder has a ``config.json`` naming a model type.
    """
    from weightlint.architecture import COMPARED_FORMATS, architecture_for, find_config

    seen: set[str] = set()
    for source in sources:
        config = find_config(source.path) if source.format in COMPARED_FORMATS else None
        if config is None or os.path.abspath(config) in seen:
            continue
        seen.add(os.path.abspath(config))
        found = architecture_for(config)
        if found.limit_exceeded is not None:
            source.problems.append(limit_problem(display_path(config), found.limit_exceeded))
        elif found.note and found.note not in source.notes:
            source.notes.append(found.note)
    return sources
