"""WL807 adapter-executables: pickles or code files shipped next to an adapter."""

import fnmatch
import os

from weightlint import Rule, Severity, hookimpl

CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".sh", ".bash", ".so", ".dll", ".dylib", ".exe", ".bat", ".cmd", ".ps1", ".js")

RULE = Rule(
    code="WL807",
    scope="run",
    adapter_only=True,
    name="adapter-executables",
    severity=Severity.WARNING,
    summary="An adapter folder ships pickles or code files next to its weights.",
    applies_to="PEFT adapters: the other files of the adapter's folder",
    what_it_does="""
Lists the files beside `adapter_config.json` that can run code when loaded or imported: pickles
(`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl` …) and code (`.py`, shell scripts, shared libraries). A
warning for each; an info for the trainer's own state files (`training_args.bin`, `optimizer.pt`,
`scheduler.pt`, `rng_state.pth` …). Their pickles are also scanned for unsafe globals (WL002).
""",
    why_bad="""
An adapter is a safetensors file and a JSON config: nothing in it executes. A pickle beside it
(an `adapter_model.bin` that older loaders prefer, a stray `.pkl`) runs whatever it names when
loaded, and a `.py` file is what `trust_remote_code` imports. Either turns a weights download into
a code download.
""",
    how_to_fix="""
Publish only `adapter_config.json`, `adapter_model.safetensors` and documentation. Delete pickles
and code from the folder before uploading (`save_pretrained` writes neither).
""",
    example="""
import numpy as np
rng = np.random.default_rng(0)
adapter = {"base_model.model.layer.q.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
           "base_model.model.layer.q.lora_B.weight": rng.standard_normal((32, 4)).astype(np.float32)}
adapter_config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"]}
files = {"handler.py": "import os\\n"}
""",
    example_output="""
WL807 warning None: handler.py ships next to the adapter: code that a loader or `trust_remote_code` may run
""",
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_adapter(adapter, context):
    from weightlint.sources import ANY_PICKLE_SUFFIXES, TRAINER_STATE
    from weightlint.sources.base import display_path

    if not context.active(RULE):
        return None
    findings = []
    for name in adapter.beside:
        lower = name.lower()
        file = display_path(os.path.join(adapter.folder, name))
        if lower.endswith(CODE_SUFFIXES):
            findings.append(RULE.finding(f"{name} ships next to the adapter: code that a loader or "
                                         "`trust_remote_code` may run", file=file, kind="code"))
        elif lower.endswith(ANY_PICKLE_SUFFIXES):
            trainer_state = any(fnmatch.fnmatchcase(lower, pattern) for pattern in TRAINER_STATE)
            findings.append(RULE.finding(
                f"{name} ships next to the adapter: " + ("trainer state, a pickle: publish without it" if trainer_state
                                                         else "a pickle, which runs what it names when loaded"),
                file=file, severity=Severity.INFO if trainer_state else None, kind="pickle"))
    return findings
