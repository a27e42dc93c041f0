"""The command line: ``weightlint PATH...`` (short for ``weightlint check``), ``demo``, ``rules``,
``explain``. Exit codes are pytest's (see :class:`weightlint.ExitCode`).

Only argparse is imported at start-up; torch and the rules load when a command needs them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections import Counter
from typing import Any, Sequence

from weightlint._version import __version__
from weightlint.exitcodes import ExitCode

COMMANDS = ("check", "diff", "watch", "plan", "demo", "rules", "explain")
FORMATS = ("text", "json", "junit", "sarif", "github", "markdown", "html")
RULE_FORMATS = ("text", "json")
# What the HTML report draws for every matrix, whatever rules are selected (reporters/html.py GROUPS).
HTML_GROUPS = ("spectral", "quantization", "sketch")
# Side outputs: written next to the main output, whatever its format (as pytest's --junitxml).
SIDE_OUTPUTS = (("--junit-xml", "junit_xml", "junit"), ("--json", "json_file", "json"),
                ("--sarif", "sarif_file", "sarif"), ("--markdown", "markdown_file", "markdown"),
                ("--html", "html_file", "html"))


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; pytest's convention (and ours) is 4. No abbreviated options:
    ``--base`` must never be read as ``--baseline`` or ``--base-model``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE_ERROR), f"{self.prog}: error: {message}\n")


def _split(values: list[str] | None) -> list[str]:
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="output format: text, json, junit (JUnit XML), sarif (SARIF 2.1.0), github "
                             "(GitHub Actions annotations), markdown (default: text)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    side = parser.add_argument_group("side outputs", "extra reports written to files, with any --format")
    side.add_argument("--junit-xml", "--junitxml", dest="junit_xml", metavar="FILE", help="also write JUnit XML to FILE")
    side.add_argument("--json", dest="json_file", metavar="FILE", help="also write the JSON report to FILE")
    side.add_argument("--sarif", dest="sarif_file", metavar="FILE", help="also write SARIF 2.1.0 to FILE")
    side.add_argument("--html", dest="html_file", metavar="FILE",
                      help="also write the HTML report to FILE (one self-contained page; plots with weightlint[html])")
    side.add_argument("--markdown", dest="markdown_file", metavar="FILE",
                      help="also write the Markdown summary to FILE (e.g. \"$GITHUB_STEP_SUMMARY\")")
    parser.add_argument("--profile", choices=("default", "guide"), default=None,
                        help="threshold profile: default (calibrated on real models) or guide (the guide's literal "
                             "thresholds and score)")
    parser.add_argument("--fail-on", choices=("info", "warning", "error"), default=None,
                        help="exit 1 when a finding is at or above this severity (default: error)")
    parser.add_argument("--exit-zero", action="store_true", default=None,
                        help="exit 0 even with findings (usage and internal errors still exit 4 and 3)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default: auto = cuda when available)")
    parser.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                        help="tensors checked in parallel (default: one per two cores, 2 on CUDA; the cores' "
                             "BLAS threads are shared out among the jobs)")
    parser.add_argument("--executor", choices=("local", "ray"), default=None,
                        help="where the work runs: local (default) or ray (a Ray cluster: a task per file, per pair "
                             "of shards for diff, per checkpoint for watch; pip install \"weightlint[ray]\")")
    parser.add_argument("--ray-address", metavar="ADDR", default=None,
                        help="the Ray cluster to use (default: $RAY_ADDRESS, else 'local', a cluster on this machine)")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: the nearest weightlint.yaml, .weightlint.yaml or "
                             "pyproject.toml [tool.weightlint] from the working directory upwards)")
    parser.add_argument("--isolated", action="store_true", help="ignore every configuration file")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not read or write the cache of model skeletons built from config.json "
                             "(default: $WEIGHTLINT_CACHE_DIR, else ~/.cache/weightlint)")
    parser.add_argument("--baseline", metavar="FILE", default=None,
                        help="report only findings that are not in this baseline (rule, file name, tensor)")
    parser.add_argument("--plan", metavar="PLANS", default=None,
                        help="add plans to the JSON report: quant, lowrank or quant,lowrank (as `weightlint plan`)")
    parser.add_argument("--base-model", metavar="PATH", default=None,
                        help="the model a PEFT adapter applies to: check shapes against it and judge each "
                             "update relative to the weight it modifies (read one tensor at a time)")
    parser.add_argument("--write-baseline", metavar="FILE",
                        help="record the findings of this run as a baseline and exit 0")
    parser.add_argument("-p", dest="plugins", action="append", default=[], metavar="NAME",
                        help="load plugin module NAME; -p no:NAME disables a plugin or rule (code or name)")
    parser.add_argument("--select", action="append", metavar="CODES",
                        help="only these rules: codes, code prefixes (WL1) or names, comma-separated")
    parser.add_argument("--extend-select", action="append", metavar="CODES", help="add rules to the selection")
    parser.add_argument("--ignore", action="append", metavar="CODES", help="skip these rules")
    parser.add_argument("-q", "--quiet", action="store_true", help="no header and no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list tensors without findings")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the text output (auto: on a terminal, unless NO_COLOR is set)")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of an internal error")


EMIT_FORMATS = ("json", "transformers", "llmcompressor", "torchao", "llamacpp")


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="checkpoint files or model folders")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the plan to FILE instead of stdout")
    parser.add_argument("--profile", choices=("default", "guide"), default=None,
                        help="decision tree and thresholds: default (calibrated) or guide (the guide's literal tree)")
    parser.add_argument("--config", metavar="FILE", help="configuration file (its plan: and rules: tables)")
    parser.add_argument("--isolated", action="store_true", help="ignore every configuration file")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda")
    parser.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="matrices measured in parallel")
    parser.add_argument("-p", dest="plugins", action="append", default=[], metavar="NAME")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="weightlint", description="A pytest-style health linter for neural-network weights.",
                     epilog="`weightlint PATH...` is short for `weightlint check PATH...`. "
                            "Exit codes: 0 ok, 1 findings, 2 interrupted, 3 internal error, 4 usage error, "
                            "5 no tensors found.")
    parser.add_argument("-V", "--version", action="version", version=f"weightlint {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    check = commands.add_parser("check", help="lint checkpoints (files or folders)")
    check.add_argument("paths", nargs="*", default=["."], help="checkpoint files or model folders (default: .)")
    _add_check_options(check)
    demo = commands.add_parser("demo", help="write a small GPT-2-shaped checkpoint with planted defects and lint it")
    demo.add_argument("--dir", help="where to write the demo checkpoint (default: a new temporary folder)")
    _add_check_options(demo)
    diff = commands.add_parser("diff", help="compare two checkpoints of one model, tensor by tensor (training health)")
    diff.add_argument("old", help="the earlier checkpoint (a file, folder or shard index)")
    diff.add_argument("new", help="the later checkpoint")
    diff.add_argument("--no-spectra", action="store_true",
                      help="skip the condition numbers (WL703): a single pass over the data")
    _add_check_options(diff)
    watch = commands.add_parser("watch", help="compare each checkpoint of a training run with the one before")
    watch.add_argument("paths", nargs="+", help="run folders holding checkpoints (checkpoint-200/, step_100.pt …), "
                                                 "or the checkpoints themselves")
    watch.add_argument("--spectra", action="store_true",
                       help="also compare condition numbers (WL703) and trend stable ranks: an SVD per matrix")
    watch.add_argument("--exact", action="store_true",
                       help="read both checkpoints of each pair for an exact relative change (default: each "
                            "checkpoint read once, the relative change estimated from a summary of the one before)")
    watch.add_argument("--follow", action="store_true",
                       help="keep watching for new checkpoints (until --timeout or Ctrl-C), then report")
    watch.add_argument("--timeout", type=float, metavar="SECONDS", help="with --follow: stop after this long")
    _add_check_options(watch)
    plan = commands.add_parser("plan", help="plans to apply: quantization per matrix, low-rank factorization")
    kinds = plan.add_subparsers(dest="plan", parser_class=_Parser, required=True)
    quant = kinds.add_parser("quant", help="per weight matrix: int8 per tensor or per channel, int16, or keep 16-bit")
    quant.add_argument("--emit", choices=("text", *EMIT_FORMATS), default="text",
                       help="text (default), json (the guide's lists), transformers (llm_int8_skip_modules), "
                            "llmcompressor (a recipe), torchao (a filter_fn), llamacpp (--tensor-type lines)")
    lowrank = kinds.add_parser("lowrank", help="per weight matrix: the smallest rank within WL401's max_relative_error")
    lowrank.add_argument("--emit", choices=("text", "json"), default="text", help="text (default) or json")
    for kind in (quant, lowrank):
        _add_plan_options(kind)
    rules = commands.add_parser("rules", help="list every rule")
    rules.add_argument("--format", choices=RULE_FORMATS, default="text")
    rules.add_argument("-p", dest="plugins", action="append", default=[], metavar="NAME")
    explain = commands.add_parser("explain", help="print a rule's documentation")
    explain.add_argument("code", help="rule code (WL101) or name (ill-conditioned)")
    explain.add_argument("--format", choices=RULE_FORMATS, default="text")
    explain.add_argument("-p", dest="plugins", action="append", default=[], metavar="NAME")
    return parser


def _normalize(argv: list[str]) -> list[str]:
    if not argv or argv[0] in ("-h", "--help", "-V", "--version") or argv[0] in COMMANDS:
        return argv if argv else ["check"]
    return ["check", *argv]


def _print_checkpoint(checkpoint: Any, report: Any) -> None:
    """``watch --follow``: one line per checkpoint as soon as it is linted."""
    counts = Counter(str(finding.severity) for finding in report.findings)
    found = ", ".join(f"{count} {severity}" for severity, count in sorted(counts.items())) or "no findings"
    print(f"weightlint: {checkpoint.name} (step {checkpoint.step}): {found}", file=sys.stderr, flush=True)


def _use_color(choice: str, stream) -> bool:
    if choice != "auto":
        return choice == "always"
    # https://no-color.org: NO_COLOR set to a non-empty value disables colour.
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def _config(args):
    """Settings from the command line; ``explicit`` names those the user gave, which the
    configuration file must not override."""
    from weightlint.config import Config
    from weightlint.finding import Severity

    config = Config(plugins=list(args.plugins))
    given = {"fail_on": args.fail_on, "device": args.device, "exit_zero": args.exit_zero, "baseline": args.baseline,
             "base_model": getattr(args, "base_model", None), "executor": getattr(args, "executor", None),
             "ray_address": getattr(args, "ray_address", None),
             "jobs": args.jobs, "profile": args.profile}
    for name, value in given.items():
        if value is not None:
            setattr(config, name, Severity.parse(value) if name == "fail_on" else value)
            config.explicit.add(name)
    if args.select:
        config.select = _split(args.select)
        config.explicit.add("select")
    if args.extend_select:
        config.extend_select = _split(args.extend_select)
        config.explicit.add("extend_select")
    if args.ignore:
        config.ignore = _split(args.ignore)
        config.explicit.add("ignore")
    return config


class _Progress:
    """A tqdm bar on stderr for terminals; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __call__(self, record, position: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="param", unit_scale=True, file=sys.stderr, leave=False,
                            dynamic_ncols=True, desc="weightlint")
        self.bar.n = position
        self.bar.set_postfix_str(record.name[-40:] if record is not None else "", refresh=True)
        if record is None:
            self.bar.close()


