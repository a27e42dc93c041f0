"""In-process models: an ``nn.Module`` or a mapping of name → tensor, for the Python API."""

from __future__ import annotations

import sys
from typing import Any, Iterator, Mapping

import numpy as np

from weightlint.dtypes import DType
from weightlint.dtypes import dtype as dtype_named
from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Source
from weightlint.sources.torch_pickle import find_state_dict, flatten_tensors

_CONV1D_CLASS = "Conv1D"


def _is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # an nn.Module exists only once torch is imported
    return torch is not None and isinstance(obj, torch.nn.Module)


def _layouts(module: Any) -> dict[str, str]:
    """Parameter name → layout, from the module types (HF ``Conv1D`` stores (in, out))."""
    layouts = {}
    for module_name, child in module.named_modules():
        layout = "in_out" if type(child).__name__ == _CONV1D_CLASS else "out_in"
        for param_name, _ in child.named_parameters(recurse=False):
            layouts[f"{module_name}.{param_name}" if module_name else param_name] = layout
    return layouts


def _numpy_dtype(array: np.ndarray) -> DType:
    """The DType of a NumPy array; bfloat16 and float8 arrays (ml_dtypes) are named alike."""
    try:
        return dtype_named(array.dtype.name)
    except KeyError:
        return DType(array.dtype.name, array.dtype.itemsize, array.dtype.kind)


class MemorySource(Source):
    def __init__(self, obj: Any, label: str | None = None) -> None:
        self._obj = obj
        kind = "module" if _is_module(obj) else "state-dict"
        label = label or f"<{type(obj).__name__}>"
        super().__init__(path=label, format=kind, files=[label])

    def items(self) -> Iterator[Item]:
        if isinstance(self._obj, Mapping) and any(isinstance(v, np.ndarray) for v in self._obj.values()):
            yield from self._numpy_items()
            return
        if _is_module(self._obj):
            state: Mapping[str, Any] = self._obj.state_dict(keep_vars=False)
            layouts = _layouts(self._obj)
            buffers = {name for name, _ in self._obj.named_buffers()}
        else:
            # A checkpoint dict held in memory is searched as a file would be (Lightning's
            # ``state_dict``, DeepSpeed's ``module`` …); a plain mapping is taken whole.
            found = find_state_dict(self._obj)
            state, layouts, buffers = (found[1] if found is not None else self._obj), {}, set()
        for name, tensor in flatten_tensors(state):
            tensor = tensor.detach()
            yield TensorRecord(
                name=name,
                shape=tuple(tensor.shape),
                dtype=tensor.dtype,
                file=self.path,
                load=lambda tensor=tensor: tensor,
                format=self.format,
                layout=layouts.get(name),
                metadata={"buffer": True} if name in buffers else {},
            )

    def _numpy_items(self) -> Iterator[Item]:
        """A mapping of name → NumPy array (and torch tensors beside them), as file sources load."""
        for name, value in self._obj.items():
            if isinstance(value, np.ndarray):
                yield TensorRecord(name=str(name), shape=tuple(value.shape), dtype=_numpy_dtype(value),
                                   file=self.path, load=lambda value=value: value, format=self.format)
            else:
                yield from MemorySource({name: value}, self.path).items()
