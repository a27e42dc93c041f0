"""The docs' snippets run: every shell block of README.md, docs/ci-integration.md and
docs/releasing.md, the `run:` steps of the GitHub Actions workflow and the `script:` of the GitLab
job, the README's configuration examples, and the Python blocks of README.md and docs/python-api.md.

Shell lines run with bash in a sandbox folder that holds a real model (all-MiniLM-L6-v2 as
`models/` and `path/to/model/`, plus `a.safetensors b.pt c.ckpt`), with this checkout's
`weightlint` on the PATH. What cannot run here is rewritten, and each rewrite is listed below
(``REWRITES``) so that the test says what it did instead:

- ``pip install …`` runs as ``pip install --dry-run --no-deps …``: it resolves exactly the
  requirement written (extras included) without changing the environment the tests run in, which
  those same commands created (CI runs the README's commands verbatim, and installs the built
  wheel into a fresh venv).
- ``.`` and ``git+$WEIGHTLINT_REPO`` (a git URL) point at this local checkout.
- ``--index-url https://download.pytorch.org/whl/cpu``: that host is unreachable here; the package
  registry serves the same CPU build.
- ``python3 -m venv .venv && . .venv/bin/activate``: the environment is the one the tests run in.

Lines that are not run are listed in ``NOT_RUN`` with the reason; any other line that fails, or a
new kind of line, fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
SHELL_DOCS = ("README.md", "docs/ci-integration.md", "docs/releasing.md")
REWRITES = (
    (re.compile(r"python3 -m venv \.venv && \. \.venv/bin/activate && "), ""),
    (re.compile(r"--index-url https://download\.pytorch\.org/whl/cpu"), ""),
    (re.compile(r"\b(python -m )?pip install\b"), "python -m pip install --dry-run --no-deps --quiet"),
    (re.compile(r'(install[^|&]*?) "?\.(\[[\w,]+\])?"?(?=\s|$)'), rf'\1 "{ROOT}\2"'),
    (re.compile(r"-e \"\.(\[[\w,]+\])\""), rf'-e "{ROOT}\1"'),
)
NOT_RUN = {
    "python -m pytest -q": "the test suite itself",
    "python benchmarks/run.py": "a benchmark of several minutes (benchmarks/README.md)",
    "python -m weightlint ...": "a placeholder for any command above",
}
# Documents whose commands run in a copy of this checkout (they build it), not in the model sandbox.
IN_CHECKOUT = ("docs/releasing.md",)
KNOWN_ACTIONS = ("actions/checkout@", "actions/setup-python@", "actions/cache@", "github/codeql-action/upload-sarif@",
                 "actions/upload-artifact@")


def fenced(path: str, language: str) -> list[tuple[int, str]]:
    text = (ROOT / path).read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a shell comment (not inside quotes)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def shell_lines(block: str) -> list[str]:
    """Commands of a shell block: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in (without_comment(raw).strip() for raw in joined.splitlines()) if line]


def rewritten(line: str) -> str:
    for pattern, replacement in REWRITES:
        line = pattern.sub(replacement, line)
    return line


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, minilm):
    folder = tmp_path_factory.mktemp("snippets")
    for name in ("models", "path/to/model", "path"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(minilm, folder / name, dirs_exist_ok=True)
    weight = {"layer.weight": torch.randn(8, 8, generator=torch.Generator().manual_seed(0)) * 0.1}
    save_file(weight, str(folder / "a.safetensors"))
    for step in (100, 200):  # run folders for the training-health commands
        for run in ("run", "checkpoints"):
            (folder / run / f"checkpoint-{step}").mkdir(parents=True)
            save_file({name: tensor * (1 + step / 1e4) for name, tensor in weight.items()},
                      str(folder / run / f"checkpoint-{step}" / "model.safetensors"))
    from tests.adapter_plants import train_adapter

    train_adapter(folder / "my-adapter", folder / "base-model", steps=5)  # for the README's adapter commands
    torch.save(weight, folder / "b.pt")
    torch.save({"state_dict": weight}, folder / "c.ckpt")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "WEIGHTLINT_REPO": f"file://localhost{ROOT}", "GITHUB_STEP_SUMMARY": str(folder / "step-summary.md"),
           "CI_PROJECT_DIR": str(folder), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "NO_COLOR": "1"}
    return folder, env


