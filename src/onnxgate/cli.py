"""Command line: argument parsing only. Calls the API and maps outcomes to exit codes.

Exit codes: 0 every check passed; 1 a check failed; 2 usage or bad input.
Nothing heavy is imported at module level, so ``onnxgate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TRUST_ENV = "ONNXGATE_TRUST"  # e.g. "pickle,code" for CI jobs that build their own models


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default prints usage too)
        self.exit(EXIT_USAGE, f"onnxgate: error: {message}{_choice_suggestion(message)} (see '{self.prog} --help')\n")


def _choice_suggestion(message: str) -> str:
    """"; did you mean 'run'?" for argparse's "invalid choice: 'rnu' (choose from 'run', ...)"."""
    import difflib
    import re

    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not m:
        return ""
    choices = re.findall(r"'([^']*)'", m.group(2))
    close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _option_suggestions(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> str:
    """"; did you mean --sample?" for each misspelt option (argparse in 3.11 has no suggest_on_error)."""
    import difflib

    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    hints = []
    for arg in unknown:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1, cutoff=0.6)
            hints += [f"{arg.split('=', 1)[0]} -> {close[0]}"] if close else []
    if len(hints) == 1:
        return f"; did you mean {hints[0].split(' -> ')[1]}?"
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command the user ran: ``onnxgate zoo verify`` -> the verify parser."""
    for dest in ("command", "zoo_command"):
        sub = _subparsers(parser).get(getattr(args, dest, None) or "")
        if sub is None:
            return parser
        parser = sub
    return parser


def _add_global_flags(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """-q, -v and --debug on every (sub)parser, so they work before or after the command.

    Below the top, their default is "not given" (SUPPRESS): a subcommand does not reset a flag given before it.
    """
    default: Any = False if top else argparse.SUPPRESS
    group = parser.add_argument_group("global options") if not top else parser
    group.add_argument("--debug", action="store_true", default=default, help="show tracebacks for errors")
    group.add_argument("--quiet", "-q", action="store_true", default=default, help="no progress output on stderr")
    group.add_argument("--verbose", "-v", action="store_true", default=default,
                       help="per-case rows (every batch, provider and optimisation level) and all findings")
    for sub in {id(s): s for s in _subparsers(parser).values()}.values():
        _add_global_flags(sub, top=False)


def _add_report_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("report options", "where the verdict is written")
    group.add_argument("--report", metavar="F.json", help="write the JSON report")
    group.add_argument("--markdown", metavar="F.md", help="write the Markdown report")
    group.add_argument("--junit", metavar="F.xml", help="write a JUnit XML report")
    _add_html_option(group)


def _add_html_option(p: Any) -> None:
    p.add_argument("--html", metavar="F.html", help="write a self-contained HTML report with plots (needs onnxgate[html])")


def _html_path(args: argparse.Namespace) -> Any:
    """``--html``'s path, checked (writable, jinja2 and plotly installed) before any work starts."""
    if args.html is None:
        return None
    from onnxgate._io import check_output_path
    from onnxgate.judge.html.render import check_available

    check_available()
    return check_output_path(args.html, "HTML report")


def _write_html(path: Any, render: str, result: Any) -> None:
    """Render ``result`` with onnxgate.judge.html's ``render`` function into ``path`` (checked earlier)."""
    if path is None:
        return
    from onnxgate import _io
    from onnxgate.judge import html

    _io.write_atomic(path, getattr(html, render)(result))


