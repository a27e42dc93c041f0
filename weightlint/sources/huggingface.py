"""Hugging Face layouts: shard indexes (``*.index.json``) for safetensors and PyTorch shards."""

from __future__ import annotations

import os
from typing import Iterator

from weightlint.config import limits
from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Problem, Source, display_path, short_reason
from weightlint.sources.safetensors_file import read_safetensors
from weightlint.sources.torch_pickle import counted, read_torch_pickle

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def read_index(index_path: str) -> tuple[dict[str, str] | None, str | None]:
    """The index's ``weight_map`` (tensor → shard file name), or the reason it cannot be read."""
    try:
        with open(index_path, "rb") as handle:
            index = limits.load_json(handle.read(limits.current().header_bytes + 1), "index")
    except (OSError, ValueError, limits.LimitExceeded) as error:
        return None, f"index is not valid JSON: {short_reason(error)}"
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        return None, "index has no 'weight_map' object of tensor → shard file"
    return weight_map, None


def escapes_folder(shard: str) -> bool:
    """Whether an index entry names a path outside the index's folder (judged on the text alone:
    Hugging Face cache snapshots are symlinks into ``../../blobs/``, and those are followed)."""
    parts = shard.replace("\\", "/").split("/")
    return os.path.isabs(shard) or shard.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]


class ShardedSource(Source):
    """A sharded checkpoint: the index says which tensor lives in which shard; both are checked."""

    def __init__(self, index_path: str) -> None:
        self._index_path = str(index_path)
        self._folder = os.path.dirname(os.path.abspath(index_path))
        self._weight_map, self._index_error = read_index(self._index_path)
        shards = sorted(set((self._weight_map or {}).values()))
        fmt = "safetensors" if self._index_path.endswith(".safetensors.index.json") else "pytorch"
        super().__init__(
            path=display_path(index_path),
            format=f"{fmt}-sharded",
            files=[display_path(os.path.join(self._folder, shard)) for shard in shards if not escapes_folder(shard)],
        )

    def items(self) -> Iterator[Item]:
        index_shown = display_path(self._index_path)
        if self._weight_map is None:
            yield Problem("unreadable", index_shown, self._index_error or "unreadable index")
            return
        by_shard: dict[str, list[str]] = {}
        for tensor, shard in self._weight_map.items():
            by_shard.setdefault(shard, []).append(tensor)
        for shard in sorted(by_shard):
            yield from self._shard_items(index_shown, shard, by_shard[shard])

    def _shard_items(self, index_shown: str, shard: str, expected: list[str]) -> Iterator[Item]:
        if escapes_folder(shard):
            yield Problem("index-mismatch", index_shown,
                          f"index maps {counted(len(expected), 'tensor')} to {shard!r}, a path outside the checkpoint's "
                          "folder: refused, not opened", detail={"shard": shard, "escaping_path": True})
            return
        shard_path = os.path.join(self._folder, shard)
        shown = display_path(shard_path)
        if not os.path.isfile(shard_path):
            yield Problem("index-mismatch", index_shown,
                          f"index names shard {shard} ({len(expected)} tensors), which does not exist",
                          detail={"shard": shard, "missing_shard": True, "tensors": len(expected)})
            return
        reader = read_safetensors if shard.endswith(".safetensors") else read_torch_pickle
        seen: set[str] = set()
        broken = False
        for item in reader(shard_path):
            if isinstance(item, Problem) and item.tensor is None:
                broken = True  # already reported as unreadable; its tensors are not "missing"
            if isinstance(item, TensorRecord):
                seen.add(item.name)
                if self._weight_map.get(item.name) != shard:
                    yield Problem("index-mismatch", shown,
                                  f"tensor is in shard {shard} but the index does not map it there; "
                                  "loaders will ignore it", tensor=item.name,
                                  detail={"shard": shard, "not_in_index": True})
            yield item
        if not broken:
            for tensor in expected:
                if tensor not in seen:
                    yield Problem("index-mismatch", index_shown,
                                  f"index maps the tensor to shard {shard}, which does not contain it",
                                  tensor=tensor, detail={"shard": shard, "missing_tensor": True})
