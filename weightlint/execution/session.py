"""A session: read the targets' tensors, check them through the rules, and build the report.
Reading the targets (:mod:`.targets`), scheduling (:mod:`.scheduling`, :mod:`.ray_executor`), the
findings policy, the report, devices and errors live beside it in this package."""

from __future__ import annotations

import copy
import os
import time
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from weightlint.architecture import annotate_sources
from weightlint.config import PROFILES, CheckContext, Config, limits, selector_matches
from weightlint.adapter.update import part_of
from weightlint.execution.device import resolve_device
from weightlint.execution.errors import RuleError, UsageError, internal_problem
from weightlint.execution.targets import in_natural_order, inside_targets, scan_only_problems, sources_for
from weightlint.execution.policy import FindingPolicy
from weightlint.execution.report import ModelView, Report, record_key
from weightlint.execution.scheduling import Progress, TensorStream, available_cores
from weightlint.finding import Finding, Severity
from weightlint.plugins import build_plugin_manager, collect_rules
from weightlint.record import TensorRecord
from weightlint.rule import Rule
from weightlint.sources import Problem
from weightlint.sources.base import limit_problem
from weightlint.stats import TensorStats, UnreadableData, stats_for

if TYPE_CHECKING:
    from weightlint.config.file import RawConfig

# Cheap groups every judged tensor reports, whatever rules ran (one pass over the data each).
ALWAYS_COMPUTED = ("finite", "norms", "sparsity")
# The plans a run can make, and the statistics group each needs.
PLANS = {"quant": "quantization", "lowrank": "spectral"}


def _flatten(results: Iterable[Any]) -> list[Finding]:
    findings: list[Finding] = []
    for result in results:
        if result is None:
            continue
        if isinstance(result, Finding):
            findings.append(result)
        else:
            findings.extend(result)
    return findings


def _check_selectors(config: Config, rules: dict[str, Rule]) -> None:
    """A malformed code or an unknown rule name in a selection is the user's mistake, not an empty
    selection. A well-formed code or prefix (``WL990``) may name a plugin's rule that this run did
    not load (or blocked with ``-p no:``), and is accepted."""
    import difflib
    import re

    names = [*rules, *(rule.name for rule in rules.values())]
    for option, selectors in (("select", config.select), ("extend-select", config.extend_select),
                              ("ignore", config.ignore)):
        for selector in selectors:
            well_formed_code = re.fullmatch(r"WL\d{1,3}", selector.strip().upper())
            if not well_formed_code and not any(selector_matches(selector, rule) for rule in rules.values()):
                word = selector.strip().upper() if selector.strip().upper().startswith("WL") else selector.strip()
                close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else " (`weightlint rules` lists them)"
                raise UsageError(f"--{option} {selector}: no rule has this code or name{hint}")


