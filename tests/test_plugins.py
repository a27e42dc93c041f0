"""Plugins: ``-p no:NAME`` disables a built-in rule, ``-p module`` adds a third-party rule, and
plugins registered under the ``weightlint`` entry-point group load without any option."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import weightlint
from weightlint import cli
from weightlint.plugins import (
    ENTRY_POINT_GROUP,
    PluginError,
    build_plugin_manager,
    collect_rules,
)

TESTS = Path(__file__).resolve().parent
THIRD_PARTY = "plugins_for_tests.huge_values"
ENGINE_CODES = {"WL001", "WL002", "WL006", "WL100", "WL501"}
# Exact findings and exit codes are asserted for these rules only (other built-ins may also fire).
SELECT = ["--select", "WL0,WL100,WL501,WL990"]


def _env(*extra: Path) -> dict[str, str]:
    paths = [*map(str, extra), str(TESTS), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """NaN at nan.weight[1, 2] (WL100), row 3 of dead.weight zeroed (WL501), big.weight[0, 1] = 500 (WL990)."""
    generator = torch.Generator().manual_seed(0)
    nan = torch.randn(4, 5, generator=generator) * 0.02
    nan[1, 2] = float("nan")
    dead = torch.randn(6, 5, generator=generator) * 0.02
    dead[3] = 0.0
    big = torch.randn(3, 4, generator=generator) * 0.02
    big[0, 1] = 500.0
    path = tmp_path / "model.safetensors"
    save_file({"nan.weight": nan, "dead.weight": dead, "big.weight": big}, str(path))
    return path


def run_json(capsys, *args) -> tuple[int, dict]:
    code = cli.main([str(arg) for arg in args] + ["--format", "json", "--device", "cpu", *SELECT])
    out = capsys.readouterr().out
    return code, json.loads(out)


def found(document: dict) -> set[tuple[str, str]]:
    return {(finding["code"], finding["tensor"]) for finding in document["findings"]}


# -- -p no:NAME ---------------------------------------------------------------------------------
def test_builtins_by_default(capsys, checkpoint):
    code, document = run_json(capsys, checkpoint)
    assert code == 1
    assert found(document) == {("WL100", "nan.weight"), ("WL501", "dead.weight")}
    assert ENGINE_CODES <= set(document["rules"])


@pytest.mark.parametrize("blocked", ["WL501", "wl501", "dead-units", "dead_units", "weightlint.rules.dead_units"])
def test_no_disables_dead_units(capsys, checkpoint, blocked):
    code, document = run_json(capsys, checkpoint, "-p", f"no:{blocked}")
    assert code == 1
    assert found(document) == {("WL100", "nan.weight")}
    assert "WL501" not in document["rules"]
    assert ENGINE_CODES - {"WL501"} <= set(document["rules"])


@pytest.mark.parametrize("blocked", ["WL100", "non-finite", "non_finite"])
def test_no_disables_non_finite(capsys, checkpoint, blocked):
    code, document = run_json(capsys, checkpoint, "-p", f"no:{blocked}")
    assert code == 0  # the NaN is not judged any more; WL501 is info
    assert found(document) == {("WL501", "dead.weight")}
    assert "WL100" not in document["rules"]
    # Statistics do not depend on the rules: the NaN is still counted.
    assert document["tensors"]["nan.weight"]["finite"]["nan_count"] == 1


def test_no_with_an_unknown_name_is_a_usage_error_with_a_suggestion(capsys, checkpoint):
    assert cli.main([str(checkpoint), "-p", "no:not-a-plugin"]) == 4
    assert "-p no:not-a-plugin: no plugin, rule code or rule name" in capsys.readouterr().err
    assert cli.main([str(checkpoint), "-p", "no:dead-unit"]) == 4
    assert "did you mean no:dead-units?" in capsys.readouterr().err


def test_no_with_a_well_formed_code_of_an_absent_plugin_is_accepted(capsys, checkpoint):
    code, document = run_json(capsys, checkpoint, "-p", "no:WL990")
    assert code == 1
    assert ENGINE_CODES <= set(document["rules"])


def test_internal_error_rule_cannot_be_blocked(capsys, checkpoint):
    assert cli.main([str(checkpoint), "-p", "no:WL008"]) == 4
    assert "cannot be blocked" in capsys.readouterr().err


def test_build_plugin_manager_blocks_by_rule_code():
    manager = build_plugin_manager(["no:WL501"], load_entry_points=False)
    assert manager.is_blocked("dead_units")
    assert manager.get_plugin("dead_units") is None
    assert manager.get_plugin("non_finite") is not None
    rules = collect_rules(manager)
    assert "WL501" not in rules and ENGINE_CODES - {"WL501"} <= set(rules)


# -- -p module ----------------------------------------------------------------------------------
def test_third_party_rule_from_the_command_line(cli, checkpoint):
    """End to end: a module on PYTHONPATH, loaded with -p, declares a rule with the public API."""
    result = cli(str(checkpoint), "-p", THIRD_PARTY, "--format", "json", *SELECT, env=_env())
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert ENGINE_CODES | {"WL990"} <= set(document["rules"])
    assert found(document) == {("WL100", "nan.weight"), ("WL501", "dead.weight"), ("WL990", "big.weight")}
    huge = next(f for f in document["findings"] if f["code"] == "WL990")
    assert huge["rule"] == "huge-values" and huge["severity"] == "warning"
    assert huge["value"] == 500.0 and huge["threshold"] == 100.0
    assert document["summary"]["counts"] == {"error": 1, "warning": 1, "info": 1}


def test_third_party_rule_in_text_rules_and_explain(capsys, plugin_path, checkpoint):
    assert cli.main([str(checkpoint), "-p", THIRD_PARTY, *SELECT]) == 1
    out = capsys.readouterr().out
    assert "WL990 warning huge-values: max |w| = 500 exceeds 100" in out
    assert cli.main(["rules", "-p", THIRD_PARTY]) == 0
    assert "WL990  huge-values" in capsys.readouterr().out
    assert cli.main(["explain", "huge-values", "-p", THIRD_PARTY]) == 0
    assert capsys.readouterr().out.startswith("# WL990 huge-values")


def test_third_party_rule_can_be_selected_ignored_and_blocked(capsys, plugin_path, checkpoint):
    assert ("WL990", "big.weight") in found(run_json(capsys, checkpoint, "-p", THIRD_PARTY)[1])
    only = cli.main([str(checkpoint), "-p", THIRD_PARTY, "--select", "WL9", "--format", "json"])
    assert only == 0  # a warning
    assert found(json.loads(capsys.readouterr().out)) == {("WL990", "big.weight")}
    ignored = run_json(capsys, checkpoint, "-p", THIRD_PARTY, "--ignore", "huge-values")[1]
    assert "WL990" not in {code for code, _ in found(ignored)}
    blocked = run_json(capsys, checkpoint, "-p", THIRD_PARTY, "-p", "no:WL990")[1]
    assert "WL990" not in blocked["rules"]


def test_p_twice_registers_once(plugin_path):
    manager = build_plugin_manager([THIRD_PARTY, THIRD_PARTY], load_entry_points=False)
    assert "WL990" in collect_rules(manager)


def test_conflicting_rule_code_is_a_usage_error(capsys, plugin_path, checkpoint):
    code = cli.main([str(checkpoint), "-p", "plugins_for_tests.conflict"])
    err = capsys.readouterr().err
    assert code == 4
    assert "two plugins declare rule WL100" in err


def test_unknown_plugin_names_it(capsys, checkpoint):
    code = cli.main([str(checkpoint), "-p", "no_such_plugin_module_xyz"])
    err = capsys.readouterr().err
    assert code == 4
    assert "'no_such_plugin_module_xyz' could not be imported" in err
    with pytest.raises(PluginError):
        build_plugin_manager(["no_such_plugin_module_xyz"], load_entry_points=False)


# -- entry points -------------------------------------------------------------------------------
def _fake_distribution(site: Path, entry_point_name: str = "huge-values-ep") -> Path:
    """A minimal installed distribution (a .dist-info folder) with a ``weightlint`` entry point."""
    info = site / "weightlint_test_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: weightlint-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_point_name} = {THIRD_PARTY}\n")
    return site


def test_build_plugin_manager_loads_entry_points(monkeypatch, tmp_path, plugin_path):
    calls = []
    original = weightlint.plugins.pluggy.PluginManager.load_setuptools_entrypoints

    def spy(self, group, name=None):
        calls.append(group)
        return original(self, group, name)

    monkeypatch.setattr(weightlint.plugins.pluggy.PluginManager, "load_setuptools_entrypoints", spy)
    monkeypatch.syspath_prepend(str(_fake_distribution(tmp_path / "site")))

    manager = build_plugin_manager()
    assert calls == ["weightlint"]
    assert manager.get_plugin("huge-values-ep") is not None
    assert "WL990" in collect_rules(manager)

    calls.clear()
    manager = build_plugin_manager(load_entry_points=False)
    assert calls == []
    assert manager.get_plugin("huge-values-ep") is None

    # -p no:<entry-point name> blocks an installed plugin, as in pytest.
    manager = build_plugin_manager(["no:huge-values-ep"])
    assert manager.get_plugin("huge-values-ep") is None
    assert "WL990" not in collect_rules(manager)


def test_no_rule_code_blocks_an_entry_point_plugin(monkeypatch, tmp_path, plugin_path):
    monkeypatch.syspath_prepend(str(_fake_distribution(tmp_path / "site")))
    assert "WL990" not in collect_rules(build_plugin_manager(["no:WL990"]))


def test_entry_point_plugin_from_the_command_line(cli, checkpoint, tmp_path):
    site = _fake_distribution(tmp_path / "site")
    result = cli(str(checkpoint), "--format", "json", *SELECT, env=_env(site))
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert "WL990" in document["rules"]
    assert ("WL990", "big.weight") in found(document)
