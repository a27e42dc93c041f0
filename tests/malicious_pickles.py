"""A corpus of malicious pickles, built the way picklescan's and fickling's test suites build theirs.

Every sample is written opcode by opcode (nothing here imports or calls the callables it names):
a callable that runs code or touches the system, pickled with protocols 0 to 5, alone or nested
inside a healthy-looking state dict, as a plain pickle, inside a torch.save zip, as a legacy
torch.save file, and under misleading names. ``build(folder)`` writes them all and returns
``Sample`` descriptions; tests/test_malicious_pickles.py checks weightlint against them and
benchmarks/picklescan_compare.py runs picklescan on the same files.

The payloads' arguments are harmless markers (``touch <marker>``), so a sample that ever ran would
be seen, not felt.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

# (module, name, why it is dangerous): what picklescan's and fickling's suites and advisories use.
CALLABLES = (
    ("os", "system", "runs a shell command"),
    ("posix", "system", "os.system as it pickles on Linux"),
    ("nt", "system", "os.system as it pickles on Windows"),
    ("subprocess", "Popen", "starts a process"),
    ("subprocess", "check_output", "starts a process"),
    ("builtins", "eval", "evaluates code"),
    ("builtins", "exec", "executes code"),
    ("builtins", "__import__", "imports any module"),
    ("builtins", "getattr", "reaches any attribute (getattr(os, 'system'))"),
    ("builtins", "open", "reads or writes files"),
    ("__builtin__", "eval", "Python 2 name of builtins.eval"),
    ("runpy", "_run_code", "executes code"),
    ("runpy", "run_path", "executes a file"),
    ("importlib", "import_module", "imports any module"),
    ("pickle", "loads", "unpickles a nested payload"),
    ("_pickle", "loads", "unpickles a nested payload"),
    ("torch", "load", "loads a nested checkpoint with its own unpickler"),
    ("numpy", "load", "loads with allow_pickle"),
    ("shutil", "rmtree", "deletes a tree"),
    ("webbrowser", "open", "opens a URL"),
    ("socket", "create_connection", "opens a network connection"),
    ("pty", "spawn", "starts a shell"),
    ("code", "InteractiveInterpreter", "executes code"),
    ("operator", "attrgetter", "reaches any attribute"),
    ("functools", "partial", "calls any callable"),
    ("asyncio.unix_events", "_UnixSubprocessTransport", "starts a process"),
    ("bdb", "Bdb", "runs code under a debugger"),
    ("torch.serialization", "load", "loads a nested checkpoint"),
)
PROTOCOLS = (0, 1, 2, 3, 4, 5)
FORMATS = ("plain", "nested", "torch-zip", "torch-legacy", "misnamed")


@dataclass(frozen=True)
class Sample:
    path: str
    module: str
    name: str
    protocol: int
    form: str


def _string(text: str, protocol: int) -> bytes:
    raw = text.encode()
    if protocol == 0:
        return b"V" + raw + b"\n"
    if protocol < 4:
        return b"X" + struct.pack("<I", len(raw)) + raw
    return b"\x8c" + bytes([len(raw)]) + raw


def _global(module: str, name: str, protocol: int) -> bytes:
    if protocol < 4:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return _string(module, protocol) + _string(name, protocol) + b"\x93"  # STACK_GLOBAL


def call(module: str, name: str, argument: str, protocol: int) -> bytes:
    """Opcodes that push ``module.name(argument)``: GLOBAL (or STACK_GLOBAL), a 1-tuple, REDUCE."""
    return _global(module, name, protocol) + b"(" + _string(argument, protocol) + b"tR"


def pickle_of(body: bytes, protocol: int) -> bytes:
    header = b"" if protocol < 2 else b"\x80" + bytes([protocol])
    if protocol >= 4:
        framed = body + b"."
        return header + b"\x95" + struct.pack("<Q", len(framed)) + framed
    return header + body + b"."


def nested_in_state_dict(payload: bytes, protocol: int) -> bytes:
    """``{"model": {"weight": [1.0], "hook": payload}}``: the payload hides among plain values."""
    key = _string
    return (b"}(" + key("model", protocol) + b"}(" + key("weight", protocol) + b"](G" + struct.pack(">d", 1.0)
            + b"e" + key("hook", protocol) + payload + b"u" + b"u")


def torch_zip_with(data_pkl: bytes) -> bytes:
    """A real torch.save zip whose data.pkl is replaced (members stored, CRCs valid)."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.ones(2, 2)}, buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, data_pkl if info.filename.endswith("/data.pkl") else source.read(info.filename))
    return out.getvalue()


def legacy_torch_with(payload_pickle: bytes) -> bytes:
    """A legacy torch.save layout: the magic-number pickle, the protocol pickle, then the payload."""
    magic = pickle_of(b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little"), 2)
    return magic + pickle_of(b"K\xe9", 2) + payload_pickle


def build(folder: str | Path, marker: str = "pwned") -> list[Sample]:
    """Write every sample into ``folder``; each would create ``marker`` if it ever ran."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for module, name, _why in CALLABLES:
        for protocol in PROTOCOLS:
            argument = f"touch {marker}"
            payload = call(module, name, argument, protocol)
            forms = {
                "plain": (".pkl", pickle_of(payload, protocol)),
                "nested": (".pt", pickle_of(nested_in_state_dict(payload, protocol), protocol)),
                "torch-zip": (".pt", torch_zip_with(pickle_of(payload, max(protocol, 2)))),
                "torch-legacy": (".bin", legacy_torch_with(pickle_of(payload, max(protocol, 2)))),
                "misnamed": (".safetensors", pickle_of(payload, protocol)),
            }
            for form, (suffix, data) in forms.items():
                path = folder / f"{module.replace('.', '_')}-{name}-p{protocol}-{form}{suffix}"
                path.write_bytes(data)
                samples.append(Sample(str(path), module, name, protocol, form))
    return samples
