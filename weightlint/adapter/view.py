"""What the adapter rules see (``weightlint_check_adapter``): the configuration, the measured
pairs, the full tensors, the files beside the adapter and, with ``--base-model``, each update
against the weight it modifies (the base read one tensor at a time)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightlint.adapter.config import AdapterConfig
from weightlint.adapter.update import LoraPair, as_float64, dense_update, measure, pair_records
from weightlint.record import TensorRecord
from weightlint.sources.base import Problem, Source

# Base matrices up to this many rows and columns get the condition number of W and W+ΔW (an SVD each).
CONDITION_MAX_SIDE = 2048


@dataclass
class AdapterView:
    config: AdapterConfig
    source: Source
    pairs: list[LoraPair]
    full_tensors: list[TensorRecord]
    beside: list[str]  # the other files of the adapter's folder (names)
    base: str | None = None  # the base model given with --base-model
    notes: list[str] = field(default_factory=list)

    def judged(self, rule: Any, context: Any):
        """(pair, its measures, the rule's options) for each measured pair the rule is selected for."""
        for pair in self.pairs:
            options = context.options(rule, pair.record) if pair.measures else None
            if options is not None:
                yield pair, pair.measures, options

    @property
    def folder(self) -> str:
        return os.path.dirname(self.config.path)

    def describe(self) -> dict[str, Any]:
        """The JSON report's ``adapters`` entry (docs/json-report.md)."""
        config = self.config
        return {
            "path": self.source.path,
            "peft_type": config.peft_type,
            "r": config.r,
            "lora_alpha": config.lora_alpha,
            "use_rslora": config.use_rslora,
            "use_dora": config.use_dora,
            "target_modules": config.target_modules,
            "modules_to_save": config.modules_to_save,
            "base_model_name_or_path": config.base_model,
            "base_model": self.base,
            "full_tensors": [record.name for record in self.full_tensors],
            "beside": self.beside,
            "modules": {pair.module: {"declared_rank": pair.declared_rank, "scale": pair.scale,
                                      **{key: value for key, value in pair.measures.items()
                                         if key not in ("singular_values", "rank_resolution")},
                                      "singular_values": pair.measures.get("singular_values", [])[:8]}
                        for pair in self.pairs},
        }


class BaseModel:
    """The base model's tensors by name, read one at a time when an update is compared with one."""

    def __init__(self, path: str) -> None:
        from weightlint.sources import resolve

        self.path = path
        self.problems: list[Problem] = []
        self.records: dict[str, TensorRecord] = {}
        for source in resolve(path, architecture=False):
            self.problems.extend(source.problems)
            for item in source.items():
                if isinstance(item, TensorRecord):
                    self.records.setdefault(item.name, item)
                else:
                    self.problems.append(item)

    def weight_of(self, module: str) -> TensorRecord | None:
        """The base weight a module's update applies to: ``module.weight`` by name, else the one
        name that ends with it (or that it ends with), as model classes prefix differently
        (``bert.encoder…`` in a classifier, ``encoder…`` in a bare ``BertModel``)."""
        wanted = f"{module}.weight"
        if wanted in self.records:
            return self.records[wanted]
        matches = [record for name, record in self.records.items()
                   if f".{name}".endswith(f".{wanted}") or f".{wanted}".endswith(f".{name}")]
        return matches[0] if len(matches) == 1 else None


def build(source: Source, records: list[TensorRecord], config: AdapterConfig, problems: list[Problem],
          base: BaseModel | None = None) -> AdapterView:
    """Pair the adapter's records, measure each update, and compare it with the base weight."""
    pairs, full = pair_records(records, config)
    folder = os.path.dirname(config.path)
    read = {os.path.abspath(file) for file in source.files} | {os.path.abspath(config.path)}
    beside = sorted(entry for entry in os.listdir(folder)
                    if os.path.isfile(os.path.join(folder, entry)) and os.path.abspath(os.path.join(folder, entry)) not in read)
    view = AdapterView(config, source, pairs, full, beside, base.path if base else None)
    if not config.is_lora:  # IA3, prefix tuning …: no pairs, no updates to judge
        view.notes.append(f"{source.path}: a {config.peft_type} adapter: its tensors are checked as plain tensors")
        view.pairs, view.full_tensors = [], []
        return view
    for pair in pairs:
        if not pair.complete:
            continue
        try:
            a, b = (as_float64(record.load()) for record in (pair.a, pair.b))
        except Exception as error:
            problems.append(Problem("unreadable", pair.record.file, f"tensor data unreadable: {error}",
                                    tensor=pair.record.name))
            continue
        try:  # one pair that defeats the arithmetic is that pair's WL008, not the adapter's
            pair.measures = measure(pair, a, b)
            if base is not None and pair.measures.get("finite"):
                pair.measures.update(_against_base(pair, a, b, base, config, problems))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as error:
            from weightlint.execution.errors import internal_problem

            pair.measures = {}
            problems.append(internal_problem(pair.record.file, error, tensor=pair.record.name))
    return view


def _against_base(pair: LoraPair, a: np.ndarray, b: np.ndarray, base: BaseModel, config: AdapterConfig,
                  problems: list[Problem]) -> dict[str, Any]:
    """The update against its base weight, both as matrices: (out, in), (out, in·k·k) for a
    convolution, (vocabulary, dim) for an embedding, the base transposed for ``fan_in_fan_out``."""
    record = base.weight_of(pair.module)
    if record is None:
        return {"base_weight": None}
    expected = (b.shape[0], int(np.prod(a.shape[1:])))
    if pair.embedding:
        expected = expected[::-1]
    stored = tuple(record.shape)
    as_matrix = (stored[0], int(np.prod(stored[1:]))) if len(stored) > 1 else stored
    transposed = config.fan_in_fan_out and not pair.embedding
    result: dict[str, Any] = {"base_weight": record.name, "base_shape": stored, "update_shape": expected,
                              "shape_matches": (as_matrix[::-1] if transposed else as_matrix) == expected}
    if not result["shape_matches"]:
        return result
    try:
        weight = as_float64(record.load()).reshape(as_matrix)
    except Exception as error:
        problems.append(Problem("unreadable", record.file, f"tensor data unreadable: {error}", tensor=record.name))
        return result
    if not np.isfinite(weight).all():
        return result  # the base's own NaN/Inf: a finding of the base's check, nothing to compare with
    weight = weight.T if transposed else weight
    delta = dense_update(pair, a, b)
    weight_norm = float(np.linalg.norm(weight))
    result["base_norm"] = weight_norm
    result["relative_norm"] = pair.measures["norm"] / weight_norm if weight_norm > 0 else math.inf
    merged = weight + delta
    if pair.magnitude is not None:
        magnitude = as_float64(pair.magnitude.load()).reshape(-1)
        if magnitude.size == merged.shape[0]:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = magnitude / np.linalg.norm(merged, axis=1)
            result["dora_scale_range"] = (float(np.nanmin(ratios)), float(np.nanmax(ratios)))
    if max(weight.shape) <= CONDITION_MAX_SIDE:
        result["base_condition_number"] = _condition(weight)
        result["merged_condition_number"] = _condition(merged)
    return result


def _condition(matrix: np.ndarray) -> float:
    singular = np.linalg.svd(matrix, compute_uv=False)
    return float(singular[0] / singular[-1]) if singular[-1] > 0 else math.inf

