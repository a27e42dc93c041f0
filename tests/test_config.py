"""Configuration: discovery, every key, overrides, suppressions, baseline, validation errors."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import weightlint
from weightlint import Severity
from weightlint.cli import main
from weightlint.config import file as configfile

ROOT = Path(__file__).parent.parent


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def ill_conditioned(condition: float, n: int = 64, seed: int = 0) -> torch.Tensor:
    singular = torch.logspace(0, -torch.log10(torch.tensor(condition)).item(), n, dtype=torch.float64)
    return ((_orthogonal(n, seed) * singular) @ _orthogonal(n, seed + 1).T).float()


@pytest.fixture
def model(tmp_path, monkeypatch):
    """A checkpoint with one finding per severity: WL100 error, WL101 warning (cond 5e4, under
    ``profile: guide``, which these tests of the configuration's mechanics use), WL501 info."""
    monkeypatch.chdir(tmp_path)
    healthy = torch.randn(64, 64, generator=torch.Generator().manual_seed(5)) * 0.02
    nan = healthy.clone()
    nan[1, 2] = float("nan")
    dead = healthy.clone() * 1.01
    dead[3] = 0
    state = {
        "layers.0.attn.weight": nan,
        "layers.1.attn.weight": ill_conditioned(5e4),
        "layers.2.attn.weight": dead,
    }
    save_file(state, str(tmp_path / "model.safetensors"))
    return tmp_path / "model.safetensors"


ENGINE = ["WL0", "WL100", "WL101", "WL501"]


def codes(report):
    return sorted((f.code, f.tensor, str(f.severity)) for f in report.findings)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def lint(model, config_text=None, name="weightlint.yaml", **settings):
    if config_text is not None:
        write(model.parent / name, config_text)
    select = settings.pop("select", ENGINE)
    if select is not None:
        settings["select"] = select
    settings.setdefault("profile", "guide")  # the fixture's WL101 warning is a condition number
    if settings["profile"] is None:  # profile=None: what the file says
        del settings["profile"]
    return weightlint.check(model, config_file="auto", **settings)


def test_example_file_loads_and_every_key_is_documented():
    raw = configfile.load(str(ROOT / "weightlint.yaml.example"))
    assert set(raw.data) | {"baseline"} == set(configfile.TOP_KEYS)
    text = (ROOT / "weightlint.yaml.example").read_text(encoding="utf-8")
    for key in configfile.TOP_KEYS + configfile.OVERRIDE_KEYS + configfile.SUPPRESS_KEYS:
        assert f"{key}:" in text or f"`{key}`" in text, key
    report = weightlint.check({"w.weight": torch.randn(8, 8)}, config_file=str(ROOT / "weightlint.yaml.example"))
    assert report.config.source.endswith("weightlint.yaml.example")
    assert report.config.rules["WL101"] == {"error": 2e5, "warning": 2e4}
    assert report.config.rules["WL401"]["severity"] == "info"


# -- discovery ----------------------------------------------------------------------------------

def test_discovery_order(tmp_path, monkeypatch):
    project = tmp_path / "project"
    nested = project / "models" / "run1"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert configfile.discover() is None
    write(project / "pyproject.toml", "[project]\nname = 'x'\n")
    assert configfile.discover() is None  # a pyproject without [tool.weightlint] does not count
    write(project / "pyproject.toml", "[project]\nname = 'x'\n\n[tool.weightlint]\nfail-on = 'warning'\n")
    assert configfile.discover() == str(project / "pyproject.toml")
    write(project / ".weightlint.yaml", "fail-on: info\n")
    assert configfile.discover() == str(project / ".weightlint.yaml")
    write(project / "weightlint.yaml", "fail-on: error\n")
    assert configfile.discover() == str(project / "weightlint.yaml")  # weightlint.yaml before .weightlint.yaml
    write(nested / ".weightlint.yaml", "fail-on: warning\n")
    assert configfile.discover() == str(nested / ".weightlint.yaml")  # the nearest folder wins
    assert configfile.resolve(None, isolated=True) is None
    explicit = write(tmp_path / "other.yaml", "fail-on: info\n")
    assert configfile.resolve(str(explicit), isolated=False).path == str(explicit)


def test_pyproject_table(model):
    write(model.parent / "pyproject.toml", "[tool.weightlint]\nfail-on = 'warning'\nignore = ['WL501']\n\n"
                                           "[tool.weightlint.rules.WL101]\nwarning = 1e5\n")
    report = lint(model)
    assert report.config.fail_on is Severity.WARNING
    assert ("WL501", "layers.2.attn.weight", "info") not in codes(report)
    assert not [f for f in report.findings if f.code == "WL101"]  # 5e4 is below the raised warning level


# -- keys ---------------------------------------------------------------------------------------

def test_fail_on_and_exit_zero(model):
    assert lint(model, "fail-on: error\n", select=["WL101"]).exit_code == 0
    assert lint(model, "fail-on: warning\n", select=["WL101"]).exit_code == 1
    assert lint(model, "fail-on: warning\nexit-zero: true\n", select=["WL101"]).exit_code == 0


def test_select_ignore_extend_select(model):
    assert {c for c, _, _ in codes(lint(model, "select: [WL1]\n", select=None))} == {"WL100", "WL101"}
    report = weightlint.check(model, config_file="auto", profile="guide")  # no command-line selection: the file's applies
    assert {c for c, _, _ in codes(report)} == {"WL100", "WL101"}
    write(model.parent / "weightlint.yaml", "select: [WL100]\nextend-select: [dead-units]\n")
    assert {c for c, _, _ in codes(weightlint.check(model, config_file="auto", profile="guide"))} == {"WL100", "WL501"}
    write(model.parent / "weightlint.yaml", "select: [WL1, WL5]\nignore: [WL101]\n")
    assert {c for c, _, _ in codes(weightlint.check(model, config_file="auto", profile="guide"))} == {"WL100", "WL501"}
    write(model.parent / "weightlint.yaml", "select: WL101, WL5\nignore: [WL5]\n")  # a comma string works
    assert {c for c, _, _ in codes(weightlint.check(model, config_file="auto", profile="guide"))} == {"WL101"}


def test_command_line_overrides_the_file(model):
    write(model.parent / "weightlint.yaml", "fail-on: info\nselect: [WL100]\n")
    assert main([str(model), "--profile", "guide", "--select", "WL501", "--format", "json", "-o", "out.json"]) == 1  # fail-on info
    import json

    document = json.loads(Path("out.json").read_text())
    assert {f["code"] for f in document["findings"]} == {"WL501"}
    assert main([str(model), "--profile", "guide", "--select", "WL501", "--fail-on", "error", "-q"]) == 0


def test_rule_thresholds_and_severity(model):
    assert codes(lint(model, "rules:\n  WL101: {warning: 1e5}\n", select=["WL101"])) == []
    assert codes(lint(model, "rules:\n  WL101: {error: 2e4}\n", select=["WL101"])) == [
        ("WL101", "layers.1.attn.weight", "error")]
    report = lint(model, "rules:\n  ill-conditioned:\n    severity: info\n", select=["WL101"])
    assert codes(report) == [("WL101", "layers.1.attn.weight", "info")]
    report = lint(model, "rules:\n  WL101:\n    warning: null\n", select=["WL101"])  # null turns a level off
    assert codes(report) == []


def test_overrides_apply_in_order(model):
    config = """
overrides:
  - tensors: "layers.*.attn.weight"
    ignore: [WL100]
  - tensors: "re:layers\\\\.0\\\\."
    extend-select: [WL100]
    select: [WL100]
  - tensors: "layers.1.*"
    rules:
      WL101: {severity: error}
"""
    report = lint(model, config)
    assert codes(report) == [
        ("WL100", "layers.0.attn.weight", "error"),   # re-selected by the second override
        ("WL101", "layers.1.attn.weight", "error"),   # severity raised by the third
        ("WL501", "layers.2.attn.weight", "info"),
    ]


def test_override_thresholds_for_some_tensors(model):
    report = lint(model, "overrides:\n  - tensors: 'layers.1.*'\n    rules:\n      WL101: {warning: 1e6}\n")
    assert "WL101" not in {c for c, _, _ in codes(report)}
    report = lint(model, "overrides:\n  - files: 'other-*.safetensors'\n    ignore: [ALL]\n")
    assert "WL101" in {c for c, _, _ in codes(report)}  # the file pattern does not match
    report = lint(model, "overrides:\n  - files: 'model.safetensors'\n    ignore: [ALL]\n")
    assert codes(report) == []


# -- suppressions -------------------------------------------------------------------------------

def test_suppression_requires_a_reason(model):
    with pytest.raises(configfile.ConfigError, match=r"weightlint.yaml:2: suppress\[0\]: a suppression needs 'reason'"):
        lint(model, "suppress:\n  - rule: WL100\n    tensor: layers.0.attn.weight\n")
    with pytest.raises(configfile.ConfigError, match=r"suppress\[0\].reason: the reason must be a non-empty string"):
        lint(model, "suppress:\n  - rule: WL100\n    tensor: x\n    reason: ''\n")


def test_suppression_hides_the_finding_and_unused_ones_are_reported(model):
    report = lint(model, """
suppress:
  - rule: non-finite
    tensor: "layers.0.*"
    reason: known NaN, retrained next week
  - rule: WL101
    tensor: does.not.exist
    reason: stale entry
""", select=ENGINE + ["WL01"])
    assert ("WL100", "layers.0.attn.weight", "error") not in codes(report)
    assert report.summary()["suppressed"] == 1
    (unused,) = [f for f in report.findings if f.code == "WL010"]
    assert unused.severity is Severity.INFO
    assert "WL101" in unused.message and "does.not.exist" in unused.message
    assert "weightlint.yaml:6" in unused.message  # where the entry is
    assert report.exit_code == 0


def test_expired_suppression_is_a_warning_and_no_longer_applies(model):
    yesterday = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    tomorrow = (datetime.date.today() + datetime.timedelta(days=1)).isoformat()
    report = lint(model, f"suppress:\n  - {{rule: WL100, tensor: 'layers.0.*', reason: r, expires: {yesterday}}}\n",
                  select=ENGINE + ["WL01"])
    assert ("WL100", "layers.0.attn.weight", "error") in codes(report)
    (expired,) = [f for f in report.findings if f.code == "WL011"]
    assert expired.severity is Severity.WARNING and yesterday in expired.message
    report = lint(model, f"suppress:\n  - {{rule: WL100, tensor: 'layers.0.*', reason: r, expires: {tomorrow}}}\n",
                  select=ENGINE + ["WL01"])
    assert ("WL100", "layers.0.attn.weight", "error") not in codes(report)
    assert not [f for f in report.findings if f.code in ("WL010", "WL011")]


def test_suppression_file_pattern(model):
    report = lint(model, "suppress:\n  - {rule: WL100, tensor: '*', file: 'other.safetensors', reason: r}\n",
                  select=ENGINE + ["WL01"])
    assert ("WL100", "layers.0.attn.weight", "error") in codes(report)
    assert [f.code for f in report.findings if f.code.startswith("WL01")] == ["WL010"]


# -- baseline -----------------------------------------------------------------------------------

def test_baseline_round_trip(model, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    # Recording is the run's job: it exits 0 (a "record the baseline" CI step passes) and says how many.
    assert main([str(model), "--profile", "guide", "--select", ",".join(ENGINE), "--write-baseline", str(baseline), "-q"]) == 0
    assert "weightlint: recorded 3 findings in the baseline" in capsys.readouterr().err
    assert main([str(model), "--profile", "guide", "--select", ",".join(ENGINE), "--baseline", str(baseline)]) == 0
    text = capsys.readouterr().out
    # The text report says what the baseline kept out, never a bare "no findings".
    assert "no findings, 3 baselined in" in text
    assert f"not shown: 3 already in the baseline {baseline}" in text
    # A new defect is reported; the known ones are not; small value drifts do not matter.
    state = {"layers.0.attn.weight": torch.randn(64, 64) * 0.02, "layers.1.attn.weight": ill_conditioned(6e4),
             "layers.2.attn.weight": torch.randn(64, 64) * 0.02, "layers.3.attn.weight": torch.full((64, 64), float("inf"))}
    state["layers.2.attn.weight"][3] = 0
    save_file(state, str(model))
    report = weightlint.check(model, select=ENGINE, baseline=str(baseline), profile="guide")
    assert codes(report) == [("WL100", "layers.3.attn.weight", "error")]
    assert report.summary()["baseline"] == {"file": str(baseline), "known": 2, "disappeared": 1}  # the NaN is fixed


def test_baseline_in_the_config_file_is_relative_to_it(model):
    main([str(model), "--profile", "guide", "--select", ",".join(ENGINE), "--write-baseline", "ci/known.json", "-q"])
    report = lint(model, "baseline: ci/known.json\n")
    assert codes(report) == []


def test_unreadable_baseline_is_a_usage_error(model, capsys):
    write(model.parent / "bad.json", "{not json")
    assert main([str(model), "--profile", "guide", "--baseline", "bad.json", "-q"]) == 4
    assert "bad.json" in capsys.readouterr().err


# -- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, message", [
    ("fail-on: warning\nselct: [WL1]\n", 2, r"selct: unknown key \(did you mean 'select'\?\)"),
    ("fail-on: fatal\n", 1, r"fail-on: expected one of info, warning, error"),
    ("fail-on: warnng\n", 1, r"did you mean 'warning'"),
    ("select: [WL1, WL9]\n", 1, r"select\[1\]: unknown rule code or name 'WL9'"),
    ("ignore: [dead-unit]\n", 1, r"ignore\[0\]: unknown rule code or name 'dead-unit' \(did you mean 'dead-units'\?\)"),
    ("rules:\n  WL101:\n    eror: 2e5\n", 3, r"rules.WL101.eror: unknown key \(did you mean 'error'\?\)"),
    ("rules:\n  WL1O1:\n    error: 2e5\n", 2, r"rules.WL1O1: unknown rule \(did you mean 'WL101'\?\)"),
    ("rules:\n  WL101:\n    error: big\n", 3, r"rules.WL101.error: expected a number"),
    ("rules:\n  WL101:\n    severity: loud\n", 3, r"rules.WL101.severity: expected one of"),
    ("rules: [WL101]\n", 1, r"rules: expected a mapping"),
    ("select: 3\n", 1, r"select: expected a list of strings"),
    ("overrides:\n  - tensors: 're:(unclosed'\n", 2, r"overrides\[0\].tensors: bad regex"),
    ("overrides:\n  - ignore: [WL1]\n", 2, r"overrides\[0\]: an override needs 'tensors' or 'files'"),
    ("overrides:\n  - tensors: x\n    ignores: [WL1]\n", 3, r"overrides\[0\].ignores: unknown key \(did you mean 'ignore'\?\)"),
    ("suppress:\n  - {rule: WL100, tensor: x, reason: r, expires: someday}\n", 2, r"suppress\[0\].expires: expected a date"),
    ("suppress:\n  - {rule: WL999, tensor: x, reason: r}\n", 2, r"suppress\[0\].rule: unknown rule"),
    ("device: tpu\n", 1, r"device: expected auto, cpu or cuda"),
    ("exit-zero: maybe\n", 1, r"exit-zero: expected true or false"),
    ("jobs: 0\n", 1, r"jobs: expected a positive number"),
    ("- just\n- a list\n", 1, r"the file must be a mapping"),
    ("fail-on: [unclosed\n", 2, r"invalid YAML"),
])
def test_validation_errors_name_file_line_and_key(model, capsys, text, line, message):
    write(model.parent / "weightlint.yaml", text)
    with pytest.raises(configfile.ConfigError, match=message) as caught:
        weightlint.check(model, config_file="auto", profile="guide")
    assert str(caught.value).startswith(f"{model.parent / 'weightlint.yaml'}:{line}: ")
    # From the command line: exit 4, the same single line, no traceback.
    assert main([str(model), "--profile", "guide", "-q"]) == 4
    err = capsys.readouterr().err
    assert f"weightlint.yaml:{line}: " in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_validation_error_in_pyproject_names_the_line(model, capsys):
    write(model.parent / "pyproject.toml", "[project]\nname = 'x'\n\n[tool.weightlint]\nfail-on = 'warning'\nselet = ['WL1']\n")
    assert main([str(model), "--profile", "guide", "-q"]) == 4
    assert "pyproject.toml:6: selet: unknown key (did you mean 'select'?)" in capsys.readouterr().err


