"""Evidence for the rules' claims: apply what a finding claims, measure the effect.

Each section takes a claim the rules make (or the advice they give) and tests it on real published
models of the calibration corpus (``benchmarks/corpus.yaml``), by doing what the claim is about:
casting to fp16, quantizing to int8, replacing a layer by a random matrix, truncating a matrix to
low rank. Nothing is downloaded; the SmolLM2 model is rebuilt from its GGUF file.

1. ``condition``  Condition number vs. what fp16 and int8 do to a layer's output (WL101).
2. ``untrained``  The untrained-layer test on trained attention values (WL601).
3. ``lowrank``    Low-rank advice applied (WL401).
4. ``outliers``   Peaked conv kernels: outlier share vs. int8 (WL201).
5. ``underflow``  fp16 underflow of BatchNorm-gated filters (WL102).

Writes ``docs/evidence.md`` (generated) and ``benchmarks/results/evidence.json``; progress goes to
stderr. A full run takes about 5–10 minutes on 2 cores. BLAS and torch run one thread each unless
``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` say otherwise (robust on shared cores).

    python benchmarks/corpus.py                         # install the corpus once
    python benchmarks/evidence.py                       # every section
    python benchmarks/evidence.py --only condition --only outliers --output /tmp/e.md --json /tmp/e.json
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import datetime
import functools
import io
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

# One BLAS/OpenMP thread unless told otherwise: on 2 shared cores a second thread that gets descheduled stalls
# every barrier (measured: SmolLM2's 40 first Gram eigenproblems 96 s with 2 OpenBLAS threads under load, 1.4 s
# with one; a forward pass 16 s vs. 7 s). Set before NumPy and torch load their thread pools.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402  (a sibling script, not a package)

SECTIONS = ("condition", "untrained", "lowrank", "outliers", "underflow")
SEED = 0
N_INPUTS = 256  # random input columns X per matrix
WEAK_FRACTION = 0.01  # the bottom 1% of the right-singular vectors
FP16_FLUSH = 2.0**-25  # |w| at or below this rounds to 0 in fp16 (half the smallest subnormal)
FP16_SUBNORMAL = 2.0**-14  # below this fp16 is subnormal (fewer mantissa bits)
FLOAT64_EPS = float(np.finfo(np.float64).eps)
MAD_TO_SIGMA = 1.4826
WL102_PERCENT = 1.0  # WL102's underflow_percentage
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, which CRAFT uses
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def log(message: str) -> None:
    print(f"[evidence {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------

def fmt(value: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant digits; ∞ for infinity, — for None."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    text = f"{value:#.{digits}g}"  # '#': keep trailing zeros (1.00, 30.0): always `digits` significant digits
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa.rstrip('.')}e{int(exponent)}"
    text = text.rstrip(".")
    return text.replace("-", "−")


def fmt_p(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return "< 1e−16" if value < 1e-16 else fmt(value, 2)


def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    """A Markdown table; ``align`` gives one of 'l'/'r' per column (numbers right by default)."""
    if align is None:
        align = "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell if isinstance(cell, str) else fmt(cell) for cell in row) + " |")
    return lines


def jsonable(value: Any) -> Any:
    """Raw numbers for the JSON: NumPy scalars to Python, ±inf to strings, nan to null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


# ----------------------------------------------------------------------------------------------
# Measurements shared by the sections
# ----------------------------------------------------------------------------------------------

def db(error: float) -> float:
    """Relative error as an SNR in dB: −20·log10(error) (∞ for no error)."""
    if error == 0:
        return math.inf
    if not math.isfinite(error):
        return -math.inf
    return -20.0 * math.log10(error)


def as_matrix(array: np.ndarray) -> np.ndarray:
    """The (outputs, inputs) float64 matrix view: conv kernels as out × in·kh·kw."""
    return np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)


def is_matrix(array: np.ndarray) -> bool:
    """As weightlint's: floating, at least 2-D, more than one row and more than one column."""
    return (np.issubdtype(array.dtype, np.floating) and array.ndim >= 2 and array.shape[0] > 1
            and array.size // array.shape[0] > 1)


def fp16_cast(w: np.ndarray) -> np.ndarray:
    return w.astype(np.float32).astype(np.float16).astype(np.float64)


def int8_per_channel(w: np.ndarray) -> np.ndarray:
    """Symmetric absmax int8, one scale per output row: max|row|/127."""
    scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, np.clip(np.round(w / safe), -127, 127) * scale, 0.0)


def int8_per_tensor(w: np.ndarray) -> np.ndarray:
    scale = float(np.abs(w).max()) / 127.0
    if scale == 0:
        return np.zeros_like(w)
    return np.clip(np.round(w / scale), -127, 127) * scale


FORMATS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "fp16": fp16_cast, "int8_channel": int8_per_channel, "int8_tensor": int8_per_tensor}
FORMAT_LABELS = {"fp16": "fp16", "int8_channel": "int8/ch", "int8_tensor": "int8/t"}


@functools.lru_cache(maxsize=8)
def gaussian_inputs(n: int) -> np.ndarray:
    """X: ``N_INPUTS`` input columns drawn N(0, I) in n dimensions (fixed seed)."""
    return np.random.default_rng([SEED, n]).standard_normal((n, N_INPUTS))


def output_error(w: np.ndarray, w_new: np.ndarray, x: np.ndarray) -> float:
    """‖(W' − W)X‖F / ‖WX‖F."""
    signal = np.linalg.norm(w @ x)
    noise = np.linalg.norm((w_new - w) @ x)
    if signal == 0:
        return 0.0 if noise == 0 else math.inf
    return float(noise / signal)


def sqnr_db(w: np.ndarray, q: np.ndarray) -> float:
    """10·log10(Σw² / Σ(w − q)²)."""
    noise = float(np.sum((w - q) ** 2))
    return math.inf if noise == 0 else 10.0 * math.log10(float(np.sum(w**2)) / noise)


def live_part(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matrix with all-zero rows and columns removed, and the masks of the kept ones."""
    rows = np.any(w != 0, axis=1)
    cols = np.any(w != 0, axis=0)
    return w[rows][:, cols], rows, cols


def condition_number(values: np.ndarray, live_shape: tuple[int, int]) -> float:
    """σmax/σmin; ∞ when σmin is zero to float64 precision (weightlint's rule)."""
    if len(values) == 0 or values[0] == 0:
        return math.nan
    if values[-1] <= values[0] * max(live_shape) * FLOAT64_EPS:
        return math.inf
    return float(values[0] / values[-1])


def marchenko_pastur(values: np.ndarray, shape: tuple[int, int]) -> dict[str, float]:
    """Eigenvalues of WᵀW (σ², rescaled to mean 1) above the MP edge + Tracy–Widom margin, as WL601."""
    big, small = max(shape), min(shape)
    q = big / small
    eigen = values.astype(np.float64) ** 2
    scaled = eigen / eigen.mean()
    edge = (1 + q**-0.5) ** 2
    cutoff = edge + q**-0.25 * edge ** (1 / 3) * small ** (-1 / 3)
    return {"mp_spikes": int(np.sum(scaled > cutoff)), "mp_edge": float(cutoff),
            "lambda_max_ratio": float(scaled.max())}


def dispersion(w: np.ndarray) -> dict[str, float]:
    """Row and column energy dispersion relative to i.i.d. entries, as WL601 (weightlint/dispersion.py)."""
    squares = w.astype(np.float64) ** 2
    rows, cols = w.shape
    second = float(squares.mean())
    kurtosis_raw = float((squares**2).mean()) / second**2

    def ratio(energies: np.ndarray, per_line: int) -> float:
        live = energies[energies > 0]
        return float(live.std() / live.mean()) / math.sqrt((kurtosis_raw - 1) / per_line)

    return {"row_dispersion": ratio(squares.sum(1), cols), "column_dispersion": ratio(squares.sum(0), rows)}


def singular_values(w: np.ndarray) -> np.ndarray:
    """All min(m, n) singular values, float64, descending (Gram eigenvalues: exact enough for energy sums)."""
    w = np.asarray(w, dtype=np.float64)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))


