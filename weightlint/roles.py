"""What a tensor's name says about its role: depth-independent role, norm scales, tied weights.

Name-based on purpose: it works for any checkpoint without the model's code. (Folders with a
``config.json`` can refine it with the architecture.)
"""

from __future__ import annotations

import re

_LAYER_INDEX = re.compile(r"(?<![^.])\d+(?=\.)")
_NORM = re.compile(r"(^|\.)(\w*norm\w*|ln_?\d*|ln_f|ln_\w+|layer_norm\w*)\.weight$", re.IGNORECASE)
# Input embeddings and output heads that models tie on purpose (GPT-2, Llama, BERT, T5, GPT-NeoX …).
_TIED_LEAVES = (
    "wte.weight", "embed_tokens.weight", "word_embeddings.weight", "shared.weight", "tok_embeddings.weight",
    "embed_in.weight", "lm_head.weight", "decoder.weight", "output.weight", "embed_out.weight",
)


def sibling_role(name: str) -> str:
    """The name with layer indices replaced by ``*``: ``h.3.attn.c_proj.weight`` → ``h.*.attn.c_proj.weight``."""
    return _LAYER_INDEX.sub("*", name)


def is_norm_scale(name: str, ndim: int) -> bool:
    return ndim == 1 and bool(_NORM.search(name))


def declared_tied(first: str, second: str) -> bool:
    """Two names that are conventionally the same tensor (embedding ↔ output head)."""
    return first.endswith(_TIED_LEAVES) and second.endswith(_TIED_LEAVES)