class Session:
    """One run over some targets with one configuration."""

    def __init__(self, targets: Sequence[Any], config: Config | None = None,
                 progress: Progress | None = None,
                 config_file: "RawConfig | None" = None, plans: Sequence[str] = (),
                 extra_groups: Sequence[str] = ()) -> None:
        from weightlint.config import file as configfile

        self.config = config or Config()
        if self.config.profile not in PROFILES:
            raise UsageError(f"unknown profile {self.config.profile!r}: expected one of {', '.join(PROFILES)}")
        self.manager = build_plugin_manager(
            self.config.plugins, config_plugins=configfile.plugins_of(config_file),
            config_folder=os.path.dirname(os.path.abspath(config_file.path)) if config_file is not None else None)
        self.rules = collect_rules(self.manager)
        # What the command line (or the API) alone asked for: the only say over unsafe-pickle
        # findings when the configuration file lies inside a scanned folder.
        command_line = copy.deepcopy(self.config)
        untrusted_config = config_file is not None and inside_targets(config_file.path, targets)
        if config_file is not None:
            configfile.apply(config_file, self.config, self.rules)
        _check_selectors(self.config, self.rules)
        self.device = resolve_device(self.config.device)
        self.cores = available_cores()
        # Default: one job per two cores on the CPU, each with two BLAS threads, plus a reader
        # thread when that is one job. LAPACK's symmetric eigensolvers scale poorly past a few
        # threads, so independent tensors use a large machine better; but one BLAS thread per job
        # was measured slowest on two cores (shard 2 of the 1.1B checkpoint: 12.1 s with two jobs
        # of one thread, 10.4 s with one job of two). Two jobs on a GPU (one computing while the
        # next tensor is read and copied over).
        default_jobs = 2 if self.device.startswith("cuda") else max(1, self.cores // 2)
        self.jobs = max(1, self.config.jobs or default_jobs)
        self.context = CheckContext(self.config, self.rules, self.device)
        self.policy = FindingPolicy(self.config, command_line, self.rules, untrusted_config)
        if untrusted_config:
            self.context.pinned["WL002"] = command_line
        unknown = [plan for plan in plans if plan not in PLANS]
        if unknown:
            raise UsageError(f"unknown plan {unknown[0]!r}: expected {' or '.join(PLANS)}")
        self.plans = tuple(plans)
        self.groups = tuple(dict.fromkeys(ALWAYS_COMPUTED + tuple(
            group for rule in self.rules.values() if self.config.may_select(rule) for group in rule.statistics)
            + tuple(PLANS[plan] for plan in self.plans) + tuple(extra_groups)))
        # The model skeleton from config.json — module types, layouts and ties for every rule, and
        # WL003–WL005 — unless the architecture plugin is blocked (`-p no:architecture`), which also
        # spares the import of transformers.
        architecture = self.manager.get_plugin("architecture") is not None
        with limits.using(self.config.limits):
            self.paths, self.sources, self.notes = sources_for(targets, architecture)
        self.stream = TensorStream(self._check_tensor, self.jobs, self.cores, self.device, progress)
        if self.config.executor == "ray":
            self.stream = self._ray_stream(command_line, config_file, progress)

    def _ray_stream(self, command_line: Config, config_file: Any, progress: Progress | None) -> Any:
        """The per-tensor work on Ray: workers build this session from the same settings."""
        import uuid

        from weightlint.execution.ray_executor import RayExecutor

        worker_config = copy.deepcopy(command_line)
        worker_config.executor = "local"
        spec = {"run": uuid.uuid4().hex, "config": worker_config, "config_file": config_file,
                "groups": self.groups, "plans": self.plans}
        return RayExecutor(spec, self.config.ray_address, local=self.stream, progress=progress)

    def run(self) -> Report:
        with limits.using(self.config.limits):
            return self._run()

    def _read_sources(self) -> tuple[list[TensorRecord], list[Problem]]:
        """Every source's records and problems. A source that fails half-way keeps what it yielded,
        and its failure is one WL009 (a limit) or WL008 (anything else) finding: the next source is
        still read."""
        records: list[TensorRecord] = []
        problems: list[Problem] = []
        for source in self.sources:
            problems.extend(source.problems)
            where = source.files[0] if source.files else source.path
            try:
                for item in source.items():
                    if isinstance(item, TensorRecord):
                        item.metadata.setdefault("source", source.path)
                        factor = part_of(item.name) if source.adapter is not None else None
                        if factor is not None:  # a LoRA factor the adapter rules judge as a pair
                            item.metadata["adapter_part"] = factor[1]
                        records.append(item)
                    else:
                        problems.append(item)
            except limits.LimitExceeded as error:
                problems.append(limit_problem(where, error))
            except Exception as error:
                problems.append(internal_problem(where, error))
            problems.extend(scan_only_problems(source))
        return records, problems

    def _run(self) -> Report:
        started = time.perf_counter()
        records, problems = self._read_sources()
        records = in_natural_order(records)
        annotate_sources(self.sources, records)  # module types, layouts and ties from config.json, before any rule
        report = Report(paths=self.paths, sources=self.sources, records=records, findings=[],
                        tensors={}, rules=self.rules, config=self.config, device=self.device, seconds=0.0,
                        notes=[*self.notes, *(note for source in self.sources for note in source.notes)])
        stats_by_key: dict[str, dict[str, Any]] = {}
        try:
            for record, (findings, computed, problem) in self.stream(records):
                report.findings.extend(findings)
                if problem is not None:
                    problems.append(problem)
                stats_by_key[record_key(record)] = computed
                report.tensors[self._tensor_key(record, report.tensors)] = {**record.describe(), **computed}
        except KeyboardInterrupt:
            report.interrupted = True
        # Problems with files are known before any tensor is checked: report them even when interrupted.
        for problem in problems:
            report.findings.extend(self._call_builtin_safe("weightlint_file_problem", problem.file,
                                                           dict(problem=problem), problem.file))
        if not report.interrupted:  # model-level rules need every tensor
            view = ModelView(records=records, tensor_stats=stats_by_key, findings=list(report.findings),
                             sources=self.sources)
            report.findings.extend(self._call_builtin_safe("weightlint_check_model", "the model", dict(model=view),
                                                           self.paths[0] if self.paths else "the model"))
            report.findings.extend(self._check_adapters(records, report))
        report.findings = self.policy.apply(report.findings, report)
        report.findings.sort(key=lambda f: f.sort_key)
        if not report.interrupted:
            report.plans = self._plans(report)
        report.seconds = time.perf_counter() - started
        return report

    def _plans(self, report: Report) -> dict[str, Any]:
        from weightlint.plans.lowrank import lowrank_plan
        from weightlint.plans.quant import quant_plan

        build = {"quant": quant_plan, "lowrank": lowrank_plan}
        return {plan: build[plan](report) for plan in self.plans}

    def _check_adapters(self, records: list[TensorRecord], report: Report) -> list[Finding]:
        """Each PEFT adapter's pairs measured (its factors read again: adapters are small) and
        judged by the adapter rules, against the base model when ``base_model`` names one."""
        from weightlint.adapter.view import BaseModel, build

        adapters = [source for source in self.sources if source.adapter is not None]
        if not adapters:
            if self.config.base_model:
                report.notes.append(f"--base-model {self.config.base_model}: no PEFT adapter (adapter_config.json) "
                                    "among the checked paths, so nothing was compared with it")
            return []
        base = None
        if self.config.base_model:
            if not os.path.exists(self.config.base_model):
                raise UsageError(f"--base-model {self.config.base_model}: no such file or folder")
            with limits.using(self.config.limits):
                base = BaseModel(self.config.base_model)
        findings: list[Finding] = []
        for source in adapters:
            problems: list[Problem] = list(base.problems) if base is not None and source is adapters[0] else []
            own = [record for record in records if record.metadata.get("source") == source.path]
            where = source.files[0] if source.files else source.path
            try:
                view = build(source, own, source.adapter, problems, base)
            except Exception as error:
                problems.append(internal_problem(where, error))
            else:
                report.notes.extend(view.notes)
                report.adapters.append(view.describe())
                findings.extend(self._call_builtin_safe("weightlint_check_adapter", f"the adapter {source.path}",
                                                        dict(adapter=view), where))
            for problem in problems:
                findings.extend(self._call_builtin_safe("weightlint_file_problem", problem.file,
                                                        dict(problem=problem), problem.file))
        return findings

    def _check_tensor(self, record: TensorRecord, values: Any = None,
                      load_error: Exception | None = None) -> tuple[list[Finding], dict, Problem | None]:
        """Statistics and per-tensor rules for one record: (findings, computed statistics, problem)."""
        if not record.is_judged:
            return [], {}, None
        stats = stats_for(record, self.device, values=values)
        try:
            if load_error is not None:
                raise load_error
            stats.read()
        except MemoryError as error:
            return [], {}, internal_problem(record.file, error, tensor=record.name)
        except Exception as error:
            return [], {}, Problem("unreadable", record.file, f"tensor data unreadable: {error}", tensor=record.name)
        try:
            # Values near float32's limits overflow on the way (a sum, a Gram matrix); every such
            # path checks its result and recomputes in float64, so NumPy's warnings are noise.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for group in self.groups:
                    getattr(stats, group)
                findings = self._call("weightlint_check_tensor", f"tensor {record.name}",
                                      [dict(tensor=record, stats=stats)])
                computed = stats.computed()
                if "lowrank" in self.plans and "spectral" in computed and computed["spectral"].get("sv_max"):
                    computed["lowrank"] = self._low_rank(record, stats)
        except UnreadableData as error:  # a giant tensor's later pass: the file's problem, as a first read
            return [], {}, Problem("unreadable", record.file, f"tensor data unreadable: {error}", tensor=record.name)
        except RuleError as error:
            if isinstance(error.original, UnreadableData):
                return [], {}, Problem("unreadable", record.file, f"tensor data unreadable: {error.original}",
                                       tensor=record.name)
            if not error.builtin:
                raise
            return [], {}, internal_problem(record.file, error.original, tensor=record.name)
        except Exception as error:  # the statistics themselves
            return [], {}, internal_problem(record.file, error, tensor=record.name)
        finally:
            stats.release()
        return findings, computed, None

    def _low_rank(self, record: TensorRecord, stats: TensorStats) -> dict[str, Any]:
        """The smallest rank within WL401's ``max_relative_error`` for this matrix (the low-rank plan)."""
        from weightlint.spectral import suggested_rank

        rule = self.rules.get("WL401")
        # The rule's option as configured for this tensor (overrides applied), selected or not.
        options = self.config.for_tensor(record.name, record.file, self.rules).rule_options(rule) if rule else {}
        bound = options.get("max_relative_error")
        bound = 0.1 if bound is None else bound
        rank, error = suggested_rank(stats.singular_values, bound)
        return {"max_relative_error": bound, "suggested_rank": rank, "predicted_relative_error": error,
                "stable_rank_ratio": stats.spectral.get("stable_rank_ratio")}

    def _call_builtin_safe(self, hook_name: str, where: str, kwargs: dict, file: str) -> list[Finding]:
        """One hook call; a built-in rule's failure becomes a WL008 finding on ``file``."""
        try:
            return self._call(hook_name, where, [kwargs])
        except RuleError as error:
            if not error.builtin:
                raise
            problem = internal_problem(file, error.original)
            return self._call("weightlint_file_problem", "an internal error", [dict(problem=problem)])

    def _call(self, hook_name: str, where: str, calls: list[dict]) -> list[Finding]:
        hook = getattr(self.manager.hook, hook_name)
        findings: list[Finding] = []
        for kwargs in calls:
            kwargs = {**kwargs, "context": self.context}
            for impl in reversed(hook.get_hookimpls()):
                try:
                    # As pluggy does: an implementation receives only the arguments it names.
                    result = impl.function(*(kwargs[name] for name in impl.argnames))
                except KeyboardInterrupt:
                    raise
                except Exception as error:
                    raise RuleError(impl.plugin_name, where, error) from error
                findings.extend(_flatten([result]))
        return findings

    @staticmethod
    def _tensor_key(record: TensorRecord, existing: dict) -> str:
        return record.name if record.name not in existing else record_key(record)


def check(*targets: Any, config: Config | None = None, config_file: str | None = None, **settings: Any) -> Report:
    """Lint checkpoints from Python: paths, ``nn.Module`` objects or dicts of tensors.

    ``plans=("quant", "lowrank")`` adds the plans to ``report.plans`` (:mod:`weightlint.plans`).
    ``settings`` are :class:`Config` fields (``fail_on="warning"``, ``device="cpu"`` …), which
    override ``config_file`` (a ``weightlint.yaml`` or ``pyproject.toml``; the API does not search
    for one unless told: pass ``config_file="auto"`` to discover it as the command line does).
    """
    plans = settings.pop("plans", ())
    config, raw = _config_from(config, config_file, settings)
    return Session(list(targets), config, config_file=raw, plans=plans).run()


def _config_from(config: Config | None, config_file: str | None, settings: dict[str, Any]) -> tuple[Config, Any]:
    """The API's settings as a Config, and the configuration file it names (``"auto"``: discovered)."""
    from weightlint.config import file as configfile

    if config is None:
        if "fail_on" in settings:
            settings["fail_on"] = Severity.parse(settings["fail_on"])
        config = Config(**settings)
        config.explicit = set(settings)
    raw = None
    if config_file == "auto":
        raw = configfile.resolve(None, isolated=False)
    elif config_file is not None:
        raw = configfile.resolve(config_file, isolated=False)
    return config, raw


__all__ = ["Session", "Report", "ModelView", "check", "UsageError", "RuleError"]