def run_line(line: str, sandbox, extra_env: dict | None = None, cwd: Path | None = None) -> str:
    """Run one documented command (rewritten as the module docstring says). Returns why a part of
    it was not run ('' when all of it ran)."""
    folder, env = sandbox
    parts = line.split(" && ")
    kept = []
    for part in parts:
        if part in NOT_RUN:
            break
        kept.append(part)
    skipped = parts[len(kept):]
    if kept:
        command = rewritten(" && ".join(kept))
        result = subprocess.run(["bash", "-c", command], cwd=cwd or folder, env={**env, **(extra_env or {})},
                                capture_output=True, text=True, timeout=600)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, (line, output[-2000:])
        # weightlint may exit 1 where the snippet's own gate finds something in the real model (the
        # point of `--fail-on warning`): never 3, 4 or 5. Everything else exits 0.
        allowed = (0, 1) if kept[-1].startswith("weightlint ") else (0,)
        assert result.returncode in allowed, (line, command, result.returncode, output[-2000:])
    return f"not run: {skipped[0]} ({NOT_RUN[skipped[0]]})" if skipped else ""


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory):
    """The files of this checkout (tracked and new, as they are now) in a folder of their own."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path_factory.mktemp("checkout")
    for name in listed:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def test_every_shell_snippet_runs(sandbox, checkout_copy):
    ran, skipped = [], []
    for doc in SHELL_DOCS:
        for line_number, block in fenced(doc, "bash"):
            for line in shell_lines(block):
                reason = run_line(line, sandbox, cwd=checkout_copy if doc in IN_CHECKOUT else None)
                (skipped if reason else ran).append(f"{doc}:{line_number}: {line}" + (f" — {reason}" if reason else ""))
    assert len(ran) == 22, ran  # and the parts before a NOT_RUN command of the lines below
    # Exactly the NOT_RUN parts: the suite (twice), the placeholder, the benchmark.
    assert [entry.split(" — ")[1] for entry in skipped] == [
        "not run: python -m pytest -q (the test suite itself)",
        "not run: python -m weightlint ... (a placeholder for any command above)",
        "not run: python benchmarks/run.py (a benchmark of several minutes (benchmarks/README.md))",
        "not run: python -m pytest -q (the test suite itself)"], skipped
    assert (checkout_copy / "dist").is_dir() and len(list((checkout_copy / "dist").iterdir())) == 2


def test_the_github_actions_workflow_runs(sandbox):
    ((_, block),) = [(n, b) for n, b in fenced("docs/ci-integration.md", "yaml") if "runs-on:" in b]
    workflow = yaml.safe_load(block)
    (job,) = workflow["jobs"].values()
    executed = 0
    for step in job["steps"]:
        if "uses" in step:  # hosted actions: not run here
            assert step["uses"].startswith(KNOWN_ACTIONS), step["uses"]
            continue
        env = {key: str(value) for key, value in step.get("env", {}).items()}
        env["WEIGHTLINT_REPO"] = f"file://localhost{ROOT}"  # the git URL: this checkout instead
        for line in shell_lines(step["run"]):
            assert run_line(line, sandbox, env) == ""
            executed += 1
    assert executed == 3  # two install lines and the lint
    summary = sandbox[0] / "step-summary.md"
    assert summary.is_file() and "weightlint" in summary.read_text()


def test_the_gitlab_job_runs(sandbox):
    ((_, block),) = [(n, b) for n, b in fenced("docs/ci-integration.md", "yaml") if ".gitlab-ci.yml" in b]
    job = yaml.safe_load(block)["weightlint"]
    env = {key: str(value).replace("$CI_PROJECT_DIR", str(sandbox[0])) for key, value in job["variables"].items()}
    env["WEIGHTLINT_REPO"] = f"file://localhost{ROOT}"
    for line in job["script"]:
        assert run_line(line, sandbox, env) == ""
    assert (sandbox[0] / "weightlint-junit.xml").is_file() and (sandbox[0] / "weightlint.json").is_file()


def test_the_readme_configuration_examples_are_valid(tmp_path):
    from weightlint.config import file as configfile
    from weightlint.plugins import build_plugin_manager, collect_rules

    rules = collect_rules(build_plugin_manager())
    configs = [block for _, block in fenced("README.md", "yaml") if not block.startswith("repos:")]
    assert configs
    for index, block in enumerate(configs):
        path = tmp_path / f"weightlint-{index}.yaml"
        path.write_text(block)
        configfile.apply(configfile.load(str(path)), __import__("weightlint").Config(), rules)


def readme_precommit_config() -> dict:
    (block,) = [block for _, block in fenced("README.md", "yaml") if block.startswith("repos:")]
    return yaml.safe_load(block)


def test_the_readme_precommit_hook_is_local_and_matches_the_published_one():
    ((hook,),) = [repo["hooks"] for repo in readme_precommit_config()["repos"]]
    (published,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert readme_precommit_config()["repos"][0]["repo"] == "local"
    assert (hook["id"], hook["files"], hook["require_serial"]) == (published["id"], published["files"], True)
    assert hook["entry"].split() == [published["entry"], *published["args"]]


@pytest.mark.parametrize("doc", ["README.md", "docs/python-api.md"])
def test_python_snippets_run(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = fenced(doc, "python")
    for line_number, block in blocks:
        if "hookimpl" in block:  # a plugin module: defining it is what it does
            exec(compile(block, f"{doc}:{line_number}", "exec"), {})
            continue
        if "callbacks=[WeightlintCallback()]" in block:
            # Needs a model, arguments and data to train: its import runs here, and the callback
            # itself stops a real diverging Trainer run in tests/test_training_health.py.
            first_line = block.splitlines()[0]
            assert first_line == "from weightlint.integrations.transformers import WeightlintCallback"
            exec(compile(first_line, f"{doc}:{line_number}", "exec"), namespace)
            compile(block, f"{doc}:{line_number}", "exec")
            continue
        exec(compile(block, f"{doc}:{line_number}", "exec"), namespace)
    assert blocks
