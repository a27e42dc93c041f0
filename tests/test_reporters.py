"""Reports for CI systems: JUnit XML, SARIF 2.1.0, GitHub workflow commands, Markdown.

Each format is read back with a real consumer (``junitparser``, ``jsonschema`` with the official
SARIF schema, exact GitHub command lines, a Markdown table parser) and compared with the JSON
report of the same scan. Every test runs in its own ``tmp_path`` (the working directory is switched
there), so the file paths in the reports are the relative paths the test passed.
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
import torch
from junitparser import Failure, JUnitXml
from markdown_it import MarkdownIt
from safetensors.torch import save_file

import weightlint
from weightlint import Finding, Severity, cli
from weightlint.reporters import FORMATS, github, markdown, render, sarif

TESTS = Path(__file__).resolve().parent
# The official schema from the project's shared folder (beside the checkout, as CI lays it out);
# tests/data holds a byte-identical copy for checkouts without it.
SARIF_SCHEMA = next(path for path in (TESTS.parent.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json",
                                      TESTS / "data" / "sarif-schema-2.1.0.json") if path.is_file())
# The engine's own rules: exact findings and exact case counts cannot change as rules are added.
ENGINE = ["--select", "WL0,WL100,WL501"]
SELECTED_FILE_RULES = ("WL001", "WL002", "WL006")
NAN_MESSAGE = "1 NaN of 60 values; first at index [3, 5]"
DEAD_MESSAGE = "1 of 5 output units are all zero (rows 2)"
GITHUB_LINE = re.compile(r"^::(?P<command>error|warning|notice) (?P<properties>[^:]*)::(?P<message>.*)$")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


# -- fixtures ---------------------------------------------------------------------------------------
def _normal(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.02


def _save(path: str, tensors: dict[str, torch.Tensor]) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, path)
    return path


@pytest.fixture
def defects() -> str:
    """a.weight[3, 5] is NaN (WL100 error), row 2 of b.weight is zero (WL501 info), c.* is clean."""
    a = _normal(6, 10, seed=3)
    a[3, 5] = float("nan")
    b = _normal(5, 7, seed=4)
    b[2] = 0.0
    return _save("defects/model.safetensors", {"a.weight": a, "b.weight": b, "c.weight": _normal(3, 3, seed=5),
                                               "c.bias": torch.full((3,), 0.01),
                                               "step": torch.tensor([1], dtype=torch.int64)})


@pytest.fixture
def clean() -> str:
    return _save("clean/model.safetensors", {"w.weight": _normal(4, 6, seed=6), "w.bias": torch.full((4,), 0.01)})


@pytest.fixture
def broken() -> str:
    """Not a safetensors file at all: one WL001 about the file (no tensor)."""
    Path("broken").mkdir()
    Path("broken/model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    return "broken/model.safetensors"


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def run(capsys, *args) -> tuple[int, str]:
    code = cli.main([str(arg) for arg in args] + ["--device", "cpu"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out


def json_of(capsys, *args) -> dict:
    return json.loads(run(capsys, *args, "--format", "json")[1])


def junit_of(text: str) -> JUnitXml:
    return JUnitXml.fromstring(text.encode("utf-8"))


def sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def cases(xml: JUnitXml):
    return [(suite, case) for suite in xml for case in suite]


def file_of(case) -> str | None:
    """The ``file`` attribute of a <testcase> (junitparser has no accessor for it)."""
    return case._elem.get("file")


def failures(case) -> list[Failure]:
    return [result for result in case.result if isinstance(result, Failure)]


# -- findings per format, for comparing formats ---------------------------------------------------
def findings_of_json(document: dict) -> list[tuple]:
    return sorted((f["code"], f["file"], f["tensor"]) for f in document["findings"])


def findings_of_junit(text: str) -> list[tuple]:
    found = []
    for _suite, case in cases(junit_of(text)):
        count = len(failures(case)) + (case.system_out or "").count("below --fail-on")
        tensor = None if case.name == file_of(case) else case.name
        found += [(case.classname.split()[0], file_of(case), tensor)] * count
    return sorted(found)


def findings_of_sarif(text: str) -> list[tuple]:
    found = []
    for result in json.loads(text)["runs"][0]["results"]:
        location = result["locations"][0]
        logical = location.get("logicalLocations", [{}])[0].get("name")
        found.append((result["ruleId"], location["physicalLocation"]["artifactLocation"]["uri"], logical))
    return sorted(found)


def findings_of_github(text: str) -> list[tuple]:
    found = []
    for line in text.splitlines():
        match = GITHUB_LINE.match(line)
        assert match, line
        properties = dict(item.split("=", 1) for item in match["properties"].split(","))
        tensor, _, _message = match["message"].partition(": ")
        code = properties["title"].split()[0]
        found.append((code, properties["file"], None if code.startswith("WL0") else tensor))
    return sorted(found)


class _Tables(HTMLParser):
    """The tables of rendered HTML: a list of tables, each a list of rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def rendered_tables(text: str) -> list[list[list[str]]]:
    """Render the Markdown as GitHub does (CommonMark + GFM tables and strikethrough), read the tables."""
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def table_rows(text: str) -> list[list[str]]:
    """The rows of the rendered findings table (without its header), as a reader sees them."""
    [table] = [table for table in rendered_tables(text) if table[0][0] == "severity"]
    assert table[0] == ["severity", "rule", "tensor", "file", "message"]
    return table[1:]