def spearman(x: list[float], y: list[float]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    x_arr, y_arr = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = ~(np.isnan(x_arr) | np.isnan(y_arr))
    # Ranks only: clip infinities to the largest finite value + 1 so that ties stay ties.
    for arr in (x_arr, y_arr):
        finite = arr[np.isfinite(arr)]
        big = (np.abs(finite).max() if finite.size else 1.0) * 10 + 1
        arr[np.isposinf(arr)] = big
        arr[np.isneginf(arr)] = -big
    if keep.sum() < 3:
        return {"rho": None, "p": None, "n": int(keep.sum())}
    result = spearmanr(x_arr[keep], y_arr[keep])
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": int(keep.sum())}


# ----------------------------------------------------------------------------------------------
# Model loading
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def corpus_path(model_id: str) -> Path:
    model = corpus.load_corpus([model_id])
    path = corpus.model_path(model[0])
    if not path.exists():
        raise SystemExit(f"evidence.py: {model_id} is not installed at {path}; run python benchmarks/corpus.py "
                         f"--only {model_id}")
    return path


def load_torch(model_id: str) -> dict[str, np.ndarray]:
    import torch

    state = torch.load(corpus_path(model_id), map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {name: tensor.detach().float().numpy() if tensor.is_floating_point() else tensor.numpy()
            for name, tensor in state.items() if hasattr(tensor, "numpy")}


def load_onnx(model_id: str) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(corpus_path(model_id))).graph
    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def load_safetensors(model_id: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = corpus_path(model_id)
    if path.is_dir():
        path = path / "model.safetensors"
    return load_file(str(path))


@functools.lru_cache(maxsize=1)
def smollm2_gguf() -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, str]]:
    """SmolLM2's tensors dequantized to float32 (GGUF names, (out, in) as stored), metadata, types."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(corpus_path("smollm2-q4_1"))
    tensors, types = {}, {}
    for tensor in reader.tensors:
        tensors[tensor.name] = np.ascontiguousarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        types[tensor.name] = tensor.tensor_type.name
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("llama.") or key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            metadata[key] = field.contents()
    return tensors, metadata, types


def load_model_matrices(model_id: str) -> dict[str, np.ndarray]:
    """Every weight matrix (as stored: conv kernels keep their shape) of one corpus model for section 1."""
    if model_id == "craft":
        arrays = load_torch(model_id)
    elif model_id == "yolov8n-nudenet":
        arrays = load_onnx(model_id)
    elif model_id == "minilm":
        arrays = load_safetensors(model_id)
    elif model_id == "smollm2-q4_1":
        tensors, metadata, _ = smollm2_gguf()
        layers = range(0, metadata["llama.block_count"], 2)
        arrays = {f"blk.{i}.{kind}.weight": tensors[f"blk.{i}.{kind}.weight"]
                  for i in layers for kind in ("attn_q", "attn_output")}
    else:
        raise ValueError(model_id)
    return {name: array for name, array in arrays.items() if is_matrix(array)}


# ----------------------------------------------------------------------------------------------
# SmolLM2 as a transformers model (rebuilt from the GGUF file)
# ----------------------------------------------------------------------------------------------

HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo convert_hf_to_gguf.py's ``permute`` (rows (h, 2, d/2) → (h, d/2, 2) for llama.cpp's rotary)."""
    return (weight.reshape(heads, weight.shape[0] // heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


class SmolLM2:
    """SmolLM2-135M-Instruct: transformers' loader when it works, else a LlamaForCausalLM built here."""

    def __init__(self) -> None:
        import torch
        from transformers import AutoTokenizer

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))
        self.torch = torch
        path = corpus_path("smollm2-q4_1")
        self.folder, self.file = str(path.parent), path.name
        self.tensors, self.metadata, self.types = smollm2_gguf()
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, gguf_file=self.file)
        self.loader_note = self._load()
        self.tied = self.model.lm_head.weight is self.model.model.embed_tokens.weight
        self.text, self.text_sources = evaluation_text()
        self.ids = torch.tensor([self.tokenizer(self.text)["input_ids"]])

    def _load(self) -> str:
        from transformers import AutoModelForCausalLM

        try:
            self.model = AutoModelForCausalLM.from_pretrained(self.folder, gguf_file=self.file).float().eval()
            self.via_transformers = True
            return "loaded by transformers (AutoModelForCausalLM.from_pretrained(folder, gguf_file=...))"
        except Exception as error:  # noqa: BLE001 — any failure falls back to the manual build
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        self.via_transformers = False
        self.model = self._build()
        return (f"transformers could not load the GGUF file ({reason}); the LlamaForCausalLM is built here "
                "from the GGUF metadata and the gguf package's dequantized tensors, with llama.cpp's q/k row "
                "permutation undone")

    def _build(self):
        from transformers import LlamaConfig, LlamaForCausalLM

        meta, tensors = self.metadata, self.tensors
        config = LlamaConfig(
            vocab_size=tensors["token_embd.weight"].shape[0], hidden_size=meta["llama.embedding_length"],
            intermediate_size=meta["llama.feed_forward_length"], num_hidden_layers=meta["llama.block_count"],
            num_attention_heads=meta["llama.attention.head_count"],
            num_key_value_heads=meta["llama.attention.head_count_kv"],
            max_position_embeddings=meta["llama.context_length"],
            rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
            rope_parameters={"rope_type": "default", "rope_theta": float(meta["llama.rope.freq_base"])},
            tie_word_embeddings="output.weight" not in tensors,
            bos_token_id=meta.get("tokenizer.ggml.bos_token_id"), eos_token_id=meta.get("tokenizer.ggml.eos_token_id"))
        model = LlamaForCausalLM(config).eval()
        self.model = model
        self.set_tensors(tensors)
        return model

    def hf_name(self, name: str) -> str:
        if name == "token_embd.weight":
            return "model.embed_tokens.weight"
        if name == "output_norm.weight":
            return "model.norm.weight"
        if name == "output.weight":
            return "lm_head.weight"
        _, layer, kind, _ = name.split(".")
        return f"model.layers.{layer}.{HF_NAMES[kind]}.weight"

    def set_tensors(self, replacements: dict[str, np.ndarray], permute: bool = True) -> None:
        """Copy GGUF-named (out, in) arrays into the model (q/k rows unpermuted unless ``permute`` is False)."""
        params = dict(self.model.named_parameters(remove_duplicate=False))
        heads = self.metadata["llama.attention.head_count"]
        kv_heads = self.metadata["llama.attention.head_count_kv"]
        with self.torch.no_grad():
            for name, array in replacements.items():
                if permute and ".attn_q." in name:
                    array = unpermute(array, heads)
                elif permute and ".attn_k." in name:
                    array = unpermute(array, kv_heads)
                params[self.hf_name(name)].copy_(self.torch.from_numpy(np.array(array, dtype=np.float32, order="C")))

    def perplexity(self, replacements: dict[str, np.ndarray] | None = None, permute: bool = True) -> float:
        """Perplexity of the evaluation text with some tensors replaced (restored afterwards).

        ``permute=False`` writes the q/k matrices in llama.cpp's row order (a check of the loader).
        """
        replacements = dict(replacements or {})
        if not permute:
            replacements = {**{name: array for name, array in self.tensors.items()
                               if ".attn_q." in name or ".attn_k." in name}, **replacements}
        self.set_tensors(replacements, permute=permute)
        try:
            with self.torch.no_grad():
                loss = float(self.model(self.ids, labels=self.ids).loss)
        finally:
            self.set_tensors({name: self.tensors[name] for name in replacements})
        return math.exp(loss) if loss < 700 else math.inf


def evaluation_text() -> tuple[str, list[str]]:
    """A fixed English text available offline: the Zen of Python and three stdlib module docstrings."""
    import argparse as argparse_module
    import collections
    import json as json_module

    with contextlib.redirect_stdout(io.StringIO()):
        import this  # prints the Zen on first import
    parts = [("the Zen of Python (codecs.decode(this.s, 'rot13'))", codecs.decode(this.s, "rot13")),
             ("json.__doc__", json_module.__doc__), ("argparse.__doc__", argparse_module.__doc__),
             ("collections.__doc__", collections.__doc__)]
    return "\n\n".join(text.strip() for _, text in parts), [label for label, _ in parts]


@functools.lru_cache(maxsize=1)
def smollm2_model() -> SmolLM2:
    log("loading SmolLM2-135M-Instruct Q4_1")
    return SmolLM2()


# ----------------------------------------------------------------------------------------------
# Section 1: condition number vs. fp16/int8 output error
# ----------------------------------------------------------------------------------------------

CONDITION_MODELS = ("craft", "yolov8n-nudenet", "smollm2-q4_1", "minilm")
NEAR_DEAD = 1e-4  # a row (filter) whose norm is below this × the median row norm
ERROR_KINDS = [(inputs, fmt_name) for inputs in ("random", "weak") for fmt_name in FORMATS]


