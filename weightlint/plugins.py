"""The plugin host: one PluginManager with the hookspecs, the built-in rules and entry points."""

from __future__ import annotations

import importlib
from typing import Any, Iterable

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


# Built-ins that cannot be blocked: without them a failure would look like a clean report.
UNBLOCKABLE = ("internal_error",)


def build_plugin_manager(plugins: Iterable[str] = (), load_entry_points: bool = True,
                         config_plugins: Iterable[str] = (), config_folder: str | None = None) -> pluggy.PluginManager:
    """Register the built-ins, then entry points, then ``-p`` modules, honouring ``no:`` blocks.

    ``config_plugins`` come from a configuration file, which may travel inside a downloaded model
    folder: they are imported only from installed packages, never from ``config_folder`` or the
    working directory (see ``import_installed``).
    """
    from weightlint.rules import BUILTIN

    config_plugins = list(config_plugins)
    requested = list(plugins) + config_plugins
    blocked = {p[3:].strip().lower() for p in requested if p.startswith("no:")}
    manager = pluggy.PluginManager("weightlint")
    manager.add_hookspecs(hookspecs)
    known: set[str] = set()
    for short_name in BUILTIN:
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{short_name}")
        known |= _aliases(short_name, module)
        if _aliases(short_name, module) & blocked and short_name in UNBLOCKABLE:
            raise PluginError(f"-p no:{sorted(_aliases(short_name, module) & blocked)[0]}: {short_name} cannot be "
                              "blocked (what weightlint failed to check must be reported)")
        if _aliases(short_name, module) & blocked:
            manager.set_blocked(short_name)
        else:
            manager.register(module, name=short_name)
    for name in blocked:
        manager.set_blocked(name)
    if load_entry_points:
        from importlib.metadata import entry_points

        known |= {entry.name.lower() for entry in entry_points(group=ENTRY_POINT_GROUP)}  # blocked ones too
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        # Entry points are loaded by pluggy under their entry-point name; `-p no:` may also name
        # their rule codes, rule names or module (in any case).
        for name, plugin in list(manager.list_name_plugin()):
            if plugin is not None and name not in BUILTIN:
                known |= _aliases(name, plugin)
            if plugin is not None and name not in BUILTIN and _aliases(name, plugin) & blocked:
                manager.unregister(plugin)
                manager.set_blocked(name)
    from_config = set(config_plugins)
    for spec in requested:
        if spec.startswith("no:"):
            continue
        try:
            module = import_installed(spec, config_folder) if spec in from_config else importlib.import_module(spec)
        except ImportError as error:
            raise PluginError(f"plugin {spec!r} could not be imported: {error}") from None
        known |= _aliases(spec, module)
        if _aliases(spec, module) & blocked or manager.is_registered(module):
            continue
        manager.register(module, name=spec)
    _check_blocked(blocked, known)
    return manager


def _check_blocked(blocked: set[str], known: set[str]) -> None:
    """``-p no:NAME`` naming no plugin, rule code or rule name is a typo, not a silent no-op. A
    well-formed code (``WL990``) may belong to a plugin that is not installed here, and is accepted."""
    import difflib
    import re

    for name in sorted(blocked - known):
        if re.fullmatch(r"wl\d{3}", name):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean no:{close[0]}?)" if close else " (`weightlint rules` lists rule codes and names)"
        raise PluginError(f"-p no:{name}: no plugin, rule code or rule name is called that{hint}")


def import_installed(spec: str, config_folder: str | None) -> Any:
    """Import a module named in a configuration file from installed packages only.

    A ``weightlint.yaml`` can travel inside a downloaded model folder; importing its ``plugins``
    from that folder (or from the working directory, where the user runs weightlint) would run
    the download's code. The module is imported with those folders off ``sys.path``: an installed
    package (editable installs included) still imports, a loose ``plugin.py`` beside the
    configuration does not.
    """
    import os
    import sys

    untrusted = [os.path.abspath(folder) for folder in (config_folder, os.getcwd()) if folder]

    def is_untrusted(path: str) -> bool:
        absolute = os.path.abspath(path or os.getcwd())
        return any(absolute == folder or absolute.startswith(folder + os.sep) for folder in untrusted)

    if spec in sys.modules:
        module = sys.modules[spec]
    else:
        saved = list(sys.path)
        sys.path[:] = [entry for entry in sys.path if not is_untrusted(entry)]
        try:
            module = importlib.import_module(spec)
        finally:
            sys.path[:] = saved
    return module


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