def test_isolated_and_explicit_config(model, capsys):
    write(model.parent / "weightlint.yaml", "selct: oops\n")
    assert main([str(model), "--profile", "guide", "-q", "--isolated", "--select", "WL101"]) == 0
    other = write(model.parent / "strict.yaml", "fail-on: warning\n")
    assert main([str(model), "--profile", "guide", "-q", "--config", str(other), "--select", "WL101"]) == 1
    assert main([str(model), "--profile", "guide", "-q", "--config", "missing.yaml"]) == 4
    assert "missing.yaml" in capsys.readouterr().err


def test_sarif_keeps_suppressed_and_baselined_findings_as_suppressed_results(model, tmp_path):
    import json

    from test_reporters import sarif_validator

    # The baseline knows all three findings; the suppression takes the NaN first.
    main([str(model), "--profile", "guide", "--select", ",".join(ENGINE), "--write-baseline", str(tmp_path / "known.json"), "-q"])
    write(model.parent / "weightlint.yaml",
          "suppress:\n  - rule: WL100\n    tensor: layers.0.attn.weight\n    reason: known NaN, retrained next week\n")
    code = main([str(model), "--profile", "guide", "--select", ",".join(ENGINE), "--baseline", str(tmp_path / "known.json"),
                 "--format", "sarif", "-o", "out.sarif", "-q"])
    assert code == 0
    log = json.loads(Path("out.sarif").read_text(encoding="utf-8"))
    sarif_validator().validate(log)
    accepted = {(r["ruleId"], r["properties"]["tensor"]): r["suppressions"] for r in log["runs"][0]["results"]}
    assert set(accepted) == {("WL100", "layers.0.attn.weight"), ("WL101", "layers.1.attn.weight"),
                             ("WL501", "layers.2.attn.weight")}
    (by_config,) = accepted[("WL100", "layers.0.attn.weight")]
    assert by_config["kind"] == "external" and by_config["status"] == "accepted"
    assert by_config["justification"].startswith("suppressed: known NaN, retrained next week (")
    assert by_config["justification"].endswith("weightlint.yaml:2)")  # where the entry is
    (by_baseline,) = accepted[("WL501", "layers.2.attn.weight")]
    assert by_baseline["justification"] == f"in the baseline {tmp_path / 'known.json'}"