def measure_condition(name: str, array: np.ndarray) -> dict[str, Any]:
    w = as_matrix(array)
    m, n = w.shape
    live, rows, cols = live_part(w)
    if live.size == 0:
        return {"tensor": name, "shape": list(array.shape), "matrix": [m, n], "kappa": math.nan}
    _, values, vt = np.linalg.svd(live, full_matrices=False)
    kappa = condition_number(values, live.shape)
    rank = len(values)
    k = max(1, math.ceil(WEAK_FRACTION * rank))
    weak = np.zeros((n, k))
    weak[cols] = vt[-k:].T
    x_random = gaussian_inputs(n)
    coefficients = np.random.default_rng([SEED, n, k, 1]).standard_normal((k, N_INPUTS))
    x_weak = weak @ coefficients
    row_norms = np.linalg.norm(live, axis=1)
    result: dict[str, Any] = {
        "tensor": name, "shape": list(array.shape), "matrix": [m, n], "live": list(live.shape),
        "kappa": kappa, "sv_max": float(values[0]), "sv_min": float(values[-1]), "weak_directions": k,
        "near_dead_rows": int(np.sum(row_norms < NEAR_DEAD * np.median(row_norms))),
        "fp16_exact": bool(np.array_equal(fp16_cast(w), w))}
    for fmt_name, quantize in FORMATS.items():
        w_new = quantize(w)
        result[f"random_{fmt_name}"] = output_error(w, w_new, x_random)
        result[f"weak_{fmt_name}"] = output_error(w, w_new, x_weak)
    return result


def section_condition() -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for model_id in CONDITION_MODELS:
        log(f"condition: {model_id}")
        for name, array in load_model_matrices(model_id).items():
            row = measure_condition(name, array)
            row["model"] = model_id
            rows.append(row)
    rows = [row for row in rows if not math.isnan(row["kappa"])]
    log_kappa = [math.log(row["kappa"]) if math.isfinite(row["kappa"]) else math.inf for row in rows]
    correlations: dict[str, Any] = {}
    for scope in ("all",) + CONDITION_MODELS:
        picked = [i for i, row in enumerate(rows) if scope == "all" or row["model"] == scope]
        correlations[scope] = {
            f"{inputs}_{fmt_name}": spearman([log_kappa[i] for i in picked],
                                             [rows[i][f"{inputs}_{fmt_name}"] for i in picked])
            for inputs, fmt_name in ERROR_KINDS}
    return {"matrices": rows, "spearman": correlations}


def render_condition(raw: dict[str, Any]) -> list[str]:
    rows = raw["matrices"]
    corr = raw["spearman"]
    out = ["## 1. Condition number vs. what fp16 and int8 do to a layer's output", ""]
    count = len(rows)
    out += [
        f"WL101 says a large condition number κ = σmax/σmin means numerical instability and large int8 error. "
        f"For every weight matrix of four corpus models ({count} matrices: conv kernels as out × in·kh·kw; for "
        f"SmolLM2 the `attn_q` and `attn_output` of every other block, dequantized from Q4_1) κ is computed by a "
        f"float64 SVD of the matrix without its all-zero rows and columns, and each matrix W is replaced by its "
        f"fp16 cast, per-channel int8 (scale max|row|/127) and per-tensor int8; the relative output error "
        f"‖(W′ − W)X‖F/‖WX‖F is measured on X = {N_INPUTS} input columns drawn N(0, I) (fixed seed) and shown "
        f"in dB (−20·log10 error; higher is better).",
        "",
        result_condition(rows, corr),
        "",
        "### Summary per model (Gaussian inputs; dB, higher is better)",
        "",
    ]
    summary = []
    for model_id in ("all",) + CONDITION_MODELS:
        picked = [r for r in rows if model_id == "all" or r["model"] == model_id]
        kappas = [r["kappa"] for r in picked]
        summary.append([
            model_id, len(picked), fmt(min(kappas)), fmt(float(np.median(kappas))), fmt(max(kappas)),
            sum(k >= 1e4 for k in kappas), sum(k >= 1e5 for k in kappas),
            range_text([db(r["random_fp16"]) for r in picked]),
            range_text([db(r["random_int8_channel"]) for r in picked]),
            range_text([db(r["random_int8_tensor"]) for r in picked]),
            range_text([db(r["weak_int8_channel"]) for r in picked])])
    out += table(["model", "matrices", "κ min", "κ median", "κ max", "κ ≥ 1e4", "κ ≥ 1e5", "fp16 dB",
                  "int8/ch dB", "int8/t dB", "int8/ch dB, weak X"], summary, align="lrrrrrrrrrr")
    out += ["", "Ranges are min–max over the model's matrices.", "",
            "### Spearman rank correlation of log κ with the relative output error", "",
            "Positive ρ: larger κ, larger error. X: Gaussian inputs, or inputs drawn from the weakest 1% of the "
            "right-singular directions (at least one).", ""]
    corr_rows = []
    for inputs, fmt_name in ERROR_KINDS:
        key = f"{inputs}_{fmt_name}"
        cells = [f"{FORMAT_LABELS[fmt_name]}, {'Gaussian' if inputs == 'random' else 'weak'} X",
                 fmt(corr["all"][key]["rho"]), fmt_p(corr["all"][key]["p"])]
        cells += [fmt(corr[m][key]["rho"]) for m in CONDITION_MODELS]
        corr_rows.append(cells)
    out += table(["error", "ρ (all)", "p (all)"] + [f"ρ {m}" for m in CONDITION_MODELS], corr_rows)
    out += [""]
    for model_id in CONDITION_MODELS:
        picked = [r for r in rows if r["model"] == model_id]
        by_kappa = sorted(picked, key=lambda r: -r["kappa"])
        top = by_kappa[:10]
        names = {r["tensor"] for r in top}
        controls = sorted((r for r in picked if r["tensor"] not in names and math.isfinite(r["kappa"])),
                          key=lambda r: abs(math.log10(r["kappa"]) - 4))[:10]
        controls.sort(key=lambda r: -r["kappa"])
        control_range = range_text([r["kappa"] for r in controls]) if controls else "none"
        out += [f"### {model_id}: the 10 largest κ, then the 10 others nearest κ = 1e4 (controls: κ {control_range})", ""]
        body = []
        for group, members in (("top", top), ("control", controls)):
            for r in members:
                body.append([f"`{r['tensor']}`", group, "×".join(map(str, r["matrix"])), fmt(r["kappa"])]
                            + [fmt(db(r[f"{i}_{f}"])) for i, f in ERROR_KINDS])
        out += table(["matrix", "set", "m×n", "κ", "fp16 dB", "int8/ch dB", "int8/t dB", "fp16 dB weak X",
                      "int8/ch dB weak X", "int8/t dB weak X"], body, align="llrrrrrrrr")
        out += [""]
    return out