def findings_of_markdown(text: str) -> list[tuple]:
    return sorted((row[1].split()[0], row[3] or None, row[2] or None) for row in table_rows(text))


# -- JUnit XML ------------------------------------------------------------------------------------
def test_junit_one_suite_per_checkpoint_and_one_case_per_checked_pair(capsys, defects):
    code, out = run(capsys, defects, *ENGINE, "--format", "junit")
    assert code == 1
    xml = junit_of(out)
    suites = list(xml)
    assert [suite.name for suite in suites] == ["defects/model.safetensors"]
    pairs = [(case.classname, case.name) for _suite, case in cases(xml)]
    # File rules once for the file; WL100 on the 4 judged tensors (the int64 `step` is not judged);
    # WL501 on the 3 weight matrices (not the 1-D bias).
    file_cases = [(f"{code} {name}", defects) for code, name in
                  (("WL001", "unreadable-file"), ("WL002", "unsafe-pickle"), ("WL006", "index-mismatch"),
                   ("WL009", "limit-exceeded"))]
    tensor_cases = [("WL100 non-finite", t) for t in ("a.weight", "b.weight", "c.bias", "c.weight")]
    tensor_cases += [("WL501 dead-units", t) for t in ("a.weight", "b.weight", "c.weight")]
    assert sorted(pairs) == sorted(file_cases + tensor_cases)
    assert len(pairs) == len(set(pairs)) == 11
    assert (suites[0].tests, suites[0].failures, suites[0].errors, suites[0].skipped) == (11, 1, 0, 0)
    assert (xml.tests, xml.failures) == (11, 1)


def test_junit_failure_message_value_and_passing_cases(capsys, defects):
    xml = junit_of(run(capsys, defects, *ENGINE, "--format", "junit")[1])
    by_pair = {(case.classname.split()[0], case.name): case for _suite, case in cases(xml)}
    nan_case = by_pair[("WL100", "a.weight")]
    [failure] = failures(nan_case)
    assert failure.message == NAN_MESSAGE
    assert failure.type == "error"
    assert "value: 1\n" in failure.text and "threshold: 0\n" in failure.text and "[3, 5]" in failure.text
    # Below --fail-on: a passing case that shows the finding in its system-out.
    dead_case = by_pair[("WL501", "b.weight")]
    assert dead_case.is_passed and not failures(dead_case)
    assert dead_case.system_out.startswith(f"below --fail-on error: WL501 dead-units (info): {DEAD_MESSAGE}")
    assert "value: 1\n" in dead_case.system_out
    clean_case = by_pair[("WL100", "c.weight")]
    assert clean_case.is_passed and not clean_case.system_out