# -- profiles -----------------------------------------------------------------------------------

def test_profile_from_the_file_and_the_command_line(model):
    """The fixture's condition number of 5e4 is a warning under the guide's profile only."""
    def wl101(report):
        return [(f.tensor, str(f.severity)) for f in report.findings if f.code == "WL101"]

    assert wl101(lint(model, "profile: default\n", profile=None, select=["WL101"])) == []
    report = lint(model, "profile: guide\n", profile=None, select=["WL101"])
    assert report.config.profile == "guide" and report.summary()["profile"] == "guide"
    assert wl101(report) == [("layers.1.attn.weight", "warning")]
    # An explicit setting under rules: overrides the profile's value.
    assert wl101(lint(model, "profile: guide\nrules:\n  WL101:\n    warning: 1e5\n", profile=None,
                      select=["WL101"])) == []
    assert wl101(lint(model, "rules:\n  WL101:\n    warning: 1e4\n", profile=None, select=["WL101"])) == [
        ("layers.1.attn.weight", "warning")]
    # The command line wins over the file.
    write(model.parent / "weightlint.yaml", "profile: default\n")
    assert main([str(model), "-q", "--select", "WL101", "--fail-on", "warning"]) == 0
    assert main([str(model), "-q", "--select", "WL101", "--fail-on", "warning", "--profile", "guide"]) == 1


def test_unknown_profile_is_an_error_with_a_suggestion(model, capsys):
    write(model.parent / "weightlint.yaml", "profile: gide\n")
    assert main([str(model), "-q"]) == 4
    assert "weightlint.yaml:1: profile: unknown profile 'gide': expected one of default, guide " \
           "(did you mean 'guide'?)" in capsys.readouterr().err
    with pytest.raises(weightlint.UsageError, match="unknown profile 'gide'"):
        weightlint.check(model, profile="gide")


def test_guide_profile_thresholds_are_the_guides():
    from weightlint.plugins import build_plugin_manager, collect_rules

    rules = collect_rules(build_plugin_manager([]))
    guide = {code: rule.thresholds_for("guide") for code, rule in rules.items()}
    assert (guide["WL101"]["error"], guide["WL101"]["warning"]) == (1e5, 1e4)
    assert (guide["WL201"]["error"], guide["WL201"]["warning"], guide["WL201"]["only_if_sqnr_below"]) == (10.0, 1.0, None)
    assert guide["WL202"]["warning"] == 30.0
    assert guide["WL401"]["info"] == 0.1