def result_condition(rows: list[dict[str, Any]], corr: dict[str, Any]) -> str:
    """The data-driven summary paragraph of section 1."""
    high = [r for r in rows if r["kappa"] >= 1e5]
    rest = [r for r in rows if r["kappa"] < 1e5]
    exact = [r for r in rows if r["fp16_exact"]]
    fp16_finite = [db(r["random_fp16"]) for r in rows if not r["fp16_exact"]]
    rho = {key: corr["all"][key]["rho"] for key in corr["all"]}
    per_model = [corr[m][f"random_{f}"]["rho"] for m in CONDITION_MODELS for f in FORMATS
                 if corr[m][f"random_{f}"]["rho"] is not None]
    high_int8 = [db(r["random_int8_channel"]) for r in high]
    rest_int8 = [db(r["random_int8_channel"]) for r in rest]
    weak_gap = [db(r["random_int8_channel"]) - db(r["weak_int8_channel"]) for r in rows]
    worst_tensor = min(rows, key=lambda r: db(r["random_int8_tensor"]))
    dead = [r for r in high if r["near_dead_rows"]]
    text = (f"**Result.** On generic inputs the output error does not follow κ. Over all {len(rows)} matrices the "
            f"rank correlation of log κ with the output error is ρ = {fmt(rho['random_fp16'], 2)} (fp16), "
            f"{fmt(rho['random_int8_channel'], 2)} (int8 per channel) and {fmt(rho['random_int8_tensor'], 2)} "
            f"(int8 per tensor), negative meaning larger κ, *smaller* error; within one model it ranges from "
            f"{fmt(min(per_model), 2)} to {fmt(max(per_model), 2)}, with no consistent sign. The fp16 output SNR is "
            f"{range_text(fp16_finite)} dB for every matrix ({len(exact)} are exactly representable in fp16 and lose "
            f"nothing) across κ from {fmt(min(r['kappa'] for r in rows))} to {fmt(max(r['kappa'] for r in rows))}. ")
    if high:
        verdict = ("no worse than" if min(high_int8) >= min(rest_int8) and np.median(high_int8) >= np.median(rest_int8) - 1
                   else "worse than")
        text += (f"The {len(high)} matrices with κ ≥ 1e5 (WL101's error level) keep {range_text(high_int8)} dB under "
                 f"per-channel int8 (median {fmt(float(np.median(high_int8)))}), {verdict} the {len(rest)} others "
                 f"({range_text(rest_int8)} dB, median {fmt(float(np.median(rest_int8)))}). ")
        if dead:
            limit = f"1e{round(math.log10(NEAR_DEAD))}".replace("-", "−")
            text += (f"{len(dead)} of them contain near-dead rows, whose norm (below {limit} × the median row "
                     f"norm) alone forces σmin down (count of such rows in parentheses): "
                     + ", ".join(f"`{r['tensor']}` ({r['model']}: {r['near_dead_rows']})" for r in dead)
                     + "; these are filters that training switched off (see section 5), not an unstable layer. ")
    text += (f"What int8 does fail on is not seen by κ: the worst per-tensor int8 output, {fmt(db(worst_tensor['random_int8_tensor']))} dB "
             f"(`{worst_tensor['tensor']}`, {worst_tensor['model']}), has κ = {fmt(worst_tensor['kappa'])}. "
             f"κ does matter for inputs that lie in the weak directions: with X drawn from the bottom 1% of the "
             f"right-singular vectors the same per-channel int8 loses {fmt(float(np.median(weak_gap)))} dB more "
             f"(median; up to {fmt(max(weak_gap))} dB), and that error follows κ (ρ = {fmt(rho['weak_fp16'], 2)} fp16, "
             f"{fmt(rho['weak_int8_channel'], 2)} int8/ch, {fmt(rho['weak_int8_tensor'], 2)} int8/t). Whether this "
             f"matters depends on whether the layer's real inputs carry energy in those directions, which the "
             f"weights alone cannot tell.")
    return text


