"""The command line: exit codes, forms, text and JSON output, demo, rules, explain.

Most tests call ``weightlint.cli.main([...])`` in process (it returns the exit code); a few run
``python -m weightlint`` in a subprocess where only the real process can show the behaviour
(Ctrl-C, ``--help`` start-up, pipes that are not terminals, the demo end to end).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import weightlint
from weightlint import __version__, cli
from weightlint.reporters.text import human_count

TESTS = Path(__file__).resolve().parent
PLUGIN_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CLOSING = re.compile(r"^=+ (?P<text>.+) in (?P<seconds>\d+\.\d)s =+$")
# The engine's own rules (file integrity, WL100, WL501). Tests that assert exact findings or exit
# codes select them, so that other built-in rules (spectral, quantization …) cannot interfere.
ENGINE = ["--select", "WL0,WL100,WL501"]
ENGINE_CODES = {"WL001", "WL002", "WL006", "WL100", "WL501"}


# -- fixtures ---------------------------------------------------------------------------------
def _save(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(path))
    return path


def _normal(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.02


@pytest.fixture
def clean(tmp_path) -> Path:
    """A healthy checkpoint: 16×8 + 16 + 4×16 + 2 = 210 parameters, no findings."""
    return _save(tmp_path / "clean" / "model.safetensors", {
        "layer.0.weight": _normal(16, 8, seed=1),
        "layer.0.bias": torch.full((16,), 0.01),
        "layer.1.weight": _normal(4, 16, seed=2),
        "step": torch.tensor([7, 7], dtype=torch.int64),
    })


@pytest.fixture
def defects(tmp_path) -> Path:
    """One NaN at a.weight[3, 5] (WL100 error) and output row 2 of b.weight zeroed (WL501 info)."""
    a = _normal(6, 10, seed=3)
    a[3, 5] = float("nan")
    b = _normal(5, 7, seed=4)
    b[2] = 0.0
    return _save(tmp_path / "defects" / "model.safetensors",
                 {"a.weight": a, "b.weight": b, "c.weight": _normal(3, 3, seed=5)})


@pytest.fixture
def dead_only(tmp_path) -> Path:
    """Only an info finding: output row 1 of w.weight is zero."""
    w = _normal(4, 6, seed=6)
    w[1] = 0.0
    return _save(tmp_path / "dead" / "model.safetensors", {"w.weight": w})


@pytest.fixture
def huge(tmp_path) -> Path:
    """Only a warning, from the third-party test rule WL990 (max |w| 1000 > 100)."""
    w = _normal(4, 6, seed=7)
    w[0, 0] = 1000.0
    return _save(tmp_path / "huge" / "model.safetensors", {"w.weight": w})


@pytest.fixture
def plugin_path(monkeypatch):
    """Make ``plugins_for_tests`` importable in this process."""
    monkeypatch.syspath_prepend(str(TESTS))


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *args) -> tuple[int, dict]:
    code, out, _ = run(capsys, *args, "--format", "json", "--device", "cpu")
    return code, strict_loads(out)


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity tokens, as strict JSON parsers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def codes(document: dict) -> list[tuple[str, str | None]]:
    return [(finding["code"], finding["tensor"]) for finding in document["findings"]]


# -- exit codes -------------------------------------------------------------------------------
def test_exit_0_on_a_clean_checkpoint(capsys, clean):
    code, out, _ = run(capsys, clean)  # every built-in rule
    assert code == 0
    assert CLOSING.match(out.splitlines()[-1])
    code, out, _ = run(capsys, clean, *ENGINE)
    assert code == 0
    assert CLOSING.match(out.splitlines()[-1]).group("text") == "no findings"


def test_exit_1_on_a_nan(capsys, defects):
    code, out, _ = run(capsys, defects)
    assert code == 1
    assert "WL100" in out


@pytest.mark.parametrize(("fixture", "fail_on", "expected"), [
    ("dead_only", None, 0),         # WL501 is info: below the default --fail-on error
    ("dead_only", "error", 0),
    ("dead_only", "warning", 0),
    ("dead_only", "info", 1),
    ("huge", None, 0),              # a warning
    ("huge", "warning", 1),
    ("huge", "info", 1),
    ("defects", "warning", 1),      # an error is above every threshold
])
def test_fail_on(capsys, request, plugin_path, fixture, fail_on, expected):
    path = request.getfixturevalue(fixture)
    args = [path, "-p", "plugins_for_tests.huge_values", "--select", "WL100,WL501,WL990"]
    args += ["--fail-on", fail_on] if fail_on else []
    code, document = run_json(capsys, *args)
    assert code == expected
    assert document["summary"]["exit_code"] == expected
    assert document["summary"]["fail_on"] == (fail_on or "error")


def test_exit_2_when_interrupted_and_the_report_is_still_printed(cli, tmp_path):
    a = _normal(4, 4, seed=8)
    a[0, 1] = float("inf")
    path = _save(tmp_path / "model.safetensors", {"a.weight": a, "z.interrupt.weight": _normal(4, 4, seed=9)})
    result = cli(str(path), "-p", "plugins_for_tests.interrupt", *ENGINE, env=PLUGIN_ENV)
    assert result.returncode == 2, result.stderr
    assert "interrupted" in result.stderr
    assert "Traceback" not in result.stderr
    # The tensors checked before Ctrl-C are reported, with the usual closing line.
    assert "a.weight" in result.stdout and "WL100" in result.stdout
    closing = CLOSING.match(result.stdout.splitlines()[-1])
    assert closing and closing.group("text") == "interrupted: 1 error"


def test_interrupted_json_report(capsys, plugin_path, tmp_path):
    path = _save(tmp_path / "model.safetensors", {"a.weight": _normal(4, 4), "z.interrupt.weight": _normal(4, 4)})
    code, document = run_json(capsys, path, "-p", "plugins_for_tests.interrupt")
    assert code == 2
    assert document["summary"]["interrupted"] is True
    assert document["summary"]["exit_code"] == 2
    assert "finite" in document["tensors"]["a.weight"]


def test_exit_3_internal_error_is_one_line_without_traceback(cli, clean):
    result = cli(str(clean), "-p", "plugins_for_tests.boom", env=PLUGIN_ENV)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "INTERNAL ERROR" in lines[0]
    assert "plugins_for_tests.boom" in lines[0] and "ValueError" in lines[0]
    assert "boom from the test plugin second line of the message" in lines[0]  # a multi-line message, joined
    assert "--traceback" in lines[0]
    assert "Traceback" not in result.stderr


def test_exit_3_with_traceback(capsys, plugin_path, clean):
    code, _, err = run(capsys, clean, "-p", "plugins_for_tests.boom", "--traceback")
    assert code == 3
    assert "Traceback (most recent call last)" in err
    assert "boom from the test plugin" in err


@pytest.mark.parametrize("args", [
    ["--no-such-option"],
    ["--format", "yaml"],
    ["--fail-on", "fatal"],
    ["-p", "no_such_plugin_module_xyz"],
    ["-p", "plugins_for_tests.no_such_module"],
    ["--device", "tpu"],
], ids=["unknown-option", "bad-format", "bad-fail-on", "unknown-plugin", "unknown-plugin-in-package", "bad-device"])
def test_exit_4_usage_errors(capsys, plugin_path, clean, args):
    code, out, err = run(capsys, clean, *args)
    assert code == 4
    assert "error" in err
    assert "Traceback" not in err
    assert out == ""


def test_exit_4_path_does_not_exist(capsys, tmp_path):
    missing = tmp_path / "nope" / "model.safetensors"
    code, _, err = run(capsys, missing)
    assert code == 4
    assert str(missing) in err and "no such file" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_exit_4_cuda_requested_without_cuda(capsys, clean):
    code, _, err = run(capsys, clean, "--device", "cuda")
    assert code == 4
    assert "CUDA is not available" in err


def test_exit_4_from_the_real_command_line(cli, clean):
    result = cli(str(clean), "--no-such-option")
    assert result.returncode == 4
    assert "unrecognized arguments: --no-such-option" in result.stderr
    assert result.stdout == ""


def test_exit_5_nothing_to_check(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = run(capsys, empty)
    assert code == 5
    assert "0 tensors" in out
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("no weights here\n")
    (other / "config.json").write_text("{}\n")
    code, document = run_json(capsys, other)
    assert code == 5
    assert document["model"]["tensor_count"] == 0 and document["tensors"] == {}
    assert document["summary"]["exit_code"] == 5


def test_exit_zero_forces_0_for_findings_and_nothing_to_check(capsys, defects, tmp_path):
    assert run(capsys, defects, "--exit-zero")[0] == 0
    code, document = run_json(capsys, defects, "--exit-zero", *ENGINE)
    assert code == 0 and document["summary"]["exit_code"] == 0
    assert document["summary"]["counts"]["error"] == 1  # the findings are still reported
    (tmp_path / "empty").mkdir()
    assert run(capsys, tmp_path / "empty", "--exit-zero")[0] == 0


def test_exit_zero_keeps_3_and_4(capsys, plugin_path, clean, tmp_path):
    assert run(capsys, clean, "--exit-zero", "-p", "plugins_for_tests.boom")[0] == 3
    assert run(capsys, tmp_path / "missing", "--exit-zero")[0] == 4
    assert run(capsys, clean, "--exit-zero", "--no-such-option")[0] == 4
    assert run(capsys, clean, "--exit-zero", "-p", "no_such_plugin_module_xyz")[0] == 4


# -- command forms ----------------------------------------------------------------------------
def _without_timing(document: dict) -> dict:
    document = json.loads(json.dumps(document))
    document["summary"].pop("seconds")
    return document


def test_short_form_equals_check(capsys, defects):
    short = run_json(capsys, defects)
    long = run_json(capsys, "check", defects)
    assert short[0] == long[0] == 1
    assert _without_timing(short[1]) == _without_timing(long[1])


def test_several_paths_in_one_call(capsys, clean, defects):
    code, document = run_json(capsys, clean, defects)
    assert code == 1
    assert document["model"]["paths"] == [str(clean), str(defects)]
    assert document["model"]["tensor_count"] == 4 + 3
    assert {"layer.0.weight", "a.weight", "b.weight"} <= set(document["tensors"])


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys, flag):
    code, out, _ = run(capsys, flag)
    assert code == 0
    assert out.strip() == f"weightlint {__version__}"


def test_help_does_not_import_torch(tmp_path):
    script = (
        "import sys, weightlint, weightlint.cli\n"
        "assert 'torch' not in sys.modules, 'import weightlint.cli imported torch'\n"
        "code = weightlint.cli.main(['--help'])\n"
        "print('EXIT', code, 'TORCH', 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: weightlint" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "EXIT 0 TORCH False"


# -- --select / --ignore ----------------------------------------------------------------------
@pytest.mark.parametrize(("options", "expected"), [
    ([], {"WL100", "WL501"}),
    (["--select", "WL100"], {"WL100"}),
    (["--select", "WL1"], {"WL100"}),
    (["--select", "WL5"], {"WL501"}),
    (["--select", "dead-units"], {"WL501"}),
    (["--select", "WL100,WL501"], {"WL100", "WL501"}),
    (["--select", "WL0"], set()),
    (["--select", "WL1", "--extend-select", "WL501"], {"WL100", "WL501"}),
    (["--ignore", "WL100"], {"WL501"}),
    (["--ignore", "WL1"], {"WL501"}),
    (["--ignore", "non-finite"], {"WL501"}),
    (["--ignore", "WL100,WL501"], set()),
    (["--select", "WL5", "--ignore", "WL501"], set()),  # the more specific selector wins
    (["--select", "WL501", "--ignore", "WL5"], {"WL501"}),
    (["--ignore", "WL"], set()),
    (["--select", "WL501", "--ignore", "dead-units"], set()),  # a name is as specific as a code: ignore wins
])
def test_select_and_ignore(capsys, defects, options, expected):
    document = run_json(capsys, defects, *options)[1]
    reported = {finding["code"] for finding in document["findings"]}
    assert reported & {"WL100", "WL501"} == expected
    if "--select" in options:
        # Everything outside the selection is gone, other built-in rules included.
        names = {"non-finite": "WL100", "dead-units": "WL501"}
        selectors = [names.get(item, item) for flag, value in zip(options, options[1:])
                     if flag in ("--select", "--extend-select") for item in value.split(",")]
        assert all(code.startswith(tuple(selectors)) for code in reported), reported


@pytest.mark.parametrize(("selection", "expected"), [("WL100", 1), ("WL501", 0), ("WL0", 0)])
def test_exit_code_follows_the_selection(capsys, defects, selection, expected):
    assert run(capsys, defects, "--select", selection)[0] == expected


# -- JSON ---------------------------------------------------------------------------------------
FINDING_KEYS = {"code", "rule", "severity", "file", "tensor", "message", "value", "threshold", "location"}


def test_json_document(capsys, defects):
    code, document = run_json(capsys, defects, *ENGINE)
    assert code == 1
    assert {"schema", "weightlint", "model", "summary", "rules", "notes", "findings", "tensors"} <= set(document)
    assert document["schema"] == 2
    assert document["weightlint"] == __version__
    model = document["model"]
    assert model["paths"] == [str(defects)]
    assert model["format"] == "safetensors"
    assert model["tensor_count"] == 3
    assert model["parameter_count"] == 6 * 10 + 5 * 7 + 3 * 3
    assert model["sources"][0]["format"] == "safetensors"
    summary = document["summary"]
    assert summary["counts"] == {"error": 1, "warning": 0, "info": 1}
    assert summary["exit_code"] == 1
    assert isinstance(summary["seconds"], (int, float)) and summary["seconds"] >= 0
    assert summary["device"] == "cpu"
    assert summary["interrupted"] is False
    assert ENGINE_CODES <= set(document["rules"])  # every rule loaded, selected or not
    assert document["rules"] == sorted(document["rules"])

    assert codes(document) == [("WL100", "a.weight"), ("WL501", "b.weight")]
    nan, dead = document["findings"]
    assert set(nan) >= FINDING_KEYS
    assert nan["rule"] == "non-finite" and nan["severity"] == "error"
    assert nan["file"].endswith("model.safetensors")
    assert nan["value"] == 1 and nan["threshold"] == 0
    assert nan["location"] == {"index": [3, 5]}
    assert dead["rule"] == "dead-units" and dead["severity"] == "info"
    assert dead["location"] == {"rows": [2], "columns": []}
    assert dead["value"] == 1

    a = document["tensors"]["a.weight"]
    assert a["shape"] == [6, 10] and a["dtype"] == "float32" and a["parameters"] == 60 and a["judged"] is True
    assert a["file"] == nan["file"]
    assert a["finite"] == {"nan_count": 1, "posinf_count": 0, "neginf_count": 0, "nonfinite_count": 1,
                           "first_nonfinite_index": [3, 5], "finite_fraction": pytest.approx(59 / 60)}
    assert set(a["norms"]) >= {"l2", "rms", "max_abs", "mean_abs", "mean", "std", "finite_only"}
    assert a["norms"]["finite_only"] is True
    b = document["tensors"]["b.weight"]
    assert b["sparsity"]["zero_rows"] == [2]
    assert b["sparsity"]["zero_columns"] == []
    assert b["sparsity"]["zero_count"] == 7
    assert b["sparsity"]["zero_fraction"] == pytest.approx(7 / 35)
    assert "finite_only" not in b["norms"]
    assert b["finite"]["first_nonfinite_index"] is None


def test_json_non_finite_values_are_strings(capsys, tmp_path):
    inf = torch.tensor([float("inf"), 1.0, -2.0])
    path = _save(tmp_path / "model.safetensors", {
        "all_nan": torch.full((4,), float("nan")),
        "mixed": torch.tensor([float("inf"), float("-inf"), float("nan"), 3.0]),
        "inf_only": inf,
    })
    code, out, _ = run(capsys, path, "--format", "json")
    assert code == 1, out
    assert not re.search(r"[:\[,]\s*-?(NaN|Infinity)\b", out)  # no bare NaN/Infinity tokens
    document = strict_loads(out)
    all_nan = document["tensors"]["all_nan"]
    assert all_nan["finite"]["nan_count"] == 4
    assert set(all_nan["norms"]) >= {"l2", "rms", "max_abs", "mean_abs", "mean", "std"}
    assert all_nan["norms"].pop("finite_only") is True
    assert set(all_nan["norms"].values()) == {"nan"}
    mixed = document["tensors"]["mixed"]["finite"]
    assert (mixed["nan_count"], mixed["posinf_count"], mixed["neginf_count"]) == (1, 1, 1)
    assert mixed["first_nonfinite_index"] == [0]
    assert document["tensors"]["mixed"]["norms"]["max_abs"] == 3.0


def test_json_output_file(capsys, defects, tmp_path):
    target = tmp_path / "report.json"
    code, out, _ = run(capsys, defects, "--format", "json", "--output", target, "--device", "cpu", *ENGINE)
    assert code == 1
    assert out == ""
    from_file = strict_loads(target.read_text(encoding="utf-8"))
    from_stdout = run_json(capsys, defects, *ENGINE)[1]
    assert _without_timing(from_file) == _without_timing(from_stdout)


def test_output_into_a_new_folder(capsys, defects, tmp_path):
    target = tmp_path / "reports" / "nested" / "report.json"
    assert run(capsys, defects, "--format", "json", "-o", target, *ENGINE)[0] == 1
    assert strict_loads(target.read_text(encoding="utf-8"))["summary"]["exit_code"] == 1


def test_output_that_cannot_be_written_is_a_usage_error(capsys, defects, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, err = run(capsys, defects, "-o", blocker / "report.txt")
    assert code == 4
    assert "--output" in err and "Traceback" not in err and "INTERNAL" not in err


def test_text_output_file_has_no_colour(capsys, defects, tmp_path):
    target = tmp_path / "report.txt"
    code, out, _ = run(capsys, defects, "-o", target, "--color", "always")
    assert code == 1 and out == ""
    text = target.read_text(encoding="utf-8")
    assert "WL100" in text and not ANSI.search(text)


def test_non_judged_tensors_are_listed_without_statistics(capsys, clean):
    document = run_json(capsys, clean)[1]
    step = document["tensors"]["step"]
    assert step == {"shape": [2], "dtype": "int64", "file": step["file"], "parameters": 2, "judged": False}
    bias = document["tensors"]["layer.0.bias"]
    assert "zero_rows" not in bias["sparsity"]  # 1-D: no rows and columns
    assert set(document["tensors"]["layer.0.weight"]) >= {"finite", "norms", "sparsity"}


# -- text ---------------------------------------------------------------------------------------
def test_text_header_grouping_and_closing_line(capsys, tmp_path):
    a = _normal(6, 10, seed=3)
    a[3, 5] = float("nan")
    a[:, 4] = 0.0  # the same tensor also has a dead input column
    path = _save(tmp_path / "model.safetensors", {"a.weight": a, "b.weight": _normal(5, 7)})
    code, out, _ = run(capsys, path, "--device", "cpu", *ENGINE)
    assert code == 1
    lines = out.splitlines()
    header = lines[: lines.index("")]
    header_text = "\n".join(header)
    assert "weightlint session starts" in header[0]
    assert f"weightlint {__version__}" in header_text
    assert "device cpu" in header_text
    assert "2 tensors" in header_text
    assert f"{human_count(60 + 35)} parameters" in header_text
    assert str(path) in header_text
    # Findings grouped by tensor: the file, the tensor once, then its findings (worst first).
    body = lines[len(header) + 1:]
    assert body[0] == str(path)
    assert body[1] == "  a.weight"
    assert body[2].startswith("    WL100 error") and "first at index [3, 5]" in body[2]
    assert body[3].startswith("    WL501 info") and "columns 4" in body[3]
    assert sum(line.strip() == "a.weight" for line in lines) == 1
    assert "b.weight" not in out
    closing = CLOSING.match(lines[-1])
    assert closing and closing.group("text") == "1 error, 1 info"
    assert not ANSI.search(out)


def test_quiet_and_verbose(capsys, defects):
    quiet = run(capsys, defects, "-q")[1]
    assert "session starts" not in quiet and "WL100" in quiet
    verbose = run(capsys, defects, "-v", *ENGINE)[1]
    assert "tensors without findings" in verbose and "c.weight [3, 3] float32" in verbose


def test_colour(capsys, monkeypatch, defects):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert not ANSI.search(run(capsys, defects)[1])  # captured stdout is not a terminal
    assert not ANSI.search(run(capsys, defects, "--color", "never")[1])
    coloured = run(capsys, defects, "--color", "always")[1]
    assert "\x1b[31;1merror  \x1b[0m" in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    assert ANSI.search(run(capsys, defects, "--color", "always")[1])  # an explicit choice wins


class _Terminal:
    def isatty(self) -> bool:
        return True


class _Pipe:
    def isatty(self) -> bool:
        return False


def test_colour_auto_decision(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli._use_color("auto", _Terminal()) is True
    assert cli._use_color("auto", _Pipe()) is False
    assert cli._use_color("always", _Pipe()) is True
    assert cli._use_color("never", _Terminal()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli._use_color("auto", _Terminal()) is False
    monkeypatch.setenv("NO_COLOR", "")  # https://no-color.org: only a non-empty value counts
    assert cli._use_color("auto", _Terminal()) is True


def test_no_colour_in_a_pipe_even_without_no_color(clean, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    result = subprocess.run([sys.executable, "-m", "weightlint", str(clean)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "no findings" in result.stdout
    assert not ANSI.search(result.stdout + result.stderr)


# -- demo ---------------------------------------------------------------------------------------
def test_demo(cli, tmp_path):
    folder = tmp_path / "demo"
    result = cli("demo", "--dir", str(folder))
    assert result.returncode == 0, result.stderr
    assert (folder / "model.safetensors").is_file()
    assert str(folder) in result.stderr
    lines = result.stdout.splitlines()
    assert CLOSING.match(lines[-1])
    planted = json.loads((folder / "PLANTED.json").read_text())
    # Every planted defect is reported on its tensor with the rule and severity the demo names …
    document = json.loads(cli(str(folder), "--format", "json").stdout)
    found = {(f["tensor"], f["code"], f["severity"]) for f in document["findings"]}
    for tensor, what in planted.items():
        code, severity = re.search(r"\((WL\d{3}) (\w+)", what).groups()
        assert (tensor, code, severity) in found, (tensor, what)
    # … and no error or warning lands anywhere else (the duplicate's original is named too).
    loud = {f["tensor"] for f in document["findings"] if f["severity"] in ("error", "warning")}
    assert loud <= set(planted) | {"h.2.mlp.c_fc.weight"}
    nan = next(f for f in document["findings"] if f["code"] == "WL100")
    assert nan["tensor"] == "h.2.attn.c_proj.weight" and nan["location"] == {"index": [5, 17]}
    dead = next(f for f in document["findings"] if f["code"] == "WL501")
    assert dead["location"] == {"rows": [7, 42, 99], "columns": []}


# -- rules and explain --------------------------------------------------------------------------
def test_rules_lists_the_builtins(capsys):
    code, out, _ = run(capsys, "rules")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert ENGINE_CODES <= set(listed)
    assert listed == sorted(listed)
    assert all(re.fullmatch(r"WL\d{3}", code) for code in listed)
    assert "non-finite" in out and "dead-units" in out


def test_rules_json(capsys):
    code, out, _ = run(capsys, "rules", "--format", "json")
    assert code == 0
    rules = strict_loads(out)
    assert ENGINE_CODES <= {rule["code"] for rule in rules}
    by_code = {rule["code"]: rule for rule in rules}
    assert by_code["WL100"]["name"] == "non-finite" and by_code["WL100"]["severity"] == "error"
    assert by_code["WL501"]["severity"] == "info"
    assert by_code["WL501"]["thresholds"] == {"min_dead": 1, "listed": 10}
    for rule in rules:
        assert {"summary", "what_it_does", "why_bad", "how_to_fix", "options", "references"} <= set(rule)


def test_rules_honours_plugin_options(capsys, plugin_path):
    out = run(capsys, "rules", "-p", "no:WL501", "-p", "plugins_for_tests.huge_values")[1]
    listed = [line.split()[0] for line in out.splitlines()]
    assert "WL501" not in listed
    assert {"WL001", "WL002", "WL006", "WL100", "WL990"} <= set(listed)


@pytest.mark.parametrize("wanted", ["WL100", "wl100", "non-finite"])
def test_explain(capsys, wanted):
    code, out, _ = run(capsys, "explain", wanted)
    assert code == 0
    assert out.startswith("# WL100 non-finite")
    headings = [line for line in out.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["## What it does", "## Why is this bad?", "## How to fix", "## Options"]


def test_explain_json(capsys):
    code, out, _ = run(capsys, "explain", "WL501", "--format", "json")
    assert code == 0
    assert strict_loads(out)["name"] == "dead-units"


@pytest.mark.parametrize(("wanted", "suggestion"), [
    ("WL10", "WL100"),
    ("dead-unit", "dead-units"),
    ("non-finit", "non-finite"),
])
def test_explain_unknown_rule_suggests(capsys, wanted, suggestion):
    code, out, err = run(capsys, "explain", wanted)
    assert code == 4
    assert out == ""
    assert f"unknown rule {wanted!r}" in err
    assert "did you mean" in err and suggestion in err.split("did you mean", 1)[1]


def test_explain_unknown_rule_without_a_close_match(capsys):
    code, out, err = run(capsys, "explain", "zzzz")
    assert code == 4
    assert "unknown rule 'zzzz'" in err and "`weightlint rules` lists them" in err


# -- progress bar -------------------------------------------------------------------------------
def test_progress_bar_on_a_terminal_only(capsys, defects):
    from types import SimpleNamespace

    progress = cli._Progress(enabled=True)
    record = SimpleNamespace(name="encoder.layer.0.weight")
    for position in range(3):
        progress(record, position, 3)
    progress(None, 3, 3)
    assert "encoder.layer.0.weight" in capsys.readouterr().err
    # Captured stderr is not a terminal: a real run draws no bar.
    assert cli.main([str(defects), *ENGINE]) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("option, value, message", [
    ("--select", "WL1O1", "--select WL1O1: no rule has this code or name (did you mean 'WL101'?)"),
    ("--ignore", "non-finit", "--ignore non-finit: no rule has this code or name (did you mean 'non-finite'?)"),
    ("--extend-select", "WL9999", "--extend-select WL9999: no rule has this code or name"),
])
def test_unknown_rule_in_a_selection_is_a_usage_error(capsys, defects, option, value, message):
    """A typo used to select nothing and pass with "no findings" (issue 12)."""
    code, _, err = run(capsys, str(defects), option, value)
    assert code == 4 and message in err


def test_unknown_rule_in_the_api_selection_is_a_usage_error(defects):
    with pytest.raises(weightlint.UsageError, match="did you mean 'WL101'"):
        weightlint.check(defects, select=["WL1O1"])
