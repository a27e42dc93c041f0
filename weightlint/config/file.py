"""The configuration file: discovery, loading with line numbers, validation, application.

Discovery (first found wins): ``--config FILE``; the nearest ``weightlint.yaml`` or
``.weightlint.yaml`` from the working directory upwards; the nearest ``pyproject.toml`` with a
``[tool.weightlint]`` table. ``--isolated`` ignores every file. Every key is documented in
``weightlint.yaml.example``. A bad file is a usage error (exit 4) whose one-line message names
the file, the line and the key path, with a did-you-mean for typos.
"""

from __future__ import annotations

import datetime
import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from weightlint.config import (
    PROFILES,
    Config,
    Override,
    Pattern,
    Suppression,
    limits,
    selector_matches,
)
from weightlint.finding import Severity
from weightlint.rule import Rule

FILE_NAMES = ("weightlint.yaml", ".weightlint.yaml")
SEVERITIES = ("info", "warning", "error")
TOP_KEYS = ("profile", "fail-on", "device", "jobs", "select", "extend-select", "ignore", "rules", "overrides", "suppress",
            "plugins", "baseline", "exit-zero", "limits", "plan")
OVERRIDE_KEYS = ("tensors", "files", "select", "extend-select", "ignore", "rules")
SUPPRESS_KEYS = ("rule", "tensor", "file", "reason", "expires")


class ConfigError(Exception):
    """An invalid configuration file: exit code 4, one line with file, line and key path."""


@dataclass
class RawConfig:
    """A parsed file: its data, and the line of every key path (tuple of keys and indices)."""

    path: str
    data: dict[str, Any]
    lines: dict[tuple, int] = field(default_factory=dict)

    def line(self, key_path: tuple) -> int:
        while key_path and key_path not in self.lines:
            key_path = key_path[:-1]
        return self.lines.get(key_path, 1)

    def error(self, key_path: tuple, message: str) -> ConfigError:
        dotted = ".".join(str(k) if not isinstance(k, int) else f"[{k}]" for k in key_path).replace(".[", "[")
        return ConfigError(f"{self.path}:{self.line(key_path)}: {dotted or '<top>'}: {message}")


# -- discovery ----------------------------------------------------------------------------------

def discover(start: str | None = None) -> str | None:
    """The configuration file that applies to ``start`` (default: the working directory)."""
    folder = os.path.abspath(start or os.getcwd())
    pyproject = None
    while True:
        for name in FILE_NAMES:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return candidate
        candidate = os.path.join(folder, "pyproject.toml")
        if pyproject is None and os.path.isfile(candidate) and _has_tool_table(candidate):
            pyproject = candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return pyproject
        folder = parent