def range_text(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    low, high = min(values), max(values)
    if fmt(low) == fmt(high):
        return fmt(low)
    return f"{fmt(low)} to {fmt(high)}" if low < 0 else f"{fmt(low)}–{fmt(high)}"


# ----------------------------------------------------------------------------------------------
# Section 2: untrained-layer test on trained attention values
# ----------------------------------------------------------------------------------------------

MAX_DISPERSION = 1.5  # WL601's max_dispersion
UNTRAINED_TARGETS = ("blk.1.attn_v.weight", "blk.10.attn_v.weight", "blk.27.attn_v.weight")


def random_like(w: np.ndarray, seed: int) -> np.ndarray:
    """A Gaussian matrix of w's shape and Frobenius norm (seeded)."""
    g = np.random.default_rng([SEED, seed]).standard_normal(w.shape)
    return (g * (np.linalg.norm(w.astype(np.float64)) / np.linalg.norm(g))).astype(np.float32)


def layer_of(name: str) -> int:
    return int(name.split(".")[1])


def section_untrained() -> dict[str, Any]:
    lm = smollm2_model()
    values = {name: w for name, w in lm.tensors.items() if name.endswith("attn_v.weight")}
    spectra = {}
    for name, w in sorted(values.items(), key=lambda item: layer_of(item[0])):
        spectra[name] = {**marchenko_pastur(singular_values(w), w.shape), **dispersion(w)}
    in_bulk = [name for name, s in spectra.items() if s["mp_spikes"] == 0]
    spiky = [name for name, s in spectra.items() if s["mp_spikes"] > 0]
    most = max(spiky, key=lambda name: (spectra[name]["mp_spikes"], -layer_of(name))) if spiky else None
    near = min((n for n in spiky if n != most), key=lambda n: (abs(layer_of(n) - 10), layer_of(n)), default=None)
    controls = [name for name in (most, near) if name]
    replacement = {name: random_like(values[name], layer_of(name)) for name in values}
    replacement_spectra = {name: {**marchenko_pastur(singular_values(replacement[name]), values[name].shape),
                                  **dispersion(replacement[name])} for name in set(UNTRAINED_TARGETS) | set(controls)}
    log("untrained: baseline perplexity")
    started = time.time()
    baseline = lm.perplexity()
    forward_s = time.time() - started
    log(f"untrained: baseline {baseline:.4g} ({forward_s:.1f} s per evaluation)")
    permutation_check = None
    if not lm.via_transformers:
        permutation_check = lm.perplexity(permute=False)
        log(f"untrained: without undoing the q/k permutation {permutation_check:.4g}")
    runs = [{"label": "baseline (nothing replaced)", "replaced": [], "role": "baseline", "perplexity": baseline}]
    plans = [(f"`{n}`", [n], "target") for n in UNTRAINED_TARGETS]
    plans.append(("the three together", list(UNTRAINED_TARGETS), "target"))
    extra = [n for n in in_bulk if n not in UNTRAINED_TARGETS]
    if extra:
        plans.append((f"all {len(in_bulk)} in-bulk `attn_v` together", in_bulk, "target"))
    plans += [(f"`{n}` (control)", [n], "control") for n in controls]
    for label, names, role in plans:
        ppl = lm.perplexity({n: replacement[n] for n in names})
        log(f"untrained: {label} → {ppl:.4g}")
        runs.append({"label": label, "replaced": names, "role": role, "perplexity": ppl})
    return {"model": "smollm2-q4_1", "loader": lm.loader_note, "via_transformers": lm.via_transformers,
            "tied_embeddings": lm.tied, "text_sources": lm.text_sources, "tokens": int(lm.ids.shape[1]),
            "text_chars": len(lm.text), "seconds_per_evaluation": forward_s,
            "perplexity_without_unpermute": permutation_check, "attn_v_spectra": spectra,
            "in_bulk": in_bulk, "controls": controls, "replacement_spectra": replacement_spectra, "runs": runs}


def render_untrained(raw: dict[str, Any]) -> list[str]:
    spectra = raw["attn_v_spectra"]
    runs = raw["runs"]
    baseline = runs[0]["perplexity"]
    targets_in_bulk = all(spectra[n]["mp_spikes"] == 0 for n in UNTRAINED_TARGETS)
    worst_target = max((r for r in runs if r["role"] == "target" and len(r["replaced"]) == 1),
                       key=lambda r: r["perplexity"])
    best_target = min((r for r in runs if r["role"] == "target" and len(r["replaced"]) == 1),
                      key=lambda r: r["perplexity"])
    together = next(r for r in runs if r["label"] == "the three together")
    control_runs = [r for r in runs if r["role"] == "control"]
    singles = [r["perplexity"] / baseline for r in runs if r["role"] == "target" and len(r["replaced"]) == 1]
    target_median = float(np.median(singles))
    control_median = float(np.median([r["perplexity"] / baseline for r in control_runs])) if control_runs else math.nan
    compare = "as much as" if target_median >= control_median else "less than"
    bulk_disp = [max(spectra[n]["row_dispersion"], spectra[n]["column_dispersion"]) for n in raw["in_bulk"]]
    reps = raw["replacement_spectra"]
    rep_disp = [max(r["row_dispersion"], r["column_dispersion"]) for r in reps.values()]
    out = ["## 2. Untrained-layer test on trained attention values", ""]
    out += [
        f"WL601's spectral test calls a matrix untrained when no eigenvalue of WᵀW rises above the "
        f"Marchenko–Pastur bulk. SmolLM2-135M-Instruct is a trained model, yet {len(raw['in_bulk'])} of its "
        f"{len(spectra)} `attn_v` matrices have no MP spike ({', '.join('blk.' + str(layer_of(n)) for n in raw['in_bulk'])}). "
        f"If they were untrained, replacing one with a Gaussian matrix of the same Frobenius norm (seeded) "
        f"would not change the model. The model: {raw['loader']}. The text: {', '.join(raw['text_sources'])}, joined "
        f"by blank lines ({raw['text_chars']} characters, {raw['tokens']} tokens with the GGUF's tokenizer, one "
        f"sequence, no BOS); perplexity = exp(mean next-token cross-entropy), fp32 on the CPU.",
        "",
    ]
    if raw.get("perplexity_without_unpermute") is not None:
        out += [f"Loader check: baseline perplexity {fmt(baseline)}; with llama.cpp's q/k permutation left in place it "
                f"is {fmt(raw['perplexity_without_unpermute'])}, so the permutation is undone correctly.", ""]
    verdict = ("the claim that these layers are untrained does **not** hold" if worst_target["perplexity"] > 1.1 * baseline
               else "the replacement barely matters, consistent with the layers being unused")
    control_text = "; ".join(f"{r['label'].replace(' (control)', '')} ({spectra[r['replaced'][0]]['mp_spikes']} spikes) "
                             f"{fmt(r['perplexity'])} (×{fmt(r['perplexity'] / baseline)})" for r in control_runs)
    out += [
        f"**Result.** {'All three targets are inside the bulk. ' if targets_in_bulk else 'Not all three targets are inside the bulk (see the table). '}"
        f"Replacing one in-bulk `attn_v` by noise raises the perplexity from {fmt(baseline)} to "
        f"{fmt(best_target['perplexity'])}–{fmt(worst_target['perplexity'])} "
        f"(×{fmt(best_target['perplexity'] / baseline)}–×{fmt(worst_target['perplexity'] / baseline)}), all three "
        f"together to {fmt(together['perplexity'])} (×{fmt(together['perplexity'] / baseline)}); the spiked controls: "
        f"{control_text}. So {verdict}: a spectrum inside the MP bulk does not mean random weights, and replacing an "
        f"in-bulk matrix hurts {compare} replacing a spiked one (median ×{fmt(target_median)} vs. "
        f"×{fmt(control_median)}). What does separate them from the random "
        f"replacements is WL601's second test, the energy dispersion of rows and columns relative to i.i.d. "
        f"entries: the larger of the two is {range_text(bulk_disp)} for the {len(bulk_disp)} in-bulk `attn_v` and "
        f"{range_text(rep_disp)} for the Gaussian replacements; the rule reports only when both are below "
        f"{MAX_DISPERSION}, so with that gate it reports {sum(d < MAX_DISPERSION for d in bulk_disp)} of them, on the "
        f"spectrum alone all {len(bulk_disp)}.",
        "",
    ]
    body = []
    for run in runs:
        if run["replaced"]:
            spikes = ", ".join(str(spectra[n]["mp_spikes"]) for n in run["replaced"][:3])
            if len(run["replaced"]) > 3:
                spikes += ", …"
            lam = "; ".join(f"{fmt(spectra[n]['lambda_max_ratio'])} / {fmt(spectra[n]['mp_edge'])}"
                            for n in run["replaced"][:1]) if len(run["replaced"]) == 1 else "—"
            disp = (f"{fmt(spectra[run['replaced'][0]]['row_dispersion'])}, "
                    f"{fmt(spectra[run['replaced'][0]]['column_dispersion'])}") if len(run["replaced"]) == 1 else "—"
        else:
            spikes, lam, disp = "—", "—", "—"
        body.append([run["label"], spikes, lam, disp, fmt(run["perplexity"]), fmt(run["perplexity"] / baseline)])
    out += table(["replaced by a Gaussian matrix of equal norm", "MP spikes", "λmax/mean / MP edge",
                  "row, column dispersion", "perplexity", "× baseline"], body, align="lrrrrr")
    out += ["", "The Gaussian replacements themselves: " + "; ".join(
        f"`{n}` {reps[n]['mp_spikes']} spikes, dispersion {fmt(reps[n]['row_dispersion'])}, "
        f"{fmt(reps[n]['column_dispersion'])}" for n in sorted(reps, key=layer_of)) + ".", ""]
    out += ["All `attn_v` spectra (MP spikes, λmax/mean, edge; row and column dispersion):", ""]
    body = [[f"`{n}`", s["mp_spikes"], fmt(s["lambda_max_ratio"]), fmt(s["mp_edge"]), fmt(s["row_dispersion"]),
             fmt(s["column_dispersion"])] for n, s in spectra.items()]
    out += table(["matrix", "MP spikes", "λmax/mean", "MP edge", "row disp.", "column disp."], body)
    out += [""]
    return out


# ----------------------------------------------------------------------------------------------
# Section 3: low-rank advice applied
# ----------------------------------------------------------------------------------------------

STABLE_RANK_LIMIT = 0.1
LORA_RANK = 4
FROBENIUS_TOLERANCE = 0.1


def role_of(name: str) -> str:
    return name.split(".")[2] if name.startswith("blk.") else name.rsplit(".", 1)[0]


def truncate(w: np.ndarray, rank: int) -> np.ndarray:
    """The best rank-``rank`` approximation (truncated SVD), as the projection of W onto its top singular
    subspace: the eigenvectors of the short side's Gram matrix (float64), far cheaper than a full SVD of a
    49152 × 576 embedding, and the same matrix."""
    w = w.astype(np.float64)
    if w.shape[0] >= w.shape[1]:
        _, vectors = np.linalg.eigh(w.T @ w)
        top = vectors[:, ::-1][:, :rank]
        return ((w @ top) @ top.T).astype(np.float32)
    _, vectors = np.linalg.eigh(w @ w.T)
    top = vectors[:, ::-1][:, :rank]
    return (top @ (top.T @ w)).astype(np.float32)


def q4_1_noise() -> float | None:
    """Relative Frobenius error Q4_1 adds to a Gaussian 576 × 576 matrix (the floor under section 3)."""
    try:
        import gguf
        from gguf.quants import dequantize, quantize

        x = np.random.default_rng([SEED, 41]).standard_normal((576, 576)).astype(np.float32)
        kind = gguf.GGMLQuantizationType.Q4_1
        y = dequantize(quantize(x, kind), kind)
        return float(np.linalg.norm(y - x) / np.linalg.norm(x))
    except Exception:  # noqa: BLE001 — an older gguf without a Q4_1 quantizer
        return None


def section_lowrank() -> dict[str, Any]:
    lm = smollm2_model()
    matrices = {name: w for name, w in lm.tensors.items() if w.ndim == 2}
    stats = []
    for name, w in matrices.items():
        values = singular_values(w)
        energy = values**2
        total = float(energy.sum())
        tail = np.sqrt(np.clip(np.concatenate([np.cumsum(energy[::-1])[::-1], [0.0]]) / total, 0, None))
        rank = int(np.argmax(tail <= FROBENIUS_TOLERANCE))  # tail[r]: error of the best rank-r approximation
        m, n = w.shape
        stats.append({"tensor": name, "role": role_of(name), "shape": [m, n],
                      "stable_rank_ratio": total / energy[0] / min(m, n),
                      "rank4_error": float(tail[min(LORA_RANK, len(tail) - 1)]),
                      "rank_for_tolerance": rank, "rank_ratio": rank / min(m, n),
                      "saves_parameters": rank * (m + n) < m * n, "gguf_type": lm.types[name]})
    flagged = [s for s in stats if s["stable_rank_ratio"] < STABLE_RANK_LIMIT]
    log(f"lowrank: {len(flagged)} of {len(stats)} matrices have stable-rank ratio < {STABLE_RANK_LIMIT}")
    baseline = lm.perplexity()
    rank4 = {s["tensor"]: truncate(matrices[s["tensor"]], LORA_RANK) for s in flagged}
    for s in flagged:  # the measured error of the float32 truncation (equal to the spectral tail)
        w = matrices[s["tensor"]].astype(np.float64)
        s["rank4_error_measured"] = float(np.linalg.norm(rank4[s["tensor"]] - w) / np.linalg.norm(w))
    ppl_rank4 = lm.perplexity(rank4) if rank4 else None
    log(f"lowrank: rank-4 → {ppl_rank4}")
    del rank4
    saving = [s for s in flagged if s["saves_parameters"]]
    ppl_saving = ppl_saving_untied = None
    if saving:
        truncated = {s["tensor"]: truncate(matrices[s["tensor"]], s["rank_for_tolerance"]) for s in saving}
        for s in saving:
            w = matrices[s["tensor"]].astype(np.float64)
            s["rank_r_error_measured"] = float(np.linalg.norm(truncated[s["tensor"]] - w) / np.linalg.norm(w))
        ppl_saving = lm.perplexity(truncated)
        log(f"lowrank: rank-r (parameter-saving) → {ppl_saving}")
        untied = {name: array for name, array in truncated.items() if name != "token_embd.weight"}
        if untied and len(untied) < len(truncated):
            ppl_saving_untied = lm.perplexity(untied)
            log(f"lowrank: rank-r (parameter-saving, token_embd kept) → {ppl_saving_untied}")
    return {"model": "smollm2-q4_1", "tokens": int(lm.ids.shape[1]), "baseline_perplexity": baseline,
            "matrices": stats, "flagged": [s["tensor"] for s in flagged], "perplexity_rank4": ppl_rank4,
            "saving": [s["tensor"] for s in saving], "perplexity_saving_truncation": ppl_saving,
            "perplexity_saving_truncation_without_token_embd": ppl_saving_untied,
            "parameters_saved": int(sum(s["shape"][0] * s["shape"][1] - s["rank_for_tolerance"] * sum(s["shape"])
                                        for s in saving)),
            "q4_1_noise_on_gaussian": q4_1_noise(), "tied_embeddings": lm.tied}


def render_lowrank(raw: dict[str, Any]) -> list[str]:
    stats = raw["matrices"]
    flagged = [s for s in stats if s["tensor"] in set(raw["flagged"])]
    saving = [s for s in flagged if s["saves_parameters"]]
    baseline = raw["baseline_perplexity"]
    out = ["## 3. Low-rank advice applied", ""]
    errors = [s["rank4_error"] for s in flagged]
    ranks = [s["rank_ratio"] for s in flagged]
    out += [
        f"WL401 reports matrices whose stable-rank ratio ‖W‖F²/σmax²/min(m, n) is below {STABLE_RANK_LIMIT} and "
        f"the guide advises \"LoRA rank {LORA_RANK}\" for them. In SmolLM2-135M-Instruct (Q4_1, dequantized) "
        f"{len(flagged)} of its {len(stats)} weight matrices qualify. (a) The advice taken literally: each is "
        f"replaced by its best rank-{LORA_RANK} approximation (truncated SVD). (b) What the spectrum supports: "
        f"the smallest rank r whose truncation has relative Frobenius error ≤ {FROBENIUS_TOLERANCE}, and whether "
        f"r·(m + n) < m·n, i.e. whether the factorization saves parameters. Perplexity as in section 2 "
        f"({raw['tokens']} tokens).",
        "",
    ]
    if not flagged:
        return out + ["No matrix qualifies.", ""]
    ppl4 = raw["perplexity_rank4"]
    keeps = "keeps almost nothing of" if np.median(errors) > 0.5 else "keeps much of"
    summary = (f"**Result.** Rank {LORA_RANK} {keeps} these matrices: the relative Frobenius error "
               f"is {fmt(min(errors))} (min), {fmt(float(np.median(errors)))} (median), {fmt(max(errors))} (max), "
               f"and with all {len(flagged)} replaced at once the perplexity goes from {fmt(baseline)} to {fmt(ppl4)}. "
               f"A low stable rank says that σmax² is large next to the total energy ‖W‖F², not that the other "
               f"singular values are negligible: reaching {FROBENIUS_TOLERANCE} error needs r/min(m, n) = "
               f"{fmt(min(ranks))}–{fmt(max(ranks))} (median {fmt(float(np.median(ranks)))}). ")
    if saving:
        summary += (f"{len(saving)} of the {len(flagged)} save parameters at that rank "
                    f"({', '.join(sorted({s['role'] for s in saving}))}; {raw['parameters_saved']:,} parameters in all); "
                    f"with those truncated the perplexity is {fmt(raw['perplexity_saving_truncation'])} "
                    f"(×{fmt(raw['perplexity_saving_truncation'] / baseline)})")
        untied = raw.get("perplexity_saving_truncation_without_token_embd")
        if untied is not None:
            embd = next(s for s in saving if s["tensor"] == "token_embd.weight")
            embd_saved = embd["shape"][0] * embd["shape"][1] - embd["rank_for_tolerance"] * sum(embd["shape"])
            summary += (f", and {fmt(untied)} (×{fmt(untied / baseline)}) with `token_embd` left alone (it alone "
                        f"accounts for {embd_saved:,} of the saved parameters)")
            if untied / baseline < 1.05 <= raw["perplexity_saving_truncation"] / baseline:
                summary += (". So the attention truncations at 10% Frobenius error are harmless, while the same 10% "
                            "on the tied embedding, which is also the output layer, is not.")
            else:
                summary += "."
        else:
            summary += "."
    else:
        summary += "None of them saves parameters at that rank."
    noise = raw.get("q4_1_noise_on_gaussian")
    if noise is not None:
        summary += (f" Caveat: these are Q4_1 weights, and Q4_1 itself adds a relative error of {fmt(noise)} to a "
                    f"Gaussian matrix: a full-rank noise floor that uses most of the {FROBENIUS_TOLERANCE} budget, so r "
                    f"is larger here than it would be for the original bf16 weights. It does not change (a).")
    if (raw.get("tied_embeddings") and any(s["tensor"] == "token_embd.weight" for s in flagged)
            and raw.get("perplexity_saving_truncation_without_token_embd") is None):
        summary += " `token_embd` is tied to the output layer, so replacing it changes both."
    out += [summary, ""]
    by_role: dict[str, list[dict[str, Any]]] = {}
    for s in flagged:
        by_role.setdefault(s["role"], []).append(s)
    body = []
    for role, members in sorted(by_role.items()):
        e = [s["rank4_error"] for s in members]
        r = [s["rank_for_tolerance"] for s in members]
        body.append([f"`{role}`", "×".join(map(str, members[0]["shape"])), len(members),
                     range_text([s["stable_rank_ratio"] for s in members]),
                     f"{fmt(min(e))} / {fmt(float(np.median(e)))} / {fmt(max(e))}",
                     range_text(r), sum(s["saves_parameters"] for s in members)])
    out += ["### Matrices with stable-rank ratio < 0.1, by role", ""]
    out += table(["role", "m×n", "count", "stable-rank ratio", f"rank-{LORA_RANK} error min / median / max",
                  f"r for error ≤ {FROBENIUS_TOLERANCE}", "save parameters"], body, align="lrrrrrr")
    out += ["", "### Perplexity", ""]
    body = [["baseline", "—", fmt(baseline), fmt(1.0)],
            [f"all {len(flagged)} at rank {LORA_RANK}", len(flagged), fmt(ppl4), fmt(ppl4 / baseline)]]
    if saving:
        body.append([f"the {len(saving)} parameter-saving ones at their rank r", len(saving),
                     fmt(raw["perplexity_saving_truncation"]), fmt(raw["perplexity_saving_truncation"] / baseline)])
        untied = raw.get("perplexity_saving_truncation_without_token_embd")
        if untied is not None:
            body.append(["the same without `token_embd`", len(saving) - 1, fmt(untied), fmt(untied / baseline)])
    else:
        body.append(["rank r where it saves parameters", 0, "none save parameters", "—"])
    out += table(["replaced", "matrices", "perplexity", "× baseline"], body, align="lrrr")
    out += ["", f"### The whole model: r/min(m, n) for error ≤ {FROBENIUS_TOLERANCE}", ""]
    roles: dict[str, list[dict[str, Any]]] = {}
    for s in stats:
        roles.setdefault(s["role"], []).append(s)
    body = []
    for role, members in sorted(roles.items()) + [("all", stats)]:
        ratios = np.array([s["rank_ratio"] for s in members])
        body.append([f"`{role}`" if role != "all" else "**all**", len(members), fmt(ratios.min()),
                     fmt(float(np.percentile(ratios, 25))), fmt(float(np.median(ratios))),
                     fmt(float(np.percentile(ratios, 75))), fmt(ratios.max()),
                     sum(s["saves_parameters"] for s in members),
                     sum(s["stable_rank_ratio"] < STABLE_RANK_LIMIT for s in members)])
    out += table(["role", "matrices", "min", "25%", "median", "75%", "max", "save parameters", "stable-rank ratio < 0.1"],
                 body, align="lrrrrrrrr")
    out += [""]
    return out


# ----------------------------------------------------------------------------------------------
# Section 4: peaked conv kernels
# ----------------------------------------------------------------------------------------------

OUTLIER_MODELS = ("crepe-full", "craft", "yolov8n-nudenet", "silero-vad-safetensors")
OUTLIER_MIN_SIZE = 4096


def conv_kernels(model_id: str) -> dict[str, np.ndarray]:
    loader = {"crepe-full": load_torch, "craft": load_torch, "yolov8n-nudenet": load_onnx,
              "silero-vad-safetensors": load_safetensors}[model_id]
    return {name: a for name, a in loader(model_id).items()
            if is_matrix(a) and a.ndim >= 3 and a.size >= OUTLIER_MIN_SIZE}


def outlier_share(values: np.ndarray) -> tuple[float, str, float]:
    """% beyond 3 robust σ (median ± 3·1.4826·MAD; mean/std when MAD is 0), as WL201; the method; robust σ / std."""
    flat = values.astype(np.float64).ravel()
    center = float(np.median(flat))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(flat - center)))
    std = float(flat.std())
    ratio = scale / std if std > 0 else math.nan
    method = "median/MAD"
    if scale == 0:
        center, scale, method = float(flat.mean()), std, "mean/std"
    if scale == 0:
        return 0.0, method, ratio
    return 100.0 * float(np.mean(np.abs(flat - center) > 3 * scale)), method, ratio