def _add_settings(p: argparse.ArgumentParser, command: str) -> None:
    """Every stage's options for ``command``, as declared once in onnxgate/settings.py."""
    from onnxgate.settings import add_arguments

    add_arguments(p, command)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onnxgate",
        description="Convert models to ONNX, prove numeric parity under ONNX Runtime, publish only what passed.",
        epilog="Exit codes: 0 passed, 1 a check failed, 2 usage or bad input. Docs: README.md",
    )
    from onnxgate import __version__

    parser.add_argument("--version", action="version", version=f"onnxgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "convert", help="convert a model to ONNX",
        description="Convert SOURCE to ONNX at the requested --opset (or note why not), lower the IR version for "
        "--target-ort, and write OUT.onnx only after onnx.checker and an ONNX Runtime load accept it. Exit 0 written, "
        "1 the converted model failed the checker or the load (nothing written), 2 bad input or flags.",
    )
    p.add_argument("source", help="model file (.skops, .joblib, .pt2, .keras, SavedModel dir) or module:callable")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    _add_settings(p, "convert")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "validate",
        help="compare a source model with an ONNX file on the same inputs",
        usage="%(prog)s [SOURCE] MODEL.onnx [options]  (SOURCE optional with --evidence DIR)",
    )
    p.add_argument("source", nargs="?", help="the original model (omit with --evidence)")
    p.add_argument("model", metavar="MODEL.onnx", nargs="?")
    _add_report_options(p)
    _add_settings(p, "validate")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="convert, validate and report in one step")
    p.add_argument("source")
    p.add_argument("-o", "--output", metavar="OUT.onnx", help="write the ONNX model (only if it passed)")
    _add_report_options(p)
    _add_settings(p, "run")
    p.add_argument("--publish-best", action="store_true", help="write/publish the fastest variant that passes parity (implies --optimize)")
    p.add_argument("--publish", metavar="DIR", help="publish into registry DIR (zoo layout + ONNX_HUB_MANIFEST.json) if it passed")
    p.add_argument("--name", metavar="N", help="model name in the registry (with --publish)")
    p.add_argument("--version", metavar="V", help="model version in the registry (with --publish)")
    p.add_argument("--force", action="store_true", help="with --publish: overwrite an already published version")
    p.add_argument("--tag", action="append", default=[], metavar="T", help="with --publish: manifest tag (repeatable)")
    p.set_defaults(func=cmd_run)

    _add_gate_parser(sub)

    p = sub.add_parser("inspect", help="show an ONNX model's inputs, outputs, opsets and metadata")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("providers", help="list ONNX Runtime execution providers here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--ep-plugin", action="append", default=[], metavar="NAME=LIBRARY_PATH",
                   help="also register this plugin execution provider library (repeatable)")
    p.set_defaults(func=cmd_providers)

    p = sub.add_parser("converters", help="list converter plugins and where they come from")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_converters)

    _add_zoo_parser(sub)

    p = sub.add_parser("demo", help="run the whole pipeline on built-in example models")
    p.add_argument("--workdir", default="demo-out", metavar="DIR")
    p.set_defaults(func=cmd_demo)
    _add_global_flags(parser)
    return parser


# -- commands --------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Any:
    """The stage settings the command line asked for (onnxgate/settings.py)."""
    from onnxgate.settings import Settings

    return Settings.from_namespace(args)


def _progress(args: argparse.Namespace, label: str | None = None) -> Any:
    """Progress on stderr (none with -q); ``label`` names the model in each step: ``[iris.skops] converting ...``."""
    from onnxgate._progress import NullProgress, StderrProgress, labelled

    progress = NullProgress() if args.quiet else StderrProgress()
    return labelled(progress, label) if label else progress


def _label(source: Any) -> str | None:
    """``iris.skops`` for ``models/iris.skops``; ``pkg.mod:build`` as given."""
    from pathlib import PurePath

    if not source:
        return None
    text = str(source)
    return text if ":" in text and not os.path.exists(text) else PurePath(text.rstrip("/")).name


def cmd_convert(args: argparse.Namespace) -> int:
    from onnxgate.pipelines.run import convert

    result = convert(args.source, args.output, _settings(args), progress=_progress(args, _label(args.source)))
    result.reference.close()
    for note in result.conversion.notes:
        if note.startswith(("opset:", "--target-ort")):
            print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.output} ({result.conversion.converter}, {result.seconds:.2f}s)")
    return EXIT_OK


