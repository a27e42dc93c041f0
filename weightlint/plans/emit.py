"""A quantization plan in the format of the tool the user runs next (``weightlint plan quant --emit``).

- ``json``: the guide's lists (``int8_layers``, ``int8_per_channel_layers``, ``int16_layers``,
  ``fp16_layers``) of tensor names, with every decision and its numbers;
- ``transformers``: ``llm_int8_skip_modules`` / ``modules_to_not_convert``, the exact module names
  (in the class of config.json) to keep out of int8; transformers matches a name from the start
  of a module's name up to a module boundary, or as its suffix;
- ``llmcompressor``: a recipe whose ``QuantizationModifier`` targets the int8 linear layers by
  exact name (per tensor or per channel) and ``ignore:`` lists the other linear layers;
- ``torchao``: Python with the int8 linear layers' names and a ``filter_fn`` for ``quantize_``;
- ``llamacpp``: ``--tensor-type`` arguments of ``llama-quantize`` (``pattern=type``) on GGUF tensor
  names (mapped from Hugging Face names with the ``gguf`` package's own name map).
"""

from __future__ import annotations

import json
import re

from weightlint.finding import json_safe
from weightlint.plans.quant import QuantPlan

FORMATS = ("json", "transformers", "llmcompressor", "torchao", "llamacpp")
KEPT = ("int16", "fp16", "special")
# GGUF has no 16-bit integer type: F16 stands in for int16 (see llamacpp()).
GGUF_TYPES = {"int8": "q8_0", "int8-per-channel": "q8_0", "int16": "f16", "fp16": "f16", "special": "f16"}


def emit(plan: QuantPlan, fmt: str, report=None) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown --emit format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return {"json": lambda: json.dumps(json_safe(plan.to_json()), indent=2, allow_nan=False) + "\n",
            "transformers": lambda: transformers(plan), "llmcompressor": lambda: llmcompressor(plan),
            "torchao": lambda: torchao(plan), "llamacpp": lambda: llamacpp(plan, report)}[fmt]()


def transformers(plan: QuantPlan) -> str:
    kept = plan.modules(*KEPT)
    return json.dumps({
        "llm_int8_skip_modules": kept,   # BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=…)
        "modules_to_not_convert": kept,  # the same list under the name other quantization configs use
        "comment": "weightlint plan quant: modules to keep in 16-bit (int16, fp16 or special in the plan); "
                   "every other Linear may go int8 (LLM.int8 quantizes per output row)",
    }, indent=2) + "\n"


def llmcompressor(plan: QuantPlan) -> str:
    import yaml

    def exact(names: list[str]) -> list[str]:
        return [f"re:^{re.escape(name)}$" for name in names]

    groups = {}
    for group, decision, strategy in (("int8_per_tensor", "int8", "tensor"),
                                      ("int8_per_channel", "int8-per-channel", "channel")):
        targets = plan.modules(decision, linear_only=True)
        if targets:
            groups[group] = {"targets": exact(targets),
                             "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": strategy}}
    modifier = {"ignore": exact(plan.modules(*KEPT, linear_only=True)), "config_groups": groups}
    recipe = {"quant_stage": {"quant_modifiers": {"QuantizationModifier": modifier}}}
    header = ("# llm-compressor recipe from `weightlint plan quant`: int8 weights (per tensor or per channel) where\n"
              "# the plan allows, every other module kept in 16-bit (ignore). oneshot(model=…, recipe=this_file)\n")
    return header + yaml.safe_dump(recipe, sort_keys=False, width=1000)


def torchao(plan: QuantPlan) -> str:
    int8 = plan.modules("int8", "int8-per-channel", linear_only=True)
    kept = plan.modules(*KEPT, linear_only=True)
    return (
        '"""torchao filter from `weightlint plan quant`: int8 weight-only (per output channel) on the\n'
        'modules the plan allows, every other module left as it is.\n\n'
        "    from torchao.quantization import Int8WeightOnlyConfig, quantize_\n"
        "    quantize_(model, Int8WeightOnlyConfig(), filter_fn=filter_fn)\n"
        '"""\n\n'
        "import torch\n\n"
        f"INT8_MODULES = {json.dumps(int8, indent=4)}\n"
        f"KEPT_16_BIT = {json.dumps(kept, indent=4)}\n\n\n"
        "def filter_fn(module: torch.nn.Module, fqn: str) -> bool:\n"
        "    return isinstance(module, torch.nn.Linear) and fqn in INT8_SET\n\n\n"
        "INT8_SET = frozenset(INT8_MODULES)\n"
    )


def llamacpp(plan: QuantPlan, report=None) -> str:
    """``--tensor-type NAME=TYPE`` lines. llama.cpp has no int16 weight type: F16 stands in for it
    (11 significant bits per value, against 16 bits on one shared int16 scale: F16 keeps the small
    weights of a layer with large outliers more precisely, which is why the layer left int8)."""
    names = gguf_names(plan, report)
    lines = ["# llama-quantize arguments from `weightlint plan quant` (GGUF tensor names).",
             "# int8 and per-channel int8 → Q8_0 (blocks of 32 with a scale each: at least as fine as per channel);",
             "# int16 → F16 (GGUF has no int16); fp16 and special → F16."]
    missing = []
    for entry in plan.decisions:
        name = names.get(entry.tensor)
        if name is None or not name.isprintable():  # a line break in a name must not make a line
            missing.append(repr(entry.tensor) if not entry.tensor.isprintable() else entry.tensor)
            continue
        lines.append(f"--tensor-type {re.escape(name)}={GGUF_TYPES[entry.decision]}")
    if missing:
        listed = ", ".join(name if name.isprintable() else repr(name) for name in missing[:5])
        lines.append(f"# no GGUF name for {len(missing)} tensor(s): {listed}{' …' if len(missing) > 5 else ''}")
    return "\n".join(lines) + "\n"


def gguf_names(plan: QuantPlan, report=None) -> dict[str, str]:
    """Tensor name → GGUF name: GGUF files keep theirs; Hugging Face names go through the gguf
    package's name map for the architecture config.json names (``model_type``)."""
    if report is not None and all(source.format == "gguf" for source in report.sources):
        return {entry.tensor: entry.tensor for entry in plan.decisions}
    mapping = _gguf_map(report)
    if mapping is None:
        return {}
    names = {}
    for entry in plan.decisions:
        mapped = mapping.get_name(entry.tensor, try_suffixes=(".weight", ".bias"))
        if mapped is not None:
            names[entry.tensor] = mapped
    return names


def _gguf_map(report):
    """The gguf package's TensorNameMap for the model config.json describes, or None."""
    import gguf

    from weightlint.architecture import find_config

    for source in (report.sources if report is not None else []):
        path = find_config(source.path)
        if path is None:
            continue
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
        model_type = str(config.get("model_type", "")).lower()
        arch = next((arch for arch, name in gguf.MODEL_ARCH_NAMES.items() if name == model_type), None)
        blocks = config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers")
        if arch is not None and blocks:
            return gguf.get_tensor_name_map(arch, int(blocks))
    return None