def section_outliers() -> dict[str, Any]:
    rows = []
    for model_id in OUTLIER_MODELS:
        log(f"outliers: {model_id}")
        for name, array in conv_kernels(model_id).items():
            w = as_matrix(array)
            share, method, robust_ratio = outlier_share(w)
            q_channel = int8_per_channel(w)
            rows.append({"model": model_id, "tensor": name, "shape": list(array.shape), "values": int(array.size),
                         "outlier_percent": share, "scale_method": method, "robust_sigma_over_std": robust_ratio,
                         "sqnr_per_channel_db": sqnr_db(w, q_channel), "sqnr_per_tensor_db": sqnr_db(w, int8_per_tensor(w)),
                         "output_db_per_channel": db(output_error(w, q_channel, gaussian_inputs(w.shape[1])))})
    rows.sort(key=lambda r: -r["outlier_percent"])
    return {"kernels": rows}


def render_outliers(raw: dict[str, Any]) -> list[str]:
    rows = raw["kernels"]
    peaked = [r for r in rows if r["outlier_percent"] >= 10]
    warned = [r for r in rows if r["outlier_percent"] >= 1]
    below = [r for r in rows if r["output_db_per_channel"] <= 30 or r["sqnr_per_channel_db"] <= 30]
    thin = [r for r in peaked if 30 < min(r["output_db_per_channel"], r["sqnr_per_channel_db"]) < 32]
    per_tensor_low = [r for r in peaked if r["sqnr_per_tensor_db"] < 30]
    thin_text = ", ".join(f"`{r['tensor']}` ({r['model']}, {fmt(r['sqnr_per_channel_db'])} dB SQNR, "
                          f"{fmt(r['output_db_per_channel'])} dB output)" for r in thin)
    out = ["## 4. Peaked conv kernels: outlier share vs. int8", ""]
    out += [
        f"WL201 (under `profile: guide`, the share alone) calls more than 10% of values beyond 3 robust σ "
        f"(median ± 3·1.4826·MAD) an error, because int8 would lose the bulk's precision. For every conv kernel "
        f"with ≥ {OUTLIER_MIN_SIZE} values in {', '.join(OUTLIER_MODELS)} ({len(rows)} kernels), the table gives the "
        f"share, the per-channel int8 SQNR of the weights, 10·log10(Σw²/Σ(w − q)²), and the layer's output SNR "
        f"under per-channel int8 with X = N(0, I) as in section 1.",
        "",
    ]
    if peaked:
        claim = ("**every one of them keeps more than 30 dB**" if all(
            r["output_db_per_channel"] > 30 and r["sqnr_per_channel_db"] > 30 for r in peaked)
            else "**not all of them keep 30 dB** (see the table)")
        out += [f"**Result.** {len(peaked)} kernels have 10% or more \"outliers\" "
                f"({fmt(min(r['outlier_percent'] for r in peaked))}–{fmt(max(r['outlier_percent'] for r in peaked))}%), "
                f"and {claim}: per-channel SQNR {range_text([r['sqnr_per_channel_db'] for r in peaked])} dB, output SNR "
                f"{range_text([r['output_db_per_channel'] for r in peaked])} dB. Over all {len(rows)} kernels the "
                f"output SNR is {range_text([r['output_db_per_channel'] for r in rows])} dB. The share does go with a "
                f"somewhat lower SNR (rank correlation ρ = "
                f"{fmt(spearman([r['outlier_percent'] for r in rows], [r['output_db_per_channel'] for r in rows])['rho'], 2)}), "
                f"but a high share here comes from a peak of near-zero weights that makes the MAD small: the robust σ "
                f"of the peaked kernels is only {range_text([r['robust_sigma_over_std'] for r in peaked])} of their "
                f"standard deviation (1 for a Gaussian, {fmt(float(np.median([r['robust_sigma_over_std'] for r in rows])))} "
                f"median over all kernels), so 3 robust σ is well inside the ordinary range of the weights, which "
                f"absmax per channel still resolves. "
                + (f"The margin is thin for {thin_text}. " if thin else "")
                + (f"{len(below)} kernel(s) fall to 30 dB or below: "
                   + ", ".join(f"`{r['tensor']}` ({r['model']}, {fmt(r['outlier_percent'])}%)" for r in below) + ". "
                   if below else "No kernel falls to 30 dB. ")
                + (f"Per-tensor int8 is another matter: {len(per_tensor_low)} of the {len(peaked)} peaked kernels get "
                   f"less than 30 dB SQNR with one scale for the whole tensor (down to "
                   f"{fmt(min(r['sqnr_per_tensor_db'] for r in peaked))} dB, "
                   f"`{min(peaked, key=lambda r: r['sqnr_per_tensor_db'])['tensor']}`), so the advice to quantize "
                   f"per channel matters." if per_tensor_low else ""), ""]
    out += [f"### Kernels with ≥ 1% beyond 3 robust σ ({len(warned)} of {len(rows)}), sorted by share", ""]
    body = [[r["model"], f"`{r['tensor']}`", "×".join(map(str, r["shape"])), fmt(r["outlier_percent"]),
             fmt(r["robust_sigma_over_std"]), fmt(r["sqnr_per_channel_db"]), fmt(r["sqnr_per_tensor_db"]), fmt(r["output_db_per_channel"])]
            for r in warned]
    out += table(["model", "kernel", "shape", "% beyond 3σ", "robust σ / std", "SQNR int8/ch dB", "SQNR int8/t dB",
                  "output SNR int8/ch dB"], body, align="lllrrrrr")
    rest = [r for r in rows if r["outlier_percent"] < 1]
    if rest:
        out += ["", f"The other {len(rest)} kernels (< 1% beyond 3σ): per-channel SQNR "
                    f"{range_text([r['sqnr_per_channel_db'] for r in rest])} dB, output SNR "
                    f"{range_text([r['output_db_per_channel'] for r in rest])} dB (all rows are in the JSON)."]
    out += [""]
    return out


