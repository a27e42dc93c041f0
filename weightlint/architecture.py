"""What a Hugging Face folder's ``config.json`` says the checkpoint must contain.

The model class named in ``config.architectures`` is built by ``transformers`` on the meta device:
no weights are allocated, nothing is downloaded, no code from the checkpoint is run (a config that
needs ``trust_remote_code`` is not built). The skeleton gives every persistent tensor the model
expects, its shape, the module that owns it (``Linear``, HF ``Conv1D``, ``Embedding``,
``LayerNorm`` …) and which tensors are tied. ``transformers`` is imported only when a folder has a
``config.json`` that names a model type.

The comparison with a checkpoint lives in ``rules/architecture.py`` (WL003, WL004, WL005).
:func:`annotate_sources` gives each record its module type, layout and ties (``record.layout``,
``record.metadata``); the runner calls it before any rule runs, and the model-level rules call it
again (it is idempotent) so that they work whoever built the ``ModelView``. ``sources.resolve``
reads each config once, so that one that cannot be built is a note of the report.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from weightlint.config import limits

CONFIG_NAME = "config.json"
INSTALL_HINT = "pip install weightlint[hf]"
# Module class → (kind, layout of its weight). Checked by isinstance first, then by class name.
_NAMED_KINDS = (
    ("Conv1D", "conv1d", "in_out"),  # Hugging Face GPT-2 family: weight stored (in, out)
    ("Embedding", "embedding", "out_in"),
)
_NORM_NAME = re.compile(r"(Layer|RMS|Group|Batch|Instance)?Norm(\dd)?$", re.IGNORECASE)


@dataclass(frozen=True)
class ModuleInfo:
    """The module that owns a tensor: its class name, a coarse kind and the weight's layout."""

    type: str  # class name: "Linear", "Conv1D", "LlamaRMSNorm" …
    kind: str  # "linear", "conv1d", "embedding", "norm", "conv", "other"
    layout: str | None  # "out_in", "in_out"; None for tensors that are not a weight matrix