@pytest.mark.parametrize("fail_on", ["error", "warning", "info"])
def test_junit_counts_equal_the_json(capsys, defects, clean, fail_on):
    args = [defects, clean, *ENGINE, "--fail-on", fail_on]
    document = json_of(capsys, *args)
    code, out = run(capsys, *args, "--format", "junit")
    assert code == document["summary"]["exit_code"]
    xml = junit_of(out)
    failing = [f for f in document["findings"] if Severity.parse(f["severity"]) >= Severity.parse(fail_on)]
    assert xml.failures == len(failing) == {"error": 1, "warning": 1, "info": 2}[fail_on]
    assert sum(suite.failures for suite in xml) == xml.failures
    assert findings_of_junit(out) == findings_of_json(document)
    assert [suite.name for suite in xml] == [source["path"] for source in document["model"]["sources"]]
    properties = {p.name: p.value for p in next(iter(xml)).properties()}
    assert properties["fail_on"] == fail_on and properties["exit_code"] == str(document["summary"]["exit_code"])


def test_junit_sharded_checkpoint_and_file_problems(capsys):
    shard1 = "model-00001-of-00003.safetensors"
    missing = ["model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]
    _save(f"llm/{shard1}", {"x.weight": _normal(4, 4, seed=1)})
    Path("llm/model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"x.weight": shard1, "y.weight": missing[0], "z.weight": missing[1]}}))
    document = json_of(capsys, "llm", *ENGINE)
    assert [(f["code"], f["file"], f["tensor"]) for f in document["findings"]] == \
        [("WL006", "llm/model.safetensors.index.json", None)] * 2  # two missing shards, one file
    xml = junit_of(run(capsys, "llm", *ENGINE, "--format", "junit")[1])
    [suite] = list(xml)
    assert suite.name == "llm/model.safetensors.index.json"
    files = {file_of(case) for case in suite if case.classname.startswith("WL001")}
    assert files == {"llm/model.safetensors.index.json", *(f"llm/{shard}" for shard in [shard1, *missing])}
    failing = [case for case in suite if failures(case)]
    # Two findings of one rule on one file: one case each, so failures equal the findings.
    assert [(case.classname, case.name) for case in failing] == [
        ("WL006 index-mismatch", "llm/model.safetensors.index.json")] * 2
    assert {failures(case)[0].message for case in failing} == {f["message"] for f in document["findings"]}
    assert xml.failures == suite.failures == 2
    assert not any(case.classname.startswith("WL006") and case.is_passed
                   and file_of(case) == "llm/model.safetensors.index.json" for case in suite)


def test_junit_interrupted_scan_lists_only_checked_tensors(capsys, plugin_path):
    _save("m/model.safetensors", {"a.weight": _normal(4, 4), "z.interrupt.weight": _normal(4, 4, seed=1)})
    code, out = run(capsys, "m/model.safetensors", *ENGINE, "-p", "plugins_for_tests.interrupt", "--format", "junit")
    assert code == 2
    xml = junit_of(out)
    names = {case.name for _suite, case in cases(xml)}
    assert "a.weight" in names and "z.interrupt.weight" not in names
    assert {p.name: p.value for p in next(iter(xml)).properties()}["interrupted"] == "true"


# -- SARIF ----------------------------------------------------------------------------------------
def test_sarif_validates_against_the_official_schema(capsys, defects, broken):
    code, out = run(capsys, defects, broken, "--format", "sarif")  # every built-in rule
    assert code == 1
    log = json.loads(out)
    errors = sorted(sarif_validator().iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    assert log["version"] == "2.1.0"


def test_sarif_driver_rules_and_results(capsys, defects):
    document = json_of(capsys, defects, *ENGINE)
    log = json.loads(run(capsys, defects, *ENGINE, "--format", "sarif")[1])
    [run_] = log["runs"]
    driver = run_["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("weightlint", weightlint.__version__)
    assert driver["informationUri"].startswith("https://")
    rules = weightlint.check(defects, select=["WL0", "WL100", "WL501"], device="cpu").rules
    selected = [code for code in rules if code.startswith(("WL0", "WL100", "WL501"))]
    assert [rule["id"] for rule in driver["rules"]] == selected
    by_id = {rule["id"]: rule for rule in driver["rules"]}
    wl100 = by_id["WL100"]
    assert wl100["name"] == "non-finite"
    assert wl100["shortDescription"]["text"] == rules["WL100"].summary
    assert wl100["fullDescription"]["text"] == rules["WL100"].what_it_does.strip()
    assert wl100["help"]["markdown"] == wl100["help"]["text"] == rules["WL100"].documentation()
    assert wl100["defaultConfiguration"]["level"] == "error"
    assert by_id["WL501"]["defaultConfiguration"]["level"] == "note"

    results = run_["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [("WL100", "error"), ("WL501", "note")]
    nan = results[0]
    assert driver["rules"][nan["ruleIndex"]]["id"] == "WL100"
    assert nan["message"]["text"] == f"a.weight: {NAN_MESSAGE}"
    [location] = nan["locations"]
    physical = location["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "defects/model.safetensors", "uriBaseId": "%SRCROOT%"}
    assert physical["region"] == {"startLine": 1}
    assert location["logicalLocations"] == [{"name": "a.weight", "kind": "member",
                                             "fullyQualifiedName": "defects/model.safetensors::a.weight"}]
    expected = hashlib.sha256("WL100\x00defects/model.safetensors\x00a.weight".encode()).hexdigest()
    assert nan["partialFingerprints"] == {"weightlint/v1": expected}
    assert (nan["properties"]["value"], nan["properties"]["threshold"]) == (1, 0)
    assert run_["originalUriBaseIds"]["%SRCROOT%"]["uri"] == Path.cwd().as_uri() + "/"
    assert run_["invocations"][0]["exitCode"] == document["summary"]["exit_code"] == 1
    assert findings_of_sarif(json.dumps(log)) == findings_of_json(document)


def test_sarif_fingerprints_are_stable_and_distinct(capsys, defects):
    first = json.loads(run(capsys, defects, *ENGINE, "--format", "sarif")[1])["runs"][0]["results"]
    second = json.loads(run(capsys, defects, *ENGINE, "--format", "sarif")[1])["runs"][0]["results"]
    prints = [r["partialFingerprints"]["weightlint/v1"] for r in first]
    assert prints == [r["partialFingerprints"]["weightlint/v1"] for r in second]
    assert len(set(prints)) == len(prints)


def test_sarif_file_outside_the_working_directory_is_a_file_uri(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.safetensors"
    finding = Finding(code="WL100", rule="non-finite", severity=Severity.ERROR, message="m", file=str(outside))
    assert sarif.artifact_location(str(outside)) == {"uri": outside.as_uri()}
    assert "uriBaseId" not in sarif.artifact_location(str(outside))
    assert sarif.artifact_location("dir with space/m.safetensors") == {
        "uri": "dir%20with%20space/m.safetensors", "uriBaseId": "%SRCROOT%"}
    assert sarif.fingerprint(finding) == hashlib.sha256(
        f"WL100\x00{outside.as_posix()}\x00".encode()).hexdigest()


# -- GitHub workflow commands ---------------------------------------------------------------------
def test_github_lines_exactly(capsys, defects):
    code, out = run(capsys, defects, *ENGINE, "--format", "github")
    assert code == 1
    assert out.splitlines() == [
        f"::error file=defects/model.safetensors,title=WL100 non-finite::a.weight: {NAN_MESSAGE}",
        f"::notice file=defects/model.safetensors,title=WL501 dead-units::b.weight: {DEAD_MESSAGE}",
    ]


def test_github_severity_words_and_escaping():
    finding = Finding(code="WL990", rule="huge-values", severity=Severity.WARNING, file="odd,dir:x/100%.safetensors",
                      tensor="w", message="50% off\r\nsecond line: a, b")
    assert github.command(finding) == (
        "::warning file=odd%2Cdir%3Ax/100%25.safetensors,title=WL990 huge-values::w: 50%25 off%0D%0Asecond line: a, b")
    finding.severity = Severity.INFO
    finding.tensor = None
    finding.file = None
    assert github.command(finding) == "::notice title=WL990 huge-values::50%25 off%0D%0Asecond line: a, b"
    assert github.escape_property("a:b,c%d\ne") == "a%3Ab%2Cc%25d%0Ae"


# -- Markdown -------------------------------------------------------------------------------------
def test_markdown_summary_and_table(capsys, defects):
    document = json_of(capsys, defects, *ENGINE)
    code, out = run(capsys, defects, *ENGINE, "--format", "markdown")
    assert code == 1
    assert out.startswith("## ❌ weightlint failed: 1 finding at or above error\n")
    assert "**Health score 90/100: do not deploy** · exit code 1" in out
    counts = rendered_tables(out)[0]
    assert counts[0] == ["errors", "warnings", "info", "tensors", "parameters", "files"]
    assert counts[1][:4] == ["1", "0", "1", "5"] and counts[1][5] == "1"
    assert table_rows(out) == [
        ["error", "WL100 non-finite", "a.weight", "defects/model.safetensors", NAN_MESSAGE],
        ["info", "WL501 dead-units", "b.weight", "defects/model.safetensors", DEAD_MESSAGE],
    ]
    assert findings_of_markdown(out) == findings_of_json(document)


def test_markdown_clean_run(capsys, clean):
    code, out = run(capsys, clean, *ENGINE, "--format", "markdown")
    assert code == 0
    assert out.startswith("## ✅ weightlint passed: nothing at or above error\n")
    assert "**Health score 100/100: deploy** · exit code 0" in out and "No findings." in out


def test_markdown_caps_the_table_sorts_by_severity_and_escapes_pipes(defects):
    report = weightlint.check(defects, select=["WL100"], device="cpu")
    severities = [Severity.INFO, Severity.ERROR, Severity.WARNING]
    report.findings = [Finding(code=f"WL{100 + i % 7}", rule="r", severity=severities[i % 3], file=defects,
                               tensor=f"t|{i}", message=f"a | b *{i}*\nnext") for i in range(60)]
    text = markdown.render(report)
    rows = table_rows(text)
    assert len(rows) == markdown.MAX_ROWS == 50
    order = [(-int(Severity.parse(row[0])), row[1]) for row in rows]
    assert order == sorted(order)
    assert rows[0][0] == "error" and rows[-1][0] != "error"
    assert "… and 10 more findings (see the full report)." in text
    assert "`t\\|" in text and "a \\| b \\*" in text
    # Rendered, no pipe, newline or asterisk broke a row or became markup: the text reads as written.
    assert all(len(row) == 5 for row in rows)
    assert all(row[2].startswith("t|") and row[4] == f"a | b *{row[2][2:]}* next" for row in rows)


# -- every format, one scan -----------------------------------------------------------------------
def test_same_findings_in_every_format(capsys, defects, broken):
    args = [defects, broken]  # every built-in rule, plus a file problem without a tensor
    document = json_of(capsys, *args)
    expected = findings_of_json(document)
    assert ("WL001", broken, None) in expected and ("WL100", defects, "a.weight") in expected
    outputs = {fmt: run(capsys, *args, "--format", fmt) for fmt in ("junit", "sarif", "github", "markdown")}
    assert {fmt: code for fmt, (code, _) in outputs.items()} == dict.fromkeys(outputs, document["summary"]["exit_code"])
    assert findings_of_junit(outputs["junit"][1]) == expected
    assert findings_of_sarif(outputs["sarif"][1]) == expected
    assert findings_of_github(outputs["github"][1]) == expected
    assert findings_of_markdown(outputs["markdown"][1]) == expected


def test_every_format_is_registered():
    assert set(FORMATS) == {"text", "json", "junit", "sarif", "github", "markdown", "html"}
    assert set(cli.FORMATS) == set(FORMATS)


# -- side outputs and exit codes ------------------------------------------------------------------
def test_side_outputs_written_alongside_text(capsys, defects):
    code, out = run(capsys, defects, *ENGINE, "--junit-xml", "out/r.xml", "--json", "out/r.json",
                    "--sarif", "out/r.sarif", "--markdown", "out/r.md")
    assert code == 1
    assert "weightlint session starts" in out and "WL100" in out  # the text report, on stdout
    document = json.loads(Path("out/r.json").read_text(encoding="utf-8"))
    expected = findings_of_json(document)
    assert findings_of_junit(Path("out/r.xml").read_text(encoding="utf-8")) == expected
    sarif_text = Path("out/r.sarif").read_text(encoding="utf-8")
    assert not list(sarif_validator().iter_errors(json.loads(sarif_text)))
    assert findings_of_sarif(sarif_text) == expected
    assert findings_of_markdown(Path("out/r.md").read_text(encoding="utf-8")) == expected


def test_side_outputs_with_another_main_format_and_output_file(capsys, defects):
    code, out = run(capsys, defects, *ENGINE, "--format", "github", "--junitxml", "r.xml", "--json", "r.json")
    assert code == 1
    assert out.startswith("::error ")
    assert junit_of(Path("r.xml").read_text(encoding="utf-8")).failures == 1
    code, out = run(capsys, defects, *ENGINE, "--format", "sarif", "-o", "main.sarif", "--markdown", "r.md")
    assert code == 1 and out == ""
    assert json.loads(Path("main.sarif").read_text(encoding="utf-8"))["version"] == "2.1.0"
    assert Path("r.md").read_text(encoding="utf-8").startswith("## ")


@pytest.mark.parametrize(("fixture", "extra", "expected"), [
    ("clean", [], 0),
    ("defects", [], 1),
    ("defects", ["--fail-on", "info"], 1),
    ("defects", ["--exit-zero"], 0),
    (None, [], 5),
])
def test_exit_codes_do_not_depend_on_the_format(capsys, request, fixture, extra, expected):
    if fixture is None:
        Path("empty").mkdir()
        path = "empty"
    else:
        path = request.getfixturevalue(fixture)
    codes = {fmt: run(capsys, path, *ENGINE, *extra, "--format", fmt)[0] for fmt in FORMATS}
    assert codes == dict.fromkeys(FORMATS, expected)
    assert run(capsys, path, *ENGINE, *extra, "--junit-xml", "r.xml", "--sarif", "r.sarif")[0] == expected


def test_exit_zero_still_writes_every_report(capsys, defects):
    code, out = run(capsys, defects, *ENGINE, "--exit-zero", "--format", "markdown", "-o", "main.md",
                    "--junit-xml", "r.xml", "--json", "r.json", "--sarif", "r.sarif")
    assert code == 0 and out == ""
    assert "WL100" in Path("main.md").read_text(encoding="utf-8")
    xml = junit_of(Path("r.xml").read_text(encoding="utf-8"))
    assert xml.failures == 1  # the findings are still there; only the exit code is forced
    document = json.loads(Path("r.json").read_text(encoding="utf-8"))
    assert document["summary"]["exit_code"] == 0 and document["summary"]["counts"]["error"] == 1
    log = json.loads(Path("r.sarif").read_text(encoding="utf-8"))
    assert len(log["runs"][0]["results"]) == 2 and log["runs"][0]["invocations"][0]["exitCode"] == 0


def test_two_outputs_on_one_file_is_a_usage_error(capsys, defects):
    code = cli.main([defects, "-o", "r.xml", "--junit-xml", "./r.xml"])
    _, err = capsys.readouterr()
    assert code == 4 and "--junit-xml ./r.xml: the same file as --output" in err
    assert not Path("r.xml").exists()


def test_unwritable_side_output_is_a_usage_error(capsys, defects):
    Path("a-file").write_text("")
    code = cli.main([defects, "--sarif", "a-file/r.sarif"])
    out, err = capsys.readouterr()
    assert code == 4 and "--sarif a-file/r.sarif" in err and "INTERNAL" not in err


def test_github_step_summary_is_not_written_implicitly(capsys, monkeypatch, defects):
    summary = Path("summary.md")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert run(capsys, defects, *ENGINE)[0] == 1
    assert not summary.exists()
    assert run(capsys, defects, *ENGINE, "--markdown", summary)[0] == 1
    assert summary.read_text(encoding="utf-8").startswith("## ")


def test_reporters_render_python_api_reports(defects):
    report = weightlint.check(defects, select=["WL0", "WL100", "WL501"], device="cpu")
    assert render(report, "github").count("\n") == 2
    assert not list(sarif_validator().iter_errors(json.loads(render(report, "sarif"))))
    assert junit_of(render(report, "junit")).failures == 1


# -- rules and explain ----------------------------------------------------------------------------
def test_rules_json_has_what_ci_needs(capsys):
    code = cli.main(["rules", "--format", "json"])
    rules = json.loads(capsys.readouterr().out)
    assert code == 0
    for rule in rules:
        assert {"code", "name", "severity", "thresholds", "summary"} <= set(rule)
        assert rule["severity"] in ("error", "warning", "info")


def test_explain_json_has_the_full_documentation(capsys):
    code = cli.main(["explain", "WL101", "--format", "json"])
    explained = json.loads(capsys.readouterr().out)
    assert code == 0
    assert explained["code"] == "WL101" and explained["documentation"].startswith("# WL101 ill-conditioned")
    assert "## Why is this bad?" in explained["documentation"]
    code = cli.main(["explain", "WL10", "--format", "json"])
    assert code == 4 and "did you mean" in capsys.readouterr().err


# -- the documented CI examples -------------------------------------------------------------------
def _documented_jobs() -> list[dict]:
    import yaml

    text = (TESTS.parent / "docs" / "ci-integration.md").read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def _weightlint_commands(steps: list[str]) -> list[list[str]]:
    import shlex

    commands = []
    for step in steps:
        for line in " ".join(step.split("\n")).split(" - "):
            words = shlex.split(line.replace('"$GITHUB_STEP_SUMMARY"', "summary.md"))
            if words and words[0] == "weightlint":
                commands.append(words[1:])
    return commands


def test_documented_ci_examples(capsys, defects):
    github_workflow, gitlab = _documented_jobs()
    steps = github_workflow["jobs"]["weightlint"]["steps"]
    upload = next(step for step in steps if step.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert upload["with"]["sarif_file"] == "weightlint.sarif"
    assert "!cancelled()" in upload["if"]
    assert gitlab["weightlint"]["artifacts"]["reports"]["junit"] == "weightlint-junit.xml"
    commands = _weightlint_commands([step.get("run", "") for step in steps] + gitlab["weightlint"]["script"])
    assert len(commands) == 2
    Path("models").mkdir()
    Path(defects).rename("models/model.safetensors")
    for args in commands:
        assert run(capsys, *args, *ENGINE)[0] == 1  # the job fails on the NaN
    assert json.loads(Path("weightlint.sarif").read_text(encoding="utf-8"))["runs"][0]["results"]
    assert junit_of(Path("weightlint-junit.xml").read_text(encoding="utf-8")).failures == 1
    assert Path("summary.md").read_text(encoding="utf-8").startswith("## ❌")


def test_control_characters_in_names_cannot_forge_report_lines():
    """A tensor name with a newline and ANSI escapes used to print a forged verdict line (issue 12)."""
    import numpy as np

    forged = "evil.weight\nhealth score 100/100: good: deploy\x1b[2K\x1b[0m"
    weight = np.zeros((8, 8), dtype=np.float32)  # WL503 on the forged name
    report = weightlint.check({forged: weight, "ok.weight": np.eye(8, dtype=np.float32)})
    assert [f.tensor for f in report.findings if f.code == "WL503"] == [forged]
    for format_name in ("text", "github", "markdown"):
        output = render(report, format_name)
        assert "\x1b" not in output, format_name
        assert not any(line.startswith("health score 100/100") for line in output.splitlines()), format_name
    assert "evil.weight\\nhealth score 100/100: good: deploy\\x1b[2K" in render(report, "text")
    assert "evil.weight%0Ahealth score 100/100: good: deploy\\x1b[2K" in render(report, "github")