# ----------------------------------------------------------------------------------------------
# Section 5: fp16 underflow of BatchNorm-gated filters
# ----------------------------------------------------------------------------------------------

def batchnorm_after(state: dict[str, np.ndarray], conv_name: str) -> dict[str, np.ndarray] | None:
    """The BatchNorm that follows a conv in a Sequential (index + 1), if the checkpoint has one."""
    prefix, index, _ = conv_name.rsplit(".", 2)
    if not index.isdigit():
        return None
    bn = f"{prefix}.{int(index) + 1}."
    if bn + "running_var" not in state:
        return None
    return {key: state[bn + key] for key in ("weight", "bias", "running_mean", "running_var")}


def section_underflow() -> dict[str, Any]:
    state = load_torch("craft")
    rows = []
    for name, array in state.items():
        if not (is_matrix(array) and array.ndim == 4):
            continue
        w = as_matrix(array)
        nonzero = w != 0
        tiny = nonzero & (np.abs(w) <= FP16_FLUSH)
        w16 = fp16_cast(w)
        control = np.where(tiny, w, w16)  # tiny values kept exactly, the others rounded
        x = gaussian_inputs(w.shape[1])
        row_max = np.abs(w).max(axis=1)
        gated = row_max < FP16_SUBNORMAL  # whole filters inside fp16's subnormal range or below
        bn = batchnorm_after(state, name)
        result = {"tensor": name, "shape": list(array.shape), "nonzero": int(nonzero.sum()),
                  "tiny_count": int(tiny.sum()), "tiny_percent": 100.0 * tiny.sum() / max(int(nonzero.sum()), 1),
                  "flushed_to_zero": int(np.sum(nonzero & (w16 == 0))),
                  "fp16_db": db(output_error(w, w16, x)), "control_db": db(output_error(w, control, x)),
                  "flush_only_db": db(output_error(w, w + (w16 - control), x)),
                  "subnormal_filters": int(gated.sum()),
                  "tiny_in_subnormal_filters_percent": 100.0 * float(tiny[gated].sum()) / max(int(tiny.sum()), 1),
                  "has_batchnorm": bn is not None}
        if bn is not None:
            gain = (bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + BN_EPS))[:, None]
            result.update({
                "bn_fp16_db": db(output_error(gain * w, gain * w16, x)),
                "bn_control_db": db(output_error(gain * w, gain * control, x)),
                "bn_flush_only_db": db(output_error(gain * w, gain * (w + (w16 - control)), x)),
                "gated_filters_max_abs_gamma": float(np.abs(bn["weight"][gated]).max()) if gated.any() else None,
                "median_abs_gamma": float(np.median(np.abs(bn["weight"])))})
        rows.append(result)
    return {"model": "craft", "batchnorm_eps": BN_EPS, "kernels": rows}


