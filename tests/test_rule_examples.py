"""Every rule's documented Example runs: the tensors it builds give exactly the findings it shows."""

from __future__ import annotations

import pytest

import weightlint
from weightlint.plugins import build_plugin_manager, collect_rules

RULES = collect_rules(build_plugin_manager([], load_entry_points=False))
# The rules recalibrated on real models carry an example; others gain one when they are next touched.
WITH_EXAMPLES = ("WL101", "WL102", "WL201", "WL203", "WL301", "WL401", "WL601",
                 "WL701", "WL702", "WL703", "WL704", "WL705", "WL706", "WL707",
                 "WL801", "WL802", "WL803", "WL804", "WL805", "WL806", "WL807", "WL808", "WL809")


def example_lines(rule) -> list[str]:
    """Run the example: ``tensors`` for a check rule; ``old`` and ``new`` (and optional
    ``settings``) for a rule of ``weightlint diff``."""
    namespace: dict = {}
    exec(compile(rule.example, f"<{rule.code} example>", "exec"), namespace)  # noqa: S102 - our own docs
    if rule.diff_only:
        from weightlint.diff.engine import diff

        report = diff(namespace["old"], namespace["new"], select=[rule.code], **namespace.get("settings", {}))
    elif "adapter" in namespace:
        report = check_adapter_example(namespace, rule.code)
    else:
        report = weightlint.check(namespace["tensors"], select=[rule.code])
    return [f"{f.code} {f.severity} {f.tensor}: {f.message}" for f in report.findings]


def check_adapter_example(namespace: dict, code: str):
    """``adapter`` (tensors) and ``adapter_config`` written as a PEFT folder, with ``files`` beside
    them; ``base`` (tensors), when given, as the base model."""
    import json
    import os
    import tempfile

    from safetensors.numpy import save_file

    with tempfile.TemporaryDirectory() as folder:
        adapter = os.path.join(folder, "adapter")
        os.mkdir(adapter)
        save_file(namespace["adapter"], os.path.join(adapter, "adapter_model.safetensors"))
        with open(os.path.join(adapter, "adapter_config.json"), "w") as handle:
            json.dump(namespace["adapter_config"], handle)
        for name, text in namespace.get("files", {}).items():
            with open(os.path.join(adapter, name), "w") as handle:
                handle.write(text)
        settings = {}
        if "base" in namespace:
            settings["base_model"] = os.path.join(folder, "base.safetensors")
            save_file(namespace["base"], settings["base_model"])
        return weightlint.check(adapter, select=[code], **settings)


@pytest.mark.parametrize("code", WITH_EXAMPLES)
def test_rule_has_an_example(code):
    assert RULES[code].example and RULES[code].example_output


@pytest.mark.parametrize("code", [code for code, rule in RULES.items() if rule.example])
def test_example_prints_what_the_documentation_says(code):
    rule = RULES[code]
    assert example_lines(rule) == rule.example_output.strip().splitlines()
    assert "## Example" in rule.documentation() and rule.example_output.strip() in rule.documentation()