def _has_tool_table(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return bool(re.search(r"^\[tool\.weightlint[\].]", handle.read(), re.MULTILINE))
    except OSError:
        return False


def resolve(explicit: str | None, isolated: bool, start: str | None = None) -> RawConfig | None:
    if isolated:
        return None
    if explicit is not None:
        if not os.path.isfile(explicit):
            raise ConfigError(f"{explicit}: configuration file not found")
        return load(explicit)
    found = discover(start)
    return load(found) if found else None


# -- loading ------------------------------------------------------------------------------------

def load(path: str) -> RawConfig:
    if path.endswith(".toml"):
        return _load_toml(path)
    return _load_yaml(path)


def _load_yaml(path: str) -> RawConfig:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            node = yaml.compose(handle)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{path}:{line}: invalid YAML: {getattr(error, 'problem', None) or error}") from None
    raw = RawConfig(path=path, data={})
    if node is None:
        return raw
    data = _from_node(node, (), raw.lines)
    if not isinstance(data, dict):
        raise raw.error((), "the file must be a mapping of keys (fail-on, select, rules …)")
    raw.data = data
    return raw


def _from_node(node, path: tuple, lines: dict) -> Any:
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _from_node(value_node, path + (key,), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_from_node(item, path + (index,), lines) for index, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _load_toml(path: str) -> RawConfig:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as handle:
            text = handle.read()
        document = tomllib.loads(text.decode("utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    data = document.get("tool", {}).get("weightlint", {})
    raw = RawConfig(path=path, data=data)
    # TOML parsers give no positions: find each top-level key's line inside the table.
    lines = text.decode("utf-8").splitlines()
    inside = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped.startswith("[tool.weightlint")
            if inside:
                raw.lines.setdefault((), number)
                sub = re.match(r"\[tool\.weightlint\.([\w.-]+)\]", stripped)
                if sub:
                    raw.lines.setdefault(tuple(sub.group(1).split(".")), number)
            continue
        key = re.match(r"([\w\"'.-]+)\s*=", stripped)
        if inside and key:
            raw.lines.setdefault((key.group(1).strip("\"'"),), number)
    return raw


# -- validation and application -----------------------------------------------------------------

def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(raw: RawConfig, mapping: dict, allowed, path: tuple) -> None:
    for key in mapping:
        if key not in allowed:
            raise raw.error(path + (key,), f"unknown key{_did_you_mean(key, allowed)}; "
                                           f"known keys: {', '.join(allowed)}")


def _string_list(raw: RawConfig, value: Any, path: tuple) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise raw.error(path, f"expected a list of strings, got {type(value).__name__}")


def _rule_by_selector(text: str, rules: dict[str, Rule]) -> Rule | None:
    upper = text.strip().upper()
    return rules.get(upper) or next((r for r in rules.values() if r.name == text.strip().lower()), None)


def _selectors(raw: RawConfig, value: Any, path: tuple, rules: dict[str, Rule]) -> list[str]:
    selectors = _string_list(raw, value, path)
    known = list(rules) + [r.name for r in rules.values()]
    for index, selector in enumerate(selectors):
        if selector.upper() == "ALL" or any(selector_matches(selector, rule) for rule in rules.values()):
            continue
        raise raw.error(path + (index,) if isinstance(value, list) else path,
                        f"unknown rule code or name {selector!r}{_did_you_mean(selector.upper() if selector.upper().startswith('WL') else selector, known)}")
    return selectors


def _severity(raw: RawConfig, value: Any, path: tuple) -> Severity:
    if not isinstance(value, str) or value.lower() not in SEVERITIES:
        raise raw.error(path, f"expected one of {', '.join(SEVERITIES)}, got {value!r}{_did_you_mean(value, SEVERITIES)}")
    return Severity.parse(value)


def _rules_table(raw: RawConfig, value: Any, path: tuple, rules: dict[str, Rule]) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise raw.error(path, "expected a mapping of rule code → settings")
    table: dict[str, dict[str, Any]] = {}
    for key, settings in value.items():
        rule = _rule_by_selector(str(key), rules)
        if rule is None:
            known = list(rules) + [r.name for r in rules.values()]
            raise raw.error(path + (key,), f"unknown rule{_did_you_mean(str(key).upper() if str(key).upper().startswith('WL') else key, known)}")
        if not isinstance(settings, dict):
            raise raw.error(path + (key,), "expected a mapping of threshold or severity settings")
        allowed = ("severity", *rule.thresholds)
        _check_keys(raw, settings, allowed, path + (key,))
        checked: dict[str, Any] = {}
        for name, setting in settings.items():
            where = path + (key, name)
            if name == "severity":
                checked[name] = str(_severity(raw, setting, where))
                continue
            # Off by default (None) in one profile, a number in another: a number either way.
            values = [rule.thresholds[name]] + [p[name] for p in rule.profiles.values() if name in p]
            numeric = any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if numeric and isinstance(setting, str):  # YAML 1.1 reads 2e5 (no dot) as a string
                try:
                    setting = float(setting)
                except ValueError:
                    pass
            if setting is not None and numeric and (isinstance(setting, bool) or not isinstance(setting, (int, float))):
                raise raw.error(where, f"expected a number (or null to turn it off), got {setting!r}")
            if isinstance(rule.thresholds[name], list):  # glob lists (WL705 frozen, WL706 trainable)
                setting = _string_list(raw, setting, where)
            checked[name] = setting
        table[rule.code] = {**table.get(rule.code, {}), **checked}
    return table


def _pattern(raw: RawConfig, value: Any, path: tuple) -> Pattern:
    if not isinstance(value, str) or not value:
        raise raw.error(path, f"expected a glob or 're:regex' string, got {value!r}")
    try:
        return Pattern(value)
    except re.error as error:
        raise raw.error(path, f"bad regex: {error}") from None


def _overrides(raw: RawConfig, value: Any, path: tuple, rules: dict[str, Rule]) -> list[Override]:
    if not isinstance(value, list):
        raise raw.error(path, "expected a list of {tensors, files, select, ignore, rules}")
    overrides = []
    for index, entry in enumerate(value):
        where = path + (index,)
        if not isinstance(entry, dict):
            raise raw.error(where, "expected a mapping")
        _check_keys(raw, entry, OVERRIDE_KEYS, where)
        if "tensors" not in entry and "files" not in entry:
            raise raw.error(where, "an override needs 'tensors' or 'files'")
        overrides.append(Override(
            tensors=_pattern(raw, entry["tensors"], where + ("tensors",)) if "tensors" in entry else None,
            files=_pattern(raw, entry["files"], where + ("files",)) if "files" in entry else None,
            select=_selectors(raw, entry["select"], where + ("select",), rules) if "select" in entry else None,
            extend_select=_selectors(raw, entry.get("extend-select", []), where + ("extend-select",), rules),
            ignore=_selectors(raw, entry.get("ignore", []), where + ("ignore",), rules),
            rules=_rules_table(raw, entry.get("rules", {}), where + ("rules",), rules),
            where=f"{raw.path}:{raw.line(where)}",
        ))
    return overrides


def _date(raw: RawConfig, value: Any, path: tuple) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise raw.error(path, f"expected a date YYYY-MM-DD, got {value!r}") from None


def _suppressions(raw: RawConfig, value: Any, path: tuple, rules: dict[str, Rule]) -> list[Suppression]:
    if not isinstance(value, list):
        raise raw.error(path, "expected a list of {rule, tensor, file, reason, expires}")
    suppressions = []
    for index, entry in enumerate(value):
        where = path + (index,)
        if not isinstance(entry, dict):
            raise raw.error(where, "expected a mapping")
        _check_keys(raw, entry, SUPPRESS_KEYS, where)
        for required in ("rule", "tensor", "reason"):
            if required not in entry:
                raise raw.error(where, f"a suppression needs '{required}'"
                                + (": say why the finding is accepted" if required == "reason" else ""))
        if not isinstance(entry["reason"], str) or not entry["reason"].strip():
            raise raw.error(where + ("reason",), "the reason must be a non-empty string")
        rule = _rule_by_selector(str(entry["rule"]), rules)
        if rule is None:
            known = list(rules) + [r.name for r in rules.values()]
            raise raw.error(where + ("rule",), f"unknown rule {entry['rule']!r}{_did_you_mean(str(entry['rule']).upper(), known)}")
        suppressions.append(Suppression(
            rule=rule.code,
            tensor=_pattern(raw, entry["tensor"], where + ("tensor",)),
            file=_pattern(raw, entry["file"], where + ("file",)) if "file" in entry else None,
            reason=entry["reason"].strip(),
            expires=_date(raw, entry["expires"], where + ("expires",)) if "expires" in entry else None,
            where=f"{raw.path}:{raw.line(where)}",
        ))
    return suppressions


def plugins_of(raw: RawConfig | None) -> list[str]:
    """The file's ``plugins`` (needed before the rules are known)."""
    if raw is None or "plugins" not in raw.data:
        return []
    return _string_list(raw, raw.data["plugins"], ("plugins",))


def apply(raw: RawConfig, config: Config, rules: dict[str, Rule]) -> Config:
    """Validate the file against the known rules and fill ``config`` (command-line values win)."""
    data = raw.data
    _check_keys(raw, data, TOP_KEYS, ())
    config.source = raw.path

    def unset(name: str) -> bool:
        return name not in config.explicit

    if "profile" in data and unset("profile"):
        if data["profile"] not in PROFILES:
            raise raw.error(("profile",), f"unknown profile {data['profile']!r}: expected one of "
                            f"{', '.join(PROFILES)}{_did_you_mean(data['profile'], PROFILES)}")
        config.profile = data["profile"]
    if "fail-on" in data and unset("fail_on"):
        config.fail_on = _severity(raw, data["fail-on"], ("fail-on",))
    if "device" in data and unset("device"):
        device = data["device"]
        if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise raw.error(("device",), f"expected auto, cpu or cuda, got {device!r}")
        config.device = device
    if "jobs" in data and unset("jobs"):
        jobs = data["jobs"]
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise raw.error(("jobs",), f"expected a positive number of parallel jobs, got {jobs!r}")
        config.jobs = jobs
    if "exit-zero" in data and unset("exit_zero"):
        if not isinstance(data["exit-zero"], bool):
            raise raw.error(("exit-zero",), f"expected true or false, got {data['exit-zero']!r}")
        config.exit_zero = data["exit-zero"]
    for key, attribute in (("select", "select"), ("extend-select", "extend_select"), ("ignore", "ignore")):
        if key in data:
            values = _selectors(raw, data[key], (key,), rules)
            if unset(attribute):
                setattr(config, attribute, values)
            elif attribute != "select":  # command-line ignore/extend-select add to the file's
                setattr(config, attribute, values + getattr(config, attribute))
    if "rules" in data:
        table = _rules_table(raw, data["rules"], ("rules",), rules)
        config.rules = {code: {**table.get(code, {}), **config.rules.get(code, {})} for code in {*table, *config.rules}}
    if "overrides" in data:
        config.overrides = _overrides(raw, data["overrides"], ("overrides",), rules) + config.overrides
    if "suppress" in data:
        config.suppress = _suppressions(raw, data["suppress"], ("suppress",), rules) + config.suppress
    if "baseline" in data and unset("baseline"):
        if not isinstance(data["baseline"], str):
            raise raw.error(("baseline",), "expected a file path")
        config.baseline = os.path.join(os.path.dirname(os.path.abspath(raw.path)), data["baseline"])
    if "plugins" in data:
        plugins_of(raw)  # validated; loaded before the rules were collected
    if "limits" in data:
        config.limits = _limits(raw, data["limits"], ("limits",))
    if "plan" in data:
        config.plan_quant = _plan(raw, data["plan"], ("plan",))
    return config


def _plan(raw: RawConfig, table: Any, where: tuple) -> dict[str, Any]:
    """``plan: {quant: {int8_min_sqnr_db: 35}}``: the quantization plan's thresholds (numbers, or
    null to turn one off). The low-rank plan's bound is WL401's ``max_relative_error``."""
    from weightlint.config.plans import QUANT_NAMES

    if not isinstance(table, dict):
        raise raw.error(where, "expected a mapping with a 'quant' table")
    _check_keys(raw, table, ("quant",), where)
    quant = table.get("quant") or {}
    if not isinstance(quant, dict):
        raise raw.error((*where, "quant"), f"expected a mapping of thresholds ({', '.join(QUANT_NAMES)})")
    _check_keys(raw, quant, QUANT_NAMES, (*where, "quant"))
    for name, value in quant.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise raw.error((*where, "quant", name), f"expected a number or null, got {value!r}")
    return {name: None if value is None else float(value) for name, value in quant.items()}


def _limits(raw: RawConfig, table: Any, where: tuple) -> "limits.Limits":
    """``limits: {tensors_per_file: 500000}``: documented names only, positive integers."""
    if not isinstance(table, dict):
        raise raw.error(where, f"expected a mapping of limit names ({', '.join(limits.NAMES)}) to numbers")
    _check_keys(raw, table, limits.NAMES, where)
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise raw.error((*where, name), f"expected a positive integer, got {value!r}")
    return limits.from_mapping(table)