def _report_paths(args: argparse.Namespace) -> dict[str, Any]:
    return {"json": args.report, "markdown": args.markdown, "junit": args.junit, "html": _html_path(args)}


def cmd_validate(args: argparse.Namespace) -> int:
    from onnxgate._io import check_output_path
    from onnxgate.errors import OnnxgateError
    from onnxgate.pipelines.run import validate, write_reports

    source, model = args.source, args.model
    if model is None and args.evidence is not None:  # onnxgate validate MODEL.onnx --evidence DIR
        source, model = None, source
    if model is None:
        raise OnnxgateError(
            "validate needs SOURCE and MODEL.onnx" if source is None else f"validate needs MODEL.onnx after {source!r}",
            "run 'onnxgate validate SOURCE MODEL.onnx', or 'onnxgate validate MODEL.onnx --evidence DIR'",
        )
    paths = {k: check_output_path(v, f"{k} report") for k, v in _report_paths(args).items()}
    report = validate(source, model, _settings(args), progress=_progress(args, _label(source or model)))
    _attach_warnings(report, args)
    write_reports(report, paths)
    _print_summary(report, args)
    return EXIT_OK if report.passed else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    from onnxgate._io import check_output_path
    from onnxgate.pipelines.run import run, write_reports

    _check_publish_args(args)
    paths = {k: check_output_path(v, f"{k} report") for k, v in _report_paths(args).items()}
    report, conv = run(
        args.source, _settings(args), output=args.output, publish_best=args.publish_best,
        progress=_progress(args, _label(args.source)),
    )
    _attach_warnings(report, args)
    write_reports(report, paths)  # after the warnings are in
    _print_summary(report, args)
    if args.output:
        print(f"wrote {args.output}" if report.passed else f"did not write {args.output}: validation did not pass")
        published = report.model.published_variant
        if report.passed and published:
            print(f"  variant written: {published['name']} ({published['bytes']} bytes, sha256 {published['sha256'][:16]}…)")
    if args.publish:
        _publish_run(args, report, conv)
    return EXIT_OK if report.passed else EXIT_FAILED


def _check_publish_args(args: argparse.Namespace) -> None:
    """--publish needs --name and --version; all three are checked before any work."""
    from onnxgate.errors import OnnxgateError

    given = [f for f, v in (("--name", args.name), ("--version", args.version), ("--force", args.force), ("--tag", args.tag)) if v]
    if not args.publish:
        if given:
            raise OnnxgateError(f"{given[0]} only applies with --publish DIR", "add --publish DIR or drop it")
        return
    missing = [f for f, v in (("--name", args.name), ("--version", args.version)) if not v]
    if missing:
        raise OnnxgateError(f"--publish needs {' and '.join(missing)}", "e.g. --publish registry/ --name iris --version 1.0.0")
    if args.publish_best and not args.output:
        raise OnnxgateError("--publish with --publish-best needs -o OUT.onnx", "the chosen variant is published from that file")
    from onnxgate.pipelines.publish import check_target

    check_target(args.publish, args.name, args.version, force=args.force)


def _publish_run(args: argparse.Namespace, report: Any, conv: Any) -> None:
    from pathlib import Path

    from onnxgate.pipelines.publish import publish_report

    if not report.passed:
        print(f"did not publish {args.name} {args.version}: validation did not pass")
        return
    model = Path(args.output).read_bytes() if args.publish_best else conv.model
    pub = publish_report(
        args.publish, name=args.name, version=args.version, model=model, report=report,
        tags=args.tag, force=args.force, progress=_progress(args),
    )
    print(f"published {pub.name} {pub.version} -> {pub.directory}" + (" (replaced)" if pub.replaced else ""))
    print(f"  manifest {pub.manifest}")