@dataclass
class Skeleton:
    """Everything the comparison needs from a model built on the meta device; no tensors kept."""

    architecture: str
    model_type: str
    prefix: str  # base_model_prefix ("transformer", "model", "bert" …), "" when none
    expected: dict[str, tuple[int, ...]]  # persistent state-dict key → shape
    modules: dict[str, ModuleInfo]
    tied: dict[str, tuple[str, ...]]  # key → the other keys that are the same tensor
    buffers: frozenset[str]  # every buffer, persistent or not (loaders ignore unexpected buffers)
    ignore_missing: tuple[str, ...] = ()  # regexes the model class declares (``_keys_to_ignore_on_load_missing``)
    ignore_unexpected: tuple[str, ...] = ()
    # transformers >= 5 renames and fuses checkpoint keys while loading (legacy ``gamma``/``beta``,
    # Mixtral's per-expert ``w1``/``w3`` into ``experts.gate_up_proj`` …): a factory of fresh renamers.
    renamer_factory: Callable[[], Callable[[str], tuple[str, bool]]] | None = field(default=None, repr=False)
    has_renamer: bool | None = None  # whether transformers renames keys of this model (None: ask the factory)
    # Renamings already computed, name → (loaded name, fused): a skeleton from the on-disk cache has
    # these instead of a factory; a name it has not seen makes it rebuild the real skeleton once.
    renames: dict[str, tuple[str, bool]] | None = field(default=None, repr=False)
    rebuild: Callable[[], "Skeleton"] | None = field(default=None, repr=False)
    on_renames: Callable[["Skeleton"], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.has_renamer is None:
            self.has_renamer = self.renamer_factory is not None

    def knows(self, key: str) -> bool:
        return key in self.expected or key in self.buffers

    def align(self, names: Iterable[str]) -> "Alignment":
        """How a checkpoint's names map to this skeleton's keys (see :class:`Alignment`)."""
        names = list(names)
        renamed = self._renamed(names)
        loaded = [renamed[name][0] if name in renamed else name for name in names]
        marker = self.prefix + "."
        model_prefixed = bool(self.prefix) and any(key.startswith(marker) for key in self.expected)
        checkpoint_prefixed = bool(self.prefix) and any(name.startswith(marker) for name in loaded)
        if model_prefixed and not checkpoint_prefixed:
            return Alignment(self, "add", renamed)
        if checkpoint_prefixed and not model_prefixed:
            return Alignment(self, "strip", renamed)
        return Alignment(self, "same", renamed)

    def _renamed(self, names: list[str]) -> dict[str, tuple[str, bool]]:
        """The names that loading renames, with what they become (identity renames left out)."""
        if not self.has_renamer:
            return {}
        memo = self.renames
        if memo is None or any(name not in memo for name in names):
            if self.renamer_factory is None and self.rebuild is not None:
                self.renamer_factory, self.rebuild = self.rebuild().renamer_factory, None
            computed = _rename_all(self.renamer_factory, names)
            if memo is not None:
                memo.update(computed)
                if self.on_renames is not None:
                    self.on_renames(self)
            memo = computed
        return {name: memo[name] for name in names if memo[name] != (name, False)}

    def module_of(self, name: str) -> ModuleInfo | None:
        """The module owning a checkpoint tensor (``name`` with or without the base-model prefix)."""
        key = self.align([name]).key(name)
        return self.modules.get(key) if key else None


@dataclass(frozen=True)
class Alignment:
    """Checkpoint names ↔ skeleton keys, as ``from_pretrained`` matches them.

    ``same``: names are keys. ``add``: the checkpoint was saved from the base model (``wte.weight``)
    and the skeleton is a head model (``transformer.wte.weight``): the base model's keys are
    required, head keys only when present. ``strip``: the reverse (a head checkpoint, a base
    skeleton such as ``BertModel``): the prefix is dropped and head tensors are unexpected.
    """

    skeleton: Skeleton
    mode: str
    renamed: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name → (loaded name, fused)

    @property
    def marker(self) -> str:
        return self.skeleton.prefix + "."

    def converted(self, name: str) -> bool:
        """Whether loading fuses this tensor with others (its shape is not the model tensor's)."""
        return self.renamed.get(name, (name, False))[1]

    def key(self, name: str) -> str | None:
        name = self.renamed.get(name, (name, False))[0]
        if self.mode == "add" and self.skeleton.knows(self.marker + name):
            return self.marker + name
        if self.mode == "strip" and name.startswith(self.marker) and self.skeleton.knows(name[len(self.marker):]):
            return name[len(self.marker):]
        return name if self.skeleton.knows(name) else None

    def name(self, key: str) -> str:
        """The checkpoint name a skeleton key would have in this checkpoint."""
        if self.mode == "add":
            return key.removeprefix(self.marker)
        if self.mode == "strip":
            return self.marker + key
        return key

    def required(self, present: set[str]) -> list[str]:
        """Skeleton keys the checkpoint must hold (``present``: the keys it does hold)."""
        keys = self.skeleton.expected
        if self.mode == "add":  # a base-model save: the head is not part of it
            return [key for key in keys if key.startswith(self.marker) or key in present]
        return list(keys)


@dataclass
class Architecture:
    """The outcome of reading one folder's ``config.json``: a skeleton, or why there is none."""

    config_path: str
    skeleton: Skeleton | None = None
    note: str | None = None  # shown once, as a report note, when the skeleton could not be built
    relevant: bool = True  # False for a config.json that is not a transformers config
    declared: dict[str, Any] = field(default_factory=dict)  # model_type, architectures, tie_word_embeddings
    limit_exceeded: Exception | None = None  # a LimitExceeded that kept the skeleton from being built


_cache: dict[tuple[str, int, int], Architecture] = {}
# Config keys (at any nesting: text_config, encoder …) that ask the skeleton for that many layers.
LAYER_COUNT_KEYS = ("n_layer", "n_layers", "num_layers", "num_hidden_layers", "encoder_layers", "decoder_layers",
                    "num_encoder_layers", "num_decoder_layers")


def _check_layer_counts(config: dict, depth: int = 0) -> None:
    """A config asking for more layers than ``limits.skeleton_layers`` is not built (a 50,000-layer
    skeleton takes minutes and gigabytes before a single weight is read)."""
    for key, value in config.items():
        if key in LAYER_COUNT_KEYS and type(value) is int:
            limits.check("skeleton_layers", value, f"config.json {key}")
        elif isinstance(value, dict) and depth < 8:
            _check_layer_counts(value, depth + 1)


def find_config(path: str | os.PathLike) -> str | None:
    """The ``config.json`` of a checkpoint path: inside it when a folder, next to it when a file."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path) if os.path.isfile(path) else None
    if folder is None:
        return None
    candidate = os.path.join(folder, CONFIG_NAME) if folder else CONFIG_NAME
    return candidate if os.path.isfile(candidate) else None


def architecture_for(config_path: str) -> Architecture:
    """Read a ``config.json`` and build its skeleton, once per file version (cached)."""
    absolute = os.path.abspath(config_path)
    try:
        status = os.stat(absolute)
    except OSError as error:
        return Architecture(config_path, note=f"{config_path}: cannot be read ({error.strerror})")
    key = (absolute, status.st_mtime_ns, status.st_size)
    if key not in _cache:
        _cache[key] = _read(config_path)
    return _cache[key]


def _read(config_path: str) -> Architecture:
    try:
        with open(config_path, "rb") as handle:
            config = limits.load_json(handle.read(limits.current().header_bytes + 1), "config.json")
    except (OSError, ValueError, limits.LimitExceeded) as error:
        return Architecture(config_path, note=f"{config_path}: not valid JSON, architecture checks skipped ({error})")
    if not isinstance(config, dict) or not (config.get("model_type") or config.get("architectures")):
        return Architecture(config_path, relevant=False)  # some other tool's config.json
    declared = {key: config.get(key) for key in ("model_type", "architectures", "tie_word_embeddings")}
    try:
        _check_layer_counts(config)
    except limits.LimitExceeded as error:
        return Architecture(config_path, declared=declared, limit_exceeded=error,
                            note=f"{config_path}: architecture checks skipped ({error})")
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return Architecture(config_path, declared=declared,
                            note=f"{config_path}: transformers is not installed, so the architecture is not "
                                 f"checked and tensor roles come from names ({INSTALL_HINT})")
    cache = SkeletonCache.for_config(config)
    cached = cache.load() if cache else None
    if cached is not None:
        skeleton, reason = cached
    else:
        try:
            skeleton, reason = build_skeleton(config), None
        except Exception as error:  # unknown model type, custom code, a config the class rejects …
            skeleton, reason = None, " ".join(str(error).split())[:200] or type(error).__name__
        if cache:
            cache.store(skeleton, reason)
    if skeleton is None:
        architectures = config.get("architectures")
        named = ", ".join(map(str, architectures)) if isinstance(architectures, list) else architectures
        wanted = named or config.get("model_type")
        return Architecture(config_path, declared=declared,
                            note=f"{config_path}: cannot build {wanted} with transformers ({reason}); "
                                 "architecture not checked, tensor roles come from names")
    if cache:
        skeleton.rebuild = skeleton.rebuild or (lambda: build_skeleton(config))
    return Architecture(config_path, skeleton=skeleton, declared=declared)


# -- the skeleton cache ----------------------------------------------------------------------
# Building a skeleton imports transformers and PyTorch (seconds) while checking a small model takes
# less: what a config.json builds is kept on disk, keyed by the config's content and the versions
# of transformers and weightlint, so only the first run for a config pays for the build.
CACHE_SCHEMA = 1
CACHE_ENABLED = True  # the CLI's --no-cache turns it off


def cache_root() -> str | None:
    """``$WEIGHTLINT_CACHE_DIR`` (empty: no cache), else ``$XDG_CACHE_HOME/weightlint``, else
    ``~/.cache/weightlint``."""
    if not CACHE_ENABLED:
        return None
    chosen = os.environ.get("WEIGHTLINT_CACHE_DIR")
    if chosen is not None:
        return chosen or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "weightlint")


@dataclass
class SkeletonCache:
    """One config's cache file: its skeleton (or why it cannot be built) as JSON."""

    path: str

    @classmethod
    def for_config(cls, config: dict[str, Any]) -> "SkeletonCache | None":
        import hashlib
        from importlib.metadata import PackageNotFoundError, version

        from weightlint import __version__

        root = cache_root()
        if root is None:
            return None
        try:
            transformers_version = version("transformers")
        except PackageNotFoundError:
            return None
        identity = json.dumps([CACHE_SCHEMA, __version__, transformers_version, config], sort_keys=True, default=str)
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        return cls(os.path.join(root, "skeletons", f"{digest}.json"))

    def load(self) -> tuple[Skeleton | None, str | None] | None:
        """(skeleton, None), (None, why it cannot be built), or None when not cached (or unreadable)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("schema") != CACHE_SCHEMA:
                return None
            if data.get("error") is not None:
                return None, str(data["error"])
            entry = data["skeleton"]
            skeleton = Skeleton(
                architecture=entry["architecture"], model_type=entry["model_type"], prefix=entry["prefix"],
                expected={key: tuple(shape) for key, shape in entry["expected"].items()},
                modules={key: ModuleInfo(*info) for key, info in entry["modules"].items()},
                tied={key: tuple(others) for key, others in entry["tied"].items()},
                buffers=frozenset(entry["buffers"]),
                ignore_missing=tuple(entry["ignore_missing"]), ignore_unexpected=tuple(entry["ignore_unexpected"]),
                has_renamer=bool(entry["has_renamer"]),
                renames={name: (loaded, bool(fused)) for name, (loaded, fused) in entry["renames"].items()},
                on_renames=self._store_renames,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return skeleton, None

    def store(self, skeleton: Skeleton | None, error: str | None) -> None:
        if skeleton is not None:
            skeleton.renames = {} if skeleton.renames is None else skeleton.renames
            skeleton.on_renames = self._store_renames
        self._write(skeleton, error)

    def _store_renames(self, skeleton: Skeleton) -> None:
        self._write(skeleton, None)

    def _write(self, skeleton: Skeleton | None, error: str | None) -> None:
        data: dict[str, Any] = {"schema": CACHE_SCHEMA, "error": error}
        if skeleton is not None:
            data["skeleton"] = {
                "architecture": skeleton.architecture, "model_type": skeleton.model_type, "prefix": skeleton.prefix,
                "expected": {key: list(shape) for key, shape in skeleton.expected.items()},
                "modules": {key: [info.type, info.kind, info.layout] for key, info in skeleton.modules.items()},
                "tied": {key: list(others) for key, others in skeleton.tied.items()},
                "buffers": sorted(skeleton.buffers),
                "ignore_missing": list(skeleton.ignore_missing), "ignore_unexpected": list(skeleton.ignore_unexpected),
                "has_renamer": bool(skeleton.has_renamer),
                "renames": {name: list(result) for name, result in (skeleton.renames or {}).items()},
            }
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:  # atomic: a concurrent run reads the old file or the new one, never half of one
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(temporary, self.path)
        except OSError:  # a read-only home, a full disk: the cache is an optimization only
            try:
                os.remove(temporary)
            except OSError:
                pass


def build_skeleton(config: dict[str, Any]) -> Skeleton:
    """Build the model of a config dict on the meta device and describe its tensors."""
    import torch
    import transformers

    if config.get("auto_map"):
        raise ValueError("the config needs the checkpoint's own code (auto_map); weightlint never runs it")
    settings = {key: value for key, value in config.items() if key != "model_type"}
    if "use_pretrained_backbone" in settings:  # DETR-style configs would download a backbone's weights
        settings["use_pretrained_backbone"] = False
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    offline = _offline()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_type = config.get("model_type")
            model_class = _model_class(transformers, config.get("architectures") or [])
            if model_type:
                hf_config = transformers.AutoConfig.for_model(model_type, **settings)
            elif model_class is not None:  # configs older than model_type: the class knows its config
                hf_config = model_class.config_class(**settings)
                model_type = getattr(hf_config, "model_type", "")
            else:
                raise ValueError("config.json has neither a model_type nor a known architecture")
            with torch.device("meta"):
                if model_class is not None:
                    model = model_class(hf_config)
                else:
                    model = transformers.AutoModel.from_config(hf_config)
    finally:
        transformers.logging.set_verbosity(verbosity)
        offline.restore()
    return describe_model(model, model_type)


class _offline:
    """Hugging Face Hub offline mode while a skeleton is built, restored afterwards.

    The environment variable is read once, when ``huggingface_hub`` is imported, so the module
    constant is switched instead: the user's own process (a notebook calling ``weightlint.check``)
    keeps its network access.
    """

    def __init__(self) -> None:
        try:
            from huggingface_hub import constants
        except ImportError:
            self._constants = None
            return
        self._constants = constants
        self._before = getattr(constants, "HF_HUB_OFFLINE", False)
        constants.HF_HUB_OFFLINE = True

    def restore(self) -> None:
        if self._constants is not None:
            self._constants.HF_HUB_OFFLINE = self._before


def _model_class(transformers: Any, architectures: Any) -> Any:
    for name in architectures if isinstance(architectures, list) else [architectures]:
        candidate = getattr(transformers, name, None) if isinstance(name, str) else None
        if isinstance(candidate, type) and issubclass(candidate, transformers.PreTrainedModel):
            return candidate
    return None


def describe_model(model: Any, model_type: str = "") -> Skeleton:
    """A :class:`Skeleton` of an ``nn.Module`` (meta or real): keys, shapes, modules, ties."""
    state = model.state_dict(keep_vars=True)
    expected = {name: tuple(tensor.shape) for name, tensor in state.items()}
    by_identity: dict[int, list[str]] = {}
    for name, tensor in state.items():
        by_identity.setdefault(id(tensor), []).append(name)
    groups = [names for names in by_identity.values() if len(names) > 1]
    groups += _declared_ties(model, expected)
    tied: dict[str, set[str]] = {}
    for names in groups:
        members = set(names)
        for name in names:
            members |= tied.get(name, set())
        for name in members:
            tied[name] = members
    modules: dict[str, ModuleInfo] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        info = module_info(module)
        for tensor_name in (*module._parameters, *module._buffers):
            key = f"{module_name}.{tensor_name}" if module_name else tensor_name
            if tensor_name == "weight" and info.layout:
                modules[key] = info
            else:
                modules[key] = ModuleInfo(info.type, info.kind, None)
    buffers = frozenset(name for name, _ in model.named_buffers(remove_duplicate=False))
    return Skeleton(
        architecture=type(model).__name__,
        model_type=model_type,
        prefix=getattr(model, "base_model_prefix", "") or "",
        expected=expected,
        modules=modules,
        tied={name: tuple(sorted(members - {name})) for name, members in tied.items()},
        buffers=buffers,
        ignore_missing=_patterns(model, "_keys_to_ignore_on_load_missing", "_keys_to_ignore_on_save"),
        ignore_unexpected=_patterns(model, "_keys_to_ignore_on_load_unexpected"),
        renamer_factory=_renamer_factory(model),
    )


def _rename_all(factory: Any, names: list[str]) -> dict[str, tuple[str, bool]]:
    """Each name → (name as transformers would load it, fused); identity when it cannot say."""
    identity = {name: (name, False) for name in names}
    if factory is None:
        return identity
    try:
        rename = factory()
        return {name: tuple(rename(name)) for name in names}
    except Exception:  # an internal API of transformers that changed: match names as they are
        return identity


def _renamer_factory(model: Any) -> Any:
    """transformers >= 5 loads checkpoints through key renamings and converters; reuse them.

    The transforms are stateful, so each checkpoint gets fresh ones. None with transformers 4
    (checkpoint keys are the model's keys) or when the model declares no transform.
    """
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import (
            WeightConverter,
            WeightRenaming,
            rename_source_key,
        )

        if not get_model_conversion_mapping(model):
            return None
    except Exception:  # ImportError on transformers 4, or an API that moved
        return None

    def factory() -> Callable[[str], tuple[str, bool]]:
        transforms = get_model_conversion_mapping(model)
        renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
        converters = [t for t in transforms if isinstance(t, WeightConverter)]

        def rename(name: str) -> tuple[str, bool]:
            loaded, converter_pattern = rename_source_key(name, renamings, converters)
            return loaded, converter_pattern is not None

        return rename

    return factory


def _declared_ties(model: Any, expected: dict[str, Any]) -> list[list[str]]:
    """Ties the model declares but has not applied by identity (transformers 5: ``all_tied_weights_keys``)."""
    declared = getattr(model, "all_tied_weights_keys", None)
    if not isinstance(declared, dict):
        return []
    return [[target, source] for target, source in declared.items()
            if isinstance(target, str) and isinstance(source, str) and target in expected and source in expected]


def _patterns(model: Any, *attributes: str) -> tuple[str, ...]:
    found: list[str] = []
    for attribute in attributes:
        value = getattr(model, attribute, None)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple, set, frozenset)):
            found.extend(sorted(str(pattern) for pattern in value))
    return tuple(found)


def module_info(module: Any) -> ModuleInfo:
    """Kind and weight layout of one module, by type (falling back to the class name)."""
    import torch

    name = type(module).__name__
    if isinstance(module, torch.nn.Linear):
        return ModuleInfo(name, "linear", "out_in")
    if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
        return ModuleInfo(name, "conv", "in_out")  # (in, out/groups, k…)
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        return ModuleInfo(name, "conv", "out_in")
    if isinstance(module, torch.nn.Embedding):
        return ModuleInfo(name, "embedding", "out_in")
    if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)):
        return ModuleInfo(name, "norm", None)
    for class_name, kind, layout in _NAMED_KINDS:
        if name == class_name:
            return ModuleInfo(name, kind, layout)
    if _NORM_NAME.search(name):
        return ModuleInfo(name, "norm", None)
    return ModuleInfo(name, "other", None)


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a key matches one of a model class's ignore patterns (regexes, searched as loaders do)."""
    for pattern in patterns:
        try:
            if re.search(pattern, name):
                return True
        except re.error:
            if pattern in name:
                return True
    return False


def annotate(record: Any, skeleton: Skeleton, alignment: Alignment | None = None) -> None:
    """Give a record what the skeleton knows: module type and kind, layout, skeleton key, ties."""
    alignment = alignment or skeleton.align([record.name])
    key = alignment.key(record.name)
    if key is None:
        return
    record.metadata["architecture_key"] = key
    record.metadata["tied_with"] = skeleton.tied.get(key, ())
    info = skeleton.modules.get(key)
    if info is None:
        return
    record.metadata["module_type"] = info.type
    record.metadata["module_kind"] = info.kind
    if alignment.converted(record.name):
        return  # one slice of a fused model tensor: its own layout is not the model tensor's
    if info.layout and record.layout is None and len(record.shape) >= 2:
        record.layout = info.layout


# Formats whose tensor names are the PyTorch module's state-dict keys (GGUF and ONNX rename them).
COMPARED_FORMATS = ("safetensors", "safetensors-sharded", "pytorch", "pytorch-sharded")


@dataclass
class Checkpoint:
    """The records of one folder with a ``config.json``, and what the config says about them."""

    architecture: Architecture
    sources: list[Any]
    records: list[Any]
    complete: bool  # the records are the folder's whole checkpoint (not one shard named alone)

    @property
    def file(self) -> str:
        """Where findings about the checkpoint as a whole point: its index or its (first) file."""
        return self.sources[0].path

    def alignment(self) -> Alignment | None:
        skeleton = self.architecture.skeleton
        return skeleton.align(record.name for record in self.records) if skeleton else None


def checkpoints(sources: Iterable[Any], records: Iterable[Any]) -> list[Checkpoint]:
    """Group a run's records by the ``config.json`` next to their source (a folder or a file in it)."""
    found: dict[str, Checkpoint] = {}
    by_source: dict[str, Checkpoint] = {}
    for source in sources:
        if source.format not in COMPARED_FORMATS or not getattr(source, "architecture", True):
            continue
        config = find_config(source.path)
        if config is None:
            continue
        architecture = architecture_for(config)
        if not architecture.relevant:
            continue
        key = os.path.abspath(config)
        if key not in found:
            found[key] = Checkpoint(architecture, [], [], complete=True)
        found[key].sources.append(source)
        by_source[source.path] = found[key]
    if not found:
        return []
    files = {file: checkpoint for checkpoint in found.values() for s in checkpoint.sources for file in s.files}
    for record in records:
        checkpoint = by_source.get(record.metadata.get("source")) or files.get(record.file)
        if checkpoint is not None:
            checkpoint.records.append(record)
    for checkpoint in found.values():
        checkpoint.complete = _covers_folder(checkpoint)
    return list(found.values())


def _covers_folder(checkpoint: Checkpoint) -> bool:
    """Whether the sources hold every weight file of the folder (a lone shard does not)."""
    from weightlint.sources import INDEX_NAMES, TRAINER_STATE

    if any(source.format.endswith("-sharded") for source in checkpoint.sources):
        return True
    folder = os.path.dirname(os.path.abspath(checkpoint.architecture.config_path))
    entries = os.listdir(folder)
    if any(name in entries for name in INDEX_NAMES):
        return False
    scanned = {os.path.abspath(file) for source in checkpoint.sources for file in source.files}
    suffixes = tuple({os.path.splitext(file)[1] for file in scanned})
    import fnmatch

    weights = {os.path.join(folder, name) for name in entries
               if name.endswith(suffixes) and not any(fnmatch.fnmatchcase(name, p) for p in TRAINER_STATE)}
    return weights <= scanned


def annotate_sources(sources: Iterable[Any], records: Iterable[Any]) -> None:
    """Annotate every record whose folder has a buildable ``config.json`` (idempotent, cheap to repeat).

    Records of other folders, of GGUF/ONNX files and of in-memory models are left as they are. A
    config that cannot be built was already reported as a note by ``sources.resolve``.
    """
    for checkpoint in checkpoints(sources, records):
        skeleton = checkpoint.architecture.skeleton
        if skeleton is None:
            continue
        alignment = checkpoint.alignment()
        for record in checkpoint.records:
            annotate(record, skeleton, alignment)


__all__ = ["Alignment", "Architecture", "Checkpoint", "COMPARED_FORMATS", "ModuleInfo", "Skeleton", "annotate",
           "annotate_sources", "architecture_for", "build_skeleton", "checkpoints", "describe_model", "find_config",
           "matches", "module_info"]