def render_underflow(raw: dict[str, Any]) -> list[str]:
    rows = raw["kernels"]
    hit = [r for r in rows if r["tiny_count"] > 0]
    out = ["## 5. fp16 underflow of BatchNorm-gated filters", ""]
    out += [
        f"WL102 warns when more than 1% of a tensor's non-zero values are at most 2^−25 (they become 0 in fp16). "
        f"CRAFT has such conv kernels: its VGG16-BN backbone has filters whose weights all decayed to ~1e−8, "
        f"which their BatchNorm gates off with γ ≈ 0. For each conv kernel: the share of non-zero values "
        f"≤ 2^−25, the output SNR of the fp16 cast (X = N(0, I) as in section 1), a control where the tiny values "
        f"are kept exactly and only the others rounded, and the error of the flush alone (fp16 cast minus "
        f"control). Columns marked BN measure the same after the following BatchNorm's per-channel gain "
        f"γ/√(running_var + {fmt(raw['batchnorm_eps'])}), i.e. what the next layer sees.",
        "",
    ]
    if hit:
        worst = max(hit, key=lambda r: r["tiny_percent"])
        deltas = [r["control_db"] - r["fp16_db"] for r in hit]
        margin = [r["flush_only_db"] - r["control_db"] for r in hit]
        gated = [r for r in rows if r["subnormal_filters"]]
        holds = min(margin) > 0
        total_tiny = sum(r["tiny_count"] for r in hit)
        in_gated = sum(r["tiny_count"] * r["tiny_in_subnormal_filters_percent"] / 100.0 for r in hit)
        gamma_text = ""
        if gated:
            gammas = [r["gated_filters_max_abs_gamma"] for r in gated if r.get("gated_filters_max_abs_gamma") is not None]
            if gammas:
                gamma_text = (f" Those sub-2^−14 filters have |γ| ≤ {fmt(max(gammas))} in their BatchNorm (median |γ| of "
                              f"the layers: {range_text([r['median_abs_gamma'] for r in gated])}): they are switched off "
                              f"either way, and after the BatchNorm gain the flush is still "
                              f"{range_text([r['bn_flush_only_db'] for r in hit if r.get('bn_flush_only_db') is not None])} "
                              f"dB below the signal.")
        warned = [r for r in rows if r["tiny_percent"] > WL102_PERCENT]
        out += [f"**Result.** {len(hit)} of {len(rows)} kernels have values ≤ 2^−25, {len(warned)} of them more "
                f"than WL102's {fmt(WL102_PERCENT)}%, up to "
                f"{fmt(worst['tiny_percent'])}% of the non-zero values (`{worst['tensor']}`); "
                f"{fmt(100.0 * in_gated / total_tiny)}% of them sit in the {sum(r['subnormal_filters'] for r in rows)} "
                f"filters whose every weight is below 2^−14, the rest are the near-zero tail of live filters. "
                f"Flushing them changes the output SNR by at most {fmt(max(abs(d) for d in deltas))} dB (fp16 cast vs. "
                f"the control); the flush alone is "
                f"{range_text([r['flush_only_db'] for r in hit])} dB below the signal, "
                + (f"{fmt(min(margin))} dB or more below fp16's own rounding of the other values "
                   f"({range_text([r['control_db'] for r in hit])} dB), so the claim that these layers are harmed "
                   f"by fp16 underflow does not hold." if holds else
                   f"which is **not** always below fp16's own rounding ({range_text([r['control_db'] for r in hit])} dB).")
                + gamma_text, ""]
    body = []
    for r in rows:
        body.append([f"`{r['tensor']}`", "×".join(map(str, r["shape"])), fmt(r["tiny_percent"]), r["subnormal_filters"],
                     fmt(r["tiny_in_subnormal_filters_percent"]) if r["tiny_count"] else "—",
                     fmt(r["fp16_db"]), fmt(r["control_db"]), fmt(r["flush_only_db"]),
                     fmt(r.get("bn_fp16_db")), fmt(r.get("bn_control_db")), fmt(r.get("bn_flush_only_db"))])
    out += table(["kernel", "shape", "% ≤ 2^−25", "filters < 2^−14", "% of those in them", "fp16 dB", "control dB",
                  "flush only dB", "BN: fp16 dB", "BN: control dB", "BN: flush only dB"], body, align="llrrrrrrrrr")
    out += ["", "% ≤ 2^−25: of the non-zero values. Filters < 2^−14: filters (rows) whose largest |w| is in fp16's "
                "subnormal range or below; % of those in them: the share of the ≤ 2^−25 values that lie in such "
                "filters. dB: output SNR, −20·log10(‖ΔW·X‖F/‖W·X‖F); ∞: no error (nothing flushed); — : no "
                "BatchNorm follows (or nothing to count).", ""]
    return out


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

RUNNERS = {"condition": (section_condition, render_condition), "untrained": (section_untrained, render_untrained),
           "lowrank": (section_lowrank, render_lowrank), "outliers": (section_outliers, render_outliers),
           "underflow": (section_underflow, render_underflow)}


def environment() -> dict[str, Any]:
    import scipy

    info = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "cores": os.cpu_count(), "machine": f"{platform.machine()} {platform.system()}",
            "threads": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}
    for module in ("torch", "transformers", "gguf", "onnx", "safetensors"):
        try:
            info[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            try:
                from importlib.metadata import version

                info[module] = version(module)
            except Exception:  # noqa: BLE001
                info[module] = None
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=SECTIONS, help="a section (repeatable)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "evidence.md"), help="the Markdown report")
    parser.add_argument("--json", default=str(HERE / "results" / "evidence.json"), help="the raw numbers")
    args = parser.parse_args(argv)
    selected = [s for s in SECTIONS if not args.only or s in args.only]
    command = "python benchmarks/evidence.py" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None
                                                                                         else sys.argv[1:]))
    started = time.time()
    raw: dict[str, Any] = {}
    markdown: list[str] = []
    timings: dict[str, float] = {}
    for section in selected:
        measure, render = RUNNERS[section]
        t0 = time.time()
        log(f"section {section}")
        raw[section] = measure()
        timings[section] = time.time() - t0
        markdown += render(raw[section])
        log(f"section {section} done in {timings[section]:.1f} s")
    env = environment()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    output, json_path = Path(args.output), Path(args.json)
    try:
        json_display = os.path.relpath(json_path, output.resolve().parent)
    except ValueError:
        json_display = str(json_path)
    try:
        json_label = str(json_path.resolve().relative_to(ROOT))
    except ValueError:
        json_label = str(json_path)
    header = [
        "# Evidence: what the findings claim, applied and measured", "",
        "<!-- Generated by benchmarks/evidence.py: do not edit by hand. -->",
        f"Generated by `{command}` on {now} — do not edit by hand; rerun it. Raw numbers: "
        f"[`{json_label}`]({json_display}).", "",
        f"Python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, torch {env['torch']}, "
        f"transformers {env['transformers']}, gguf {env['gguf']}, onnx {env['onnx']}; {env['cores']} cores "
        f"(BLAS threads {env['threads']['OPENBLAS_NUM_THREADS']}, OpenMP threads {env['threads']['OMP_NUM_THREADS']}), "
        f"{env['machine']}. Models: the calibration corpus (`benchmarks/corpus.yaml`), read offline. "
        f"Random inputs X: {N_INPUTS} columns, seed {SEED}. Numbers to 3 significant digits.", "",
        "Each section takes one claim the rules make, does what the claim is about (cast, quantize, replace, "
        "truncate) and measures the effect on the layer's output or the model's perplexity.", "",
        "| section | s |", "|---|---:|",
        *[f"| {s} | {fmt(t)} |" for s, t in timings.items()], "",
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(header + markdown).rstrip() + "\n")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(jsonable({"command": command, "generated": now, "environment": env,
                                              "seed": SEED, "inputs": N_INPUTS, "seconds": timings,
                                              "total_seconds": time.time() - started, "sections": raw}),
                                    indent=1) + "\n")
    log(f"wrote {output} and {json_path} in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