def _print_summary(report: Any, args: argparse.Namespace) -> None:
    """Terse: the verdict, one line per output (its worst case), findings; -v adds the per-case rows."""
    from onnxgate.judge.terminal import summary_lines

    print("\n".join(summary_lines(report, verbose=args.verbose)))


def _attach_warnings(report: Any, args: argparse.Namespace) -> None:
    """Framework warnings raised in this process go into the report as info findings (printed only with -v)."""
    from onnxgate.judge.report import Finding

    for text in _warning_lines(args):
        report.findings.append(Finding("info", "framework-warning", text))


def _warning_lines(args: argparse.Namespace) -> list[str]:
    caught = getattr(args, "_warnings", None) or []
    from onnxgate._util import warning_line

    return list(dict.fromkeys(warning_line(w) for w in caught))


def cmd_inspect(args: argparse.Namespace) -> int:
    from onnxgate.pipelines.run import inspect

    info = inspect(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"{info['path']}: {info['bytes']} bytes, sha256 {info['sha256']}")
    print(f"  ir_version {info['ir_version']}, opsets {info['opset_imports']}, producer {info['producer'] or '?'}")
    for kind in ("inputs", "outputs"):
        print(f"  {kind}:")
        for io in info[kind]:
            print(f"    {io['name']}: {io['type']} {io['shape']}")
    print(f"  nodes: {info['nodes']} ({', '.join(f'{k} x{v}' for k, v in info['op_types'].items())})")
    if info["metadata"]:
        print("  metadata:")
        for k, v in info["metadata"].items():
            print(f"    {k}: {v}")
    return EXIT_OK


def cmd_providers(args: argparse.Namespace) -> int:
    from onnxgate.runtime.providers import list_providers, parse_ep_plugins

    infos = list_providers(parse_ep_plugins(args.ep_plugin))
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return EXIT_OK
    for i in infos:
        state = "available" if i.available else f"unavailable: {i.reason}"
        devices = f" devices={i.devices}" if i.devices else ""
        print(f"{i.name:<32} {i.source:<36} {state}{devices}")
    return EXIT_OK


