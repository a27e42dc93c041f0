"""The pre-commit hook, with the real `pre-commit` tool in a temporary git repository."""

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

from tests.test_docs_snippets import readme_precommit_config

ROOT = Path(__file__).parent.parent


def test_hook_definition():
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "weightlint" and hook["language"] == "python" and hook["require_serial"] is True
    pattern = re.compile(hook["files"])
    for name in ("m.safetensors", "pytorch_model.bin", "a.pt", "a.pth", "last.ckpt", "llama.gguf"):
        assert pattern.search(name), name
    for name in ("README.md", "train.py", "config.json"):
        assert not pattern.search(name), name


def _git(repo: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    pre_commit = Path(sys.executable).parent / "pre-commit"
    if not pre_commit.exists():
        pytest.fail("the pre-commit tool is not installed: `pip install -e .[test]` installs it")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # The README's `repo: local` configuration, verbatim (a hook environment could not download torch
    # here; tests/test_docs_snippets.py checks it matches the published hook).
    config = readme_precommit_config()
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    assert _git(repo, "init", "-q", env=env).returncode == 0
    installed = subprocess.run([str(pre_commit), "install"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    _git(repo, "add", ".pre-commit-config.yaml", env=env)
    assert _git(repo, "commit", "-qm", "config", env=env).returncode == 0
    return repo, env


def _checkpoint(path: Path, nan: bool) -> None:
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(0)) * 0.02
    if nan:
        weight[2, 3] = float("nan")
    save_file({"layer.weight": weight, "layer.bias": torch.zeros(16)}, str(path))


def test_commit_with_a_nan_is_refused_and_a_healthy_one_accepted(repo):
    repo, env = repo
    _checkpoint(repo / "broken.safetensors", nan=True)
    _git(repo, "add", "broken.safetensors", env=env)
    refused = _git(repo, "commit", "-m", "add broken", env=env)
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "weightlint" in output and "Failed" in output
    assert "WL100" in output and "layer.weight" in output
    assert _git(repo, "log", "--oneline", env=env).stdout.count("\n") == 1  # nothing was committed

    _git(repo, "rm", "-q", "--cached", "broken.safetensors", env=env)
    _checkpoint(repo / "healthy.safetensors", nan=False)
    _git(repo, "add", "healthy.safetensors", env=env)
    accepted = _git(repo, "commit", "-m", "add healthy", env=env)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "Passed" in accepted.stdout + accepted.stderr
    assert _git(repo, "log", "--oneline", env=env).stdout.count("\n") == 2
