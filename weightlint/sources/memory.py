"""In-process models: an ``nn.Module`` or a mapping of name → tensor, for the Python API."""

from __future__ import annotations

import sys
from typing import Any, Iterator, Mapping

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


class MemorySource(Source):
    def __init__(self, obj: Any, label: str | None = None) -> None:
        self._obj = obj
        kind = "module" if _is_module(obj) else "state-dict"
        label = label or f"<{type(obj).__name__}>"
        super().__init__(path=label, format=kind, files=[label])

    def items(self) -> Iterator[Item]:
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