def cmd_converters(args: argparse.Namespace) -> int:
    from onnxgate.converters.base import registry

    infos = registry().info()
    if args.json:
        print(json.dumps([i.__dict__ for i in infos], indent=2))
        return EXIT_OK
    for i in infos:
        extra = f"  ({i.error})" if i.error else ""
        print(f"{i.name:<12} {i.status:<7} {i.value:<48} from {i.distribution}{extra}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from onnxgate._io import write_atomic
    from onnxgate.demo import run_demo

    code = run_demo(args.workdir, progress=_progress(args))
    lines = _warning_lines(args)
    if lines:
        path = Path(args.workdir) / "reports" / "framework-warnings.txt"
        write_atomic(path, "\n".join(lines) + "\n")
        print(f"{len(lines)} framework warning(s) captured in {path}" + ("" if args.verbose else " (-v prints them)"))
        if args.verbose:
            print("\n".join(f"  {line}" for line in lines))
    return code


# -- gate ------------------------------------------------------------------------------


def _add_gate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gate",
        help="CI gate: convert and validate the models a change touched (onnxgate.toml)",
        description="Select models from onnxgate.toml (or [tool.onnxgate] in pyproject.toml), convert, validate, "
        "compare with the published version and optionally publish. Exit 0 all passed, 1 a model failed, 2 bad config.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="changed files (as a pre-commit hook passes them): only their models")
    p.add_argument("--config", metavar="F", help="config file (default: ./onnxgate.toml, else ./pyproject.toml [tool.onnxgate])")
    p.add_argument("--changed-since", metavar="REV", help="only models whose source, sample or table changed in REV...HEAD")
    p.add_argument("--shard", metavar="K/N", help="run the K-th of N deterministic shares (a CI matrix)")
    p.add_argument("--junit", metavar="F.xml", help="write JUnit XML, one testsuite per model")
    p.add_argument("--summary", metavar="F.md", help="write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)")
    p.add_argument("--publish", action="store_true", help="publish passing models into the configured registry")
    p.add_argument("--registry", metavar="DIR", help="registry directory (default: registry under [defaults])")
    p.add_argument("--force", action="store_true", help="with --publish: overwrite already published versions")
    _add_html_option(p)
    _engine_arguments(p)
    p.set_defaults(func=cmd_gate)


def _engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where models run: local worker processes (default), or one Ray task per model (pip install 'onnxgate[ray]')")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="with --engine ray: join this Ray cluster (default: start a local runtime)")


def _engine(args: argparse.Namespace, jobs: int | None = None) -> Any:
    from onnxgate.engines import EngineSettings

    if jobs is None:  # one local worker; a local Ray runtime gets every CPU
        jobs = (os.cpu_count() or 1) if args.engine == "ray" else 1
    return EngineSettings(args.engine, jobs, args.ray_address, getattr(args, "timeout", None))


def cmd_gate(args: argparse.Namespace) -> int:
    from onnxgate._io import check_output_path
    from onnxgate.pipelines.gate import gate

    check_output_path(args.junit, "JUnit report")
    check_output_path(args.summary, "summary")
    html_path = _html_path(args)
    quiet = args.quiet

    def on_result(i: int, n: int, outcome: Any) -> None:
        if not quiet:
            first = (outcome.failures() or [""])[0]
            detail = f": {first}" if outcome.status != "passed" and first else ""
            print(f"onnxgate: gate [{i}/{n}] {outcome.name} {outcome.version}: {outcome.label.upper()} "
                  f"({outcome.seconds:.1f}s){detail}", file=sys.stderr, flush=True)

    result = gate(
        args.config,
        changed_since=args.changed_since,
        files=args.files or None,
        shard=args.shard,
        publish=args.publish,
        registry=args.registry,
        force=args.force,
        progress=_progress(args),
        on_result=on_result,
        engine=_engine(args),
    )
    _write_gate_reports(args, result.to_junit(), result.to_markdown())
    _write_html(html_path, "render_gate", result)
    print("\n".join(gate_lines(result, verbose=args.verbose)))
    return result.exit_code


def gate_lines(result: Any, *, verbose: bool = False) -> list[str]:
    """One line per model (PASSED, WARN, FAILED, ERROR, VACUOUS), then its failures, warnings and notes, each once."""
    from onnxgate.judge.terminal import collapsed

    lines = [f"note: {n}" for n in result.notes]
    if not result.outcomes:
        lines.append(f"no models selected ({len(result.selected)} changed, none in this shard)" if result.selected else "no models changed")
    for o in result.outcomes:
        extra = f", compared with {o.previous}" if o.previous else ""
        extra += f", published to {o.published}" if o.published else ""
        lines.append(f"{o.label.upper():<7} {o.name} {o.version} ({o.why}{extra})")
        lines += collapsed([f"  failure: {line}" for line in o.failures()])
        lines += collapsed([f"  warning: {line}" for line in o.warnings()])
        lines += [f"  note: {note}" for note in o.notes]
        if verbose and o.report is not None:
            from onnxgate.judge.terminal import case_rows

            lines += case_rows(o.report)
    return lines


def _write_gate_reports(args: argparse.Namespace, junit: str, markdown: str) -> None:
    """--junit, --summary and $GITHUB_STEP_SUMMARY: written on every exit, 0, 1 and 2."""
    from onnxgate._io import write_atomic

    if args.junit:
        write_atomic(args.junit, junit)
    if args.summary:
        write_atomic(args.summary, markdown)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as f:
            f.write(markdown)


def _write_error_reports(args: argparse.Namespace, message: str) -> None:
    """On exit 2, a JUnit error testcase (and for the gate its summary), so CI shows a red test, not "no report"."""
    from pathlib import Path

    from onnxgate.judge.report import error_report, junit_xml, suite_name_for

    if getattr(args, "func", None) is cmd_gate:
        name = Path(args.config or "onnxgate.toml").name
        junit = junit_xml([(name, error_report(message))])
        _write_gate_reports(args, junit, f"## onnxgate gate: ERROR\n\n{message}\n")
        return
    path = getattr(args, "junit", None)
    if path and getattr(args, "func", None) in (cmd_run, cmd_validate, cmd_zoo_verify):
        from onnxgate._io import write_atomic

        source = getattr(args, "source", None) or getattr(args, "model", None) or getattr(args, "manifest", None)
        write_atomic(path, junit_xml([(suite_name_for(source), error_report(message, source))]))


def _write_error_html(args: argparse.Namespace, message: str) -> None:
    """On exit 2, ``--html`` still gets a page: the ERROR verdict with the message and its fix at the
    top, so a CI job's report artefact exists and says why nothing was checked."""
    if getattr(args, "html", None) is None:
        return
    from onnxgate.judge.report import error_report

    source = getattr(args, "source", None) or getattr(args, "model", None) or getattr(args, "manifest", None) or getattr(args, "config", None)
    _write_html(_html_path(args), "render_report", error_report(message, None if source is None else str(source)))


# -- zoo -------------------------------------------------------------------------------


def _checked(name: str) -> Any:
    """An argparse type from a settings parser (one rule for a number wherever it is read)."""
    def convert(text: str) -> Any:
        from onnxgate import settings

        try:
            return getattr(settings, name)(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name.strip("_")
    return convert


def _add_zoo_parser(sub: Any) -> None:
    p = sub.add_parser("zoo", help="index, fetch and verify a model zoo (ONNX_HUB_MANIFEST.json)")
    zoo = p.add_subparsers(dest="zoo_command", metavar="VERB", parser_class=_Parser, required=True)

    z = zoo.add_parser("index", help="write an ONNX hub manifest for a directory of */model.onnx + test_data_set_N/")
    z.add_argument("directory", metavar="DIR")
    z.add_argument("-o", "--output", required=True, metavar="ONNX_HUB_MANIFEST.json")
    z.set_defaults(func=cmd_zoo_index)

    def selection(z: argparse.ArgumentParser) -> None:
        z.add_argument("--model", action="append", default=[], metavar="NAME", help="only this model (repeatable)")
        z.add_argument("--tag", action="append", default=[], metavar="T", help="only models with this tag (repeatable)")
        z.add_argument("--cache", metavar="DIR", help="download cache (default: $ONNXGATE_CACHE or ~/.cache/onnxgate)")

    z = zoo.add_parser("fetch", help="download models and their test data into the cache, checked by sha256")
    z.add_argument("manifest", metavar="MANIFEST", help="ONNX_HUB_MANIFEST.json path or URL")
    selection(z)
    z.add_argument("--timeout", type=_checked("_seconds"), metavar="SECONDS",
                   help="give up on a file whose download takes longer in all, retries included (default 600)")
    z.set_defaults(func=cmd_zoo_fetch)

    z = zoo.add_parser("verify", help="fetch and verify models with ONNX Runtime against their stored outputs")
    z.add_argument("manifest", metavar="MANIFEST|DIR", help="manifest path or URL, or a zoo directory")
    selection(z)
    z.add_argument("--jobs", "-j", type=_checked("_jobs"), metavar="N",
                   help="verify in N worker processes (default 1); with --engine ray, the CPUs of the local Ray runtime (default: all)")
    z.add_argument("--in-process", action="store_true", help="verify in this process: faster start, no crash isolation")
    z.add_argument("--timeout", type=_checked("_seconds"), metavar="SECONDS", help="kill and fail a model that takes longer")
    z.add_argument("--report", metavar="F.json", help="write the JSON report")
    z.add_argument("--junit", metavar="F.xml", help="write a JUnit XML report")
    _add_html_option(z)
    _engine_arguments(z)
    z.set_defaults(func=cmd_zoo_verify)


def cmd_zoo_index(args: argparse.Namespace) -> int:
    from onnxgate.model_zoo.zoo import index_zoo

    entries = index_zoo(args.directory, args.output, progress=_progress(args))
    print(f"wrote {args.output} ({len(entries)} models)")
    return EXIT_OK


def cmd_zoo_fetch(args: argparse.Namespace) -> int:
    from onnxgate.model_zoo.zoo import fetch_zoo

    bar = _Bar(args.quiet)
    results = fetch_zoo(args.manifest, models=args.model, tags=args.tag, cache=args.cache, timeout=args.timeout, on_result=lambda r, i, n: bar.update(i, n, r.name))
    bar.close()
    for r in results:
        state = f"error: {r.error}" if r.error else ("cached" if r.cache_hit else "downloaded")
        print(f"{r.name}: {r.path or '-'} ({state})")
    return EXIT_FAILED if any(r.error for r in results) else EXIT_OK


def cmd_zoo_verify(args: argparse.Namespace) -> int:
    from onnxgate._io import check_output_path, write_atomic
    from onnxgate.model_zoo.zoo import verify_zoo

    report_path = check_output_path(args.report, "JSON report")
    junit_path = check_output_path(args.junit, "JUnit report")
    html_path = _html_path(args)
    bar = _Bar(args.quiet)
    engine = _engine(args, args.jobs)
    report = verify_zoo(
        args.manifest, models=args.model, tags=args.tag, jobs=engine.jobs, cache=args.cache,
        in_process=args.in_process, timeout=args.timeout, engine=engine.engine, ray_address=engine.ray_address,
        on_result=lambda r, i, n: bar.update(i, n, f"{r.name}: {r.status}"),
    )
    bar.close()
    if report_path:
        write_atomic(report_path, report.to_json())
    if junit_path:
        write_atomic(junit_path, report.to_junit())
    _write_html(html_path, "render_zoo", report)
    print(report.table(), end="")
    return EXIT_OK if report.passed else EXIT_FAILED


class _Bar:
    """A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, quiet: bool, width: int = 30):
        self.quiet, self.width, self.tty, self.last = quiet, width, sys.stderr.isatty(), -1

    def update(self, done: int, total: int, text: str) -> None:
        if self.quiet or not total:
            return
        filled = self.width * done // total
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {text}"
        if self.tty:
            print(f"\r{line[:120]:<120}", end="", file=sys.stderr, flush=True)
        elif done * 10 // total != self.last or done == total:
            self.last = done * 10 // total
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr, flush=True)


# -- entry point -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        chosen = _chosen(parser, args)
        chosen.error(f"unrecognized arguments: {' '.join(unknown)}{_option_suggestions(chosen, unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return _dispatch(args.func, args)


def _dispatch(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    import warnings

    from onnxgate.errors import OnnxgateError, missing_package

    try:
        with warnings.catch_warnings(record=True) as caught:  # framework warnings go into the report, not the terminal
            warnings.simplefilter("default")
            args._warnings = caught
            return func(args)
    except (OnnxgateError, ModuleNotFoundError) as exc:
        error = exc if isinstance(exc, OnnxgateError) else missing_package(exc)  # an optional framework not installed
        if args.debug or error is None:
            raise
        print(f"onnxgate: error: {error}", file=sys.stderr)
        if error.exit_code == EXIT_USAGE:
            for write in (_write_error_reports, _write_error_html):
                try:
                    write(args, str(error))
                except (OSError, OnnxgateError):  # the report path itself is the problem: the error line says so
                    pass
        return error.exit_code
    except KeyboardInterrupt:
        print("onnxgate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `onnxgate inspect m.onnx | head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