def _write(text: str, output: str | None, option: str = "--output") -> None:
    if output:
        from weightlint.execution.errors import UsageError

        try:
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            with open(output, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
        except OSError as error:  # a bad --output is the user's to fix, not an internal error
            raise UsageError(f"{option} {output}: {error.strerror or error}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _side_outputs(args) -> list[tuple[str, str, str]]:
    """(option, format, file) of every side output asked for; two outputs on one file are a usage error."""
    from weightlint.execution.errors import UsageError

    wanted = [(option, fmt, getattr(args, dest)) for option, dest, fmt in SIDE_OUTPUTS if getattr(args, dest, None)]
    seen: dict[str, str] = {os.path.abspath(args.output): "--output"} if args.output else {}
    for option, _fmt, file in wanted:
        other = seen.setdefault(os.path.abspath(file), option)
        if other != option:
            raise UsageError(f"{option} {file}: the same file as {other}")
    return wanted


def run_plan(args) -> int:
    """``plan quant`` / ``plan lowrank``: measure every matrix once and write the plan."""
    from weightlint.config import Config
    from weightlint.config import file as configfile
    from weightlint.execution.session import Session
    from weightlint.plans.emit import emit
    from weightlint.plans.text import render_plan

    config = Config(plugins=list(args.plugins), select=["WL0"])  # the plan, not the rules' findings
    config.explicit.update({"select"})
    for name in ("profile", "device", "jobs"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
            config.explicit.add(name)
    raw = configfile.resolve(args.config, args.isolated)
    report = Session(list(args.paths), config, config_file=raw, plans=(args.plan,)).run()
    plan = report.plans.get(args.plan)
    if plan is None:
        return int(ExitCode.INTERRUPTED)
    if args.emit == "text":
        text = render_plan(plan, report)
    elif args.plan == "lowrank":
        from weightlint.finding import json_safe

        text = json.dumps(json_safe(plan.to_json()), indent=2, allow_nan=False) + "\n"
    else:
        text = emit(plan, args.emit, report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    broken = [f for f in report.findings if f.code.startswith("WL0") and f.severity.name == "ERROR"]
    for finding in broken:
        print(f"weightlint: {finding.file}: {finding.message}", file=sys.stderr)
    return int(ExitCode.FINDINGS if broken else ExitCode.OK)


def run_check(args, targets: Sequence[str], compare_with: str | None = None, watch: bool = False) -> int:
    """``check`` (and ``demo``) on ``targets``, ``diff`` of ``compare_with`` (old) and ``targets``
    (new), or ``watch`` of the run folders ``targets``."""
    from weightlint.config import file as configfile
    from weightlint.reporters import render

    config = _config(args)
    raw = configfile.resolve(args.config, args.isolated)
    if getattr(args, "no_cache", False):
        from weightlint import architecture

        architecture.CACHE_ENABLED = False
    side_outputs = _side_outputs(args)
    if watch:
        from weightlint.diff.watch import Watch

        session = Watch(targets, config, config_file=raw, spectra=args.spectra, follow=args.follow,
                        timeout=args.timeout, exact=args.exact,
                        on_checkpoint=_print_checkpoint if args.follow and not args.quiet else None)
    elif compare_with is not None:
        from weightlint.diff.engine import DiffSession

        session = DiffSession([compare_with], list(targets), config, config_file=raw,
                              spectra=not args.no_spectra)
    else:
        from weightlint.execution.session import Session

        progress = _Progress(enabled=not args.quiet and args.format == "text" and sys.stderr.isatty())
        html = "html" in (args.format, *(fmt for _, fmt, _ in side_outputs))
        session = Session(list(targets), config, progress=progress, config_file=raw,
                          plans=_split([args.plan]) if getattr(args, "plan", None) else (),
                          extra_groups=HTML_GROUPS if html else ())
    report = session.run()
    if args.write_baseline:
        from weightlint.baseline import write_baseline

        count = write_baseline(args.write_baseline, report.findings + report.baselined)
        print(f"weightlint: recorded {count} finding{'s' if count != 1 else ''} in the baseline "
              f"{args.write_baseline}; later runs with --baseline {args.write_baseline} report only new ones "
              "(this run exits 0)", file=sys.stderr)
    to_terminal = args.output is None
    text = render(report, args.format, color=to_terminal and _use_color(args.color, sys.stdout),
                  verbose=args.verbose, quiet=args.quiet)
    # Every report is written whatever the exit code (--exit-zero included); the code never depends
    # on the formats.
    for option, fmt, file in side_outputs:
        _write(render(report, fmt), file, option)
    _write(text, args.output)
    if report.interrupted:
        print("!!! interrupted: the report covers the tensors checked so far !!!", file=sys.stderr)
    if args.write_baseline and not report.interrupted:
        # Recording is the job of this run: it succeeds whatever it recorded (an interrupted run
        # recorded only part of the findings, and says so with exit 2).
        return int(ExitCode.OK)
    return int(report.exit_code)


def run_demo(args) -> int:
    from weightlint.demo import write_demo_checkpoint

    folder = write_demo_checkpoint(args.dir)
    print(f"wrote a GPT-2-shaped demo checkpoint with planted defects to {folder}\n", file=sys.stderr)
    code = run_check(args, [folder])
    print(f"\nweightlint {folder} exits {code} on this checkpoint; the demo itself exits 0."
          f" Try: weightlint {folder} --format json", file=sys.stderr)
    return 0 if code in (ExitCode.OK, ExitCode.FINDINGS) else code


def _all_rules(plugins):
    from weightlint.plugins import build_plugin_manager, collect_rules

    return collect_rules(build_plugin_manager(plugins))


def run_rules(args) -> int:
    rules = _all_rules(args.plugins)
    if args.format == "json":
        print(json.dumps([rule.to_dict() for rule in rules.values()], indent=2))
        return 0
    for rule in rules.values():
        thresholds = ", ".join(f"{k}={v}" for k, v in rule.thresholds.items())
        print(f"{rule.code}  {rule.name:<22} {str(rule.severity):<8} {rule.summary}"
              + (f" [{thresholds}]" if thresholds else ""))
    return 0


def run_explain(args) -> int:
    rules = _all_rules(args.plugins)
    wanted = args.code.strip()
    rule = rules.get(wanted.upper()) or next((r for r in rules.values() if r.name == wanted.lower()), None)
    if rule is None:
        names = list(rules) + [r.name for r in rules.values()]
        close = difflib.get_close_matches(wanted.upper() if wanted.upper().startswith("WL") else wanted.lower(),
                                          names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `weightlint rules` lists them"
        print(f"weightlint explain: unknown rule {wanted!r}{hint}", file=sys.stderr)
        return int(ExitCode.USAGE_ERROR)
    if args.format == "json":
        print(json.dumps({**rule.to_dict(), "documentation": rule.documentation()}, indent=2))
    else:
        print(rule.documentation(), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code (argparse's own exits included: --help and
    --version return 0, a usage error returns 4), so that ``main([...])`` never raises SystemExit."""
    try:
        args = build_parser().parse_args(_normalize(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else int(ExitCode.USAGE_ERROR))
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("!!! interrupted !!!", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, the right code
        return _handle_error(error, getattr(args, "traceback", False))


def _dispatch(args) -> int:
    if args.command == "demo":
        return run_demo(args)
    if args.command == "rules":
        return run_rules(args)
    if args.command == "explain":
        return run_explain(args)
    if args.command == "plan":
        return run_plan(args)
    if args.command == "diff":
        return run_check(args, [args.new], compare_with=args.old)
    if args.command == "watch":
        return run_check(args, args.paths, watch=True)
    return run_check(args, args.paths)


def _handle_error(error: Exception, show_traceback: bool) -> int:
    from weightlint.baseline import BaselineError
    from weightlint.config.file import ConfigError
    from weightlint.execution.errors import UsageError
    from weightlint.plugins import PluginError

    if isinstance(error, (UsageError, PluginError, ConfigError, BaselineError)):
        print(f"weightlint: error: {error}", file=sys.stderr)
        return int(ExitCode.USAGE_ERROR)
    if show_traceback:
        import traceback

        traceback.print_exception(error)
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())  # one line
    print(f"weightlint: INTERNAL ERROR: {type(error).__name__}: {message}"
          + ("" if show_traceback else " (run with --traceback for details)"), file=sys.stderr)
    return int(ExitCode.INTERNAL_ERROR)
