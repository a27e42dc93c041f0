"""What a tensor's name says about its role: depth-independent role, norm scales, tied weights.

Name-based on purpose: it works for any checkpoint without the model's code. Records of a folder
with a ``config.json`` that ``transformers`` can build carry what the model says instead
(``weightlint/architecture.py`` sets ``metadata["architecture_key"]``, ``["tied_with"]``,
``["module_type"]``, ``["module_kind"]`` and the layout); the record-level helpers below prefer it.
"""

from __future__ import annotations

import re

_LAYER_INDEX = re.compile(r"(?<![^.])\d+(?=\.)")
_NUMBER = re.compile(r"\d+")
_NORM = re.compile(r"(^|\.)(\w*norm\w*|ln_?\d*|ln_f|ln_\w+|layer_norm\w*)\.weight$", re.IGNORECASE)
# Input embeddings and output heads that models tie on purpose (GPT-2, Llama, BERT, T5, GPT-NeoX …).
_TIED_LEAVES = (
    "wte.weight", "embed_tokens.weight", "word_embeddings.weight", "shared.weight", "tok_embeddings.weight",
    "embed_in.weight", "lm_head.weight", "decoder.weight", "output.weight", "embed_out.weight",
    "token_embd.weight",  # GGUF (llama.cpp) names: token_embd ↔ output
)


def sibling_role(name: str) -> str:
    """The name with layer indices replaced by ``*``: ``h.3.attn.c_proj.weight`` → ``h.*.attn.c_proj.weight``."""
    return _LAYER_INDEX.sub("*", name)


def stack_role(name: str) -> tuple[str, tuple[int, ...]] | None:
    """The name with every number replaced by ``*``, and the numbers, for ordering by depth.

    ``basenet.slice3.20.weight`` → (``basenet.slice*.*.weight``, (3, 20)): CNN stages numbered in
    their names (``slice3``, ``conv4``, ``upconv2``) are siblings too. None for a name without
    letters (an ONNX initializer called ``1082``), which says nothing about its role.
    """
    if not re.search(r"[A-Za-z]", name.rsplit(".", 1)[0] if "." in name else name):
        return None
    return _NUMBER.sub("*", name), tuple(int(n) for n in _NUMBER.findall(name))


def is_norm_scale(name: str, ndim: int) -> bool:
    return ndim == 1 and bool(_NORM.search(name))


def declared_tied(first: str, second: str) -> bool:
    """Two names that are conventionally the same tensor (embedding ↔ output head)."""
    return first.endswith(_TIED_LEAVES) and second.endswith(_TIED_LEAVES)


def records_tied(first, second) -> bool:
    """Two records that are the same tensor by design.

    When both records know their place in the model (a buildable ``config.json``), the model
    decides: GPT-2's ``lm_head`` is tied to ``wte`` because ``tie_word_embeddings`` is true, Llama's
    is not unless the config says so. Otherwise the naming convention of :func:`declared_tied`.
    """
    first_key = first.metadata.get("architecture_key")
    second_key = second.metadata.get("architecture_key")
    if first_key is not None and second_key is not None:
        return second_key in first.metadata.get("tied_with", ())
    return declared_tied(first.name, second.name)


def module_kind(record) -> str | None:
    """``linear``, ``conv1d``, ``embedding``, ``norm``, ``conv`` or ``other`` from the model; None when unknown."""
    return record.metadata.get("module_kind")
