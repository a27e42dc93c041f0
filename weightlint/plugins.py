"""The plugin host: one PluginManager with the hookspecs, the built-in rules and entry points."""

from __future__ import annotations

import importlib
from typing import Iterable

import pluggy

from weightlint import hookspecs
from weightlint.rule import Rule

ENTRY_POINT_GROUP = "weightlint"
BUILTIN_PACKAGE = "weightlint.rules"


class PluginError(Exception):
    """A plugin named with ``-p`` that cannot be imported, or a conflicting rule declaration."""


def _aliases(name: str, module) -> set[str]:
    """Every name ``-p no:`` accepts for a plugin: its name, module path, rule codes and names."""
    aliases = {name, getattr(module, "__name__", name)}
    for rule in _declared_rules(module):
        aliases.update({rule.code, rule.name})
    return {alias.lower() for alias in aliases}


def _declared_rules(module) -> list[Rule]:
    declare = getattr(module, "weightlint_rules", None)
    return list(declare() or []) if callable(declare) else []


def build_plugin_manager(plugins: Iterable[str] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    """Register the built-ins, then entry points, then ``-p`` modules, honouring ``no:`` blocks."""
    from weightlint.rules import BUILTIN

    requested = list(plugins)
    blocked = {p[3:].strip().lower() for p in requested if p.startswith("no:")}
    manager = pluggy.PluginManager("weightlint")
    manager.add_hookspecs(hookspecs)
    for short_name in BUILTIN:
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{short_name}")
        if _aliases(short_name, module) & blocked:
            manager.set_blocked(short_name)
        else:
            manager.register(module, name=short_name)
    for name in blocked:
        manager.set_blocked(name)
    if load_entry_points:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        # Entry points are loaded by pluggy under their entry-point name; `-p no:` may also name
        # their rule codes, rule names or module (in any case).
        for name, plugin in list(manager.list_name_plugin()):
            if plugin is not None and name not in BUILTIN and _aliases(name, plugin) & blocked:
                manager.unregister(plugin)
                manager.set_blocked(name)
    for spec in requested:
        if spec.startswith("no:"):
            continue
        try:
            module = importlib.import_module(spec)
        except ImportError as error:
            raise PluginError(f"plugin {spec!r} could not be imported: {error}") from None
        if _aliases(spec, module) & blocked or manager.is_registered(module):
            continue
        manager.register(module, name=spec)
    return manager


def collect_rules(manager: pluggy.PluginManager) -> dict[str, Rule]:
    """Rules declared by the registered plugins, by code, in code order."""
    rules: dict[str, Rule] = {}
    for declared in manager.hook.weightlint_rules():
        for rule in declared or []:
            existing = rules.get(rule.code)
            if existing is not None and existing is not rule:
                raise PluginError(f"two plugins declare rule {rule.code} ({existing.name} and {rule.name})")
            rules[rule.code] = rule
    return dict(sorted(rules.items()))
