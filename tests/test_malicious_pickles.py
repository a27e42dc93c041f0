"""Every sample of the malicious-pickle corpus (tests/malicious_pickles.py) is WL002, never run.

28 callables × protocols 0–5 × five forms (plain, nested in a state dict, inside a torch.save zip,
a legacy torch.save file, a pickle named ``.safetensors``): 840 files in one run. Each must give
exactly one finding, WL002 at error, naming the callable; the marker file a payload would create
must never appear. docs/security.md compares picklescan on the same corpus.
"""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from pathlib import Path

import pytest

import weightlint
from tests.malicious_pickles import CALLABLES, FORMATS, PROTOCOLS, build
from weightlint import Severity
from weightlint.sources.pickle_scan import python3_name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("malicious")
    samples = build(folder, marker=str(folder / "pwned"))
    return folder, samples, weightlint.check(*(sample.path for sample in samples))


def test_the_corpus_is_every_callable_protocol_and_form(corpus):
    _, samples, _ = corpus
    assert len(samples) == len(CALLABLES) * len(PROTOCOLS) * len(FORMATS) == 840
    plain = next(s for s in samples if s.form == "plain" and s.module == "os" and s.protocol == 4)
    assert [op.name for op, _, _ in __import__("pickletools").genops(Path(plain.path).read_bytes())][:4] == [
        "PROTO", "FRAME", "SHORT_BINUNICODE", "SHORT_BINUNICODE"]
    with pytest.raises(pickle.UnpicklingError), warnings.catch_warnings():  # what a user would run refuses it
        warnings.simplefilter("ignore")  # torch warns that protocol 4 is not its default
        __import__("torch").load(plain.path, weights_only=True)


def test_every_sample_is_one_wl002_error_naming_its_callable(corpus):
    folder, samples, report = corpus
    by_file = {}
    for finding in report.findings:
        by_file.setdefault(finding.file, []).append(finding)
    missed = []
    for sample in samples:
        shown = weightlint.sources.display_path(sample.path)
        found = by_file.get(shown, [])
        # Protocols 0-2 name Python 2 modules that Python 3 maps (``__builtin__`` → ``builtins``).
        expected = {python3_name(sample.module, sample.name), f"{sample.module}.{sample.name}"}
        if not (len(found) == 1 and found[0].code == "WL002" and found[0].severity == Severity.ERROR
                and expected & set(found[0].extra["globals"])):
            missed.append((Path(sample.path).name, [(f.code, f.message) for f in found]))
    assert missed == [], "\n".join(f"{name}: {found}" for name, found in missed)
    assert not (folder / "pwned").exists()
    assert Counter(f.code for f in report.findings) == Counter({"WL002": 840})
