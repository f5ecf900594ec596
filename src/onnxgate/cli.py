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
        self.exit(EXIT_USAGE, f"onnxgate: error: {message} (see '{self.prog} --help')\n")


def _add_source_options(p: argparse.ArgumentParser, *, sample_help: str = "shared inputs: .npy, .npz, .csv or test_data_set_N/") -> None:
    p.add_argument("--sample", metavar="F", help=sample_help)
    p.add_argument("--framework", metavar="NAME", help="converter to use (default: the one that recognises SOURCE)")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading pickles (.pkl/.joblib), which runs code")
    p.add_argument("--trust-code", action="store_true", help="allow module:callable sources and untrusted types")
    p.add_argument("--trust-type", action="append", default=[], metavar="T", help="trust one type in a .skops file")
    p.add_argument("--double", action="store_true", help="export with float64 inputs instead of float32")
    p.add_argument("--static", action="store_true", help="keep the batch axis fixed at the sample's size (default: dynamic)")


def _add_validate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--atol", type=float, help="absolute tolerance for float outputs (default: by dtype)")
    p.add_argument("--rtol", type=float, help="relative tolerance for float outputs (default: by dtype)")
    p.add_argument("--providers", metavar="all|A,B", help="execution providers to validate on (default: CPU)")
    p.add_argument("--report", metavar="F.json", help="write the JSON report")
    p.add_argument("--markdown", metavar="F.md", help="write the Markdown report")
    p.add_argument("--junit", metavar="F.xml", help="write a JUnit XML report")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onnxgate",
        description="Convert models to ONNX, prove numeric parity under ONNX Runtime, publish only what passed.",
        epilog="Exit codes: 0 passed, 1 a check failed, 2 usage or bad input. Docs: README.md",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("convert", help="convert a model to ONNX")
    p.add_argument("source", help="model file (.skops, .joblib, .pt2, .keras, SavedModel dir) or module:callable")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument("--opset", type=int, help="ONNX opset (default: newest the converter and ONNX Runtime support)")
    _add_source_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("validate", help="compare a source model with an ONNX file on the same inputs")
    p.add_argument("source")
    p.add_argument("model", metavar="MODEL.onnx")
    _add_source_options(p)
    _add_validate_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="convert, validate and report in one step")
    p.add_argument("source")
    p.add_argument("-o", "--output", metavar="OUT.onnx", help="write the ONNX model (only if it passed)")
    p.add_argument("--opset", type=int)
    _add_source_options(p)
    _add_validate_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="show an ONNX model's inputs, outputs, opsets and metadata")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("providers", help="list ONNX Runtime execution providers here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_providers)

    p = sub.add_parser("converters", help="list converter plugins and where they come from")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_converters)

    p = sub.add_parser("demo", help="run the whole pipeline on built-in example models")
    p.add_argument("--workdir", default="demo-out", metavar="DIR")
    p.set_defaults(func=cmd_demo)
    return parser


# -- commands --------------------------------------------------------------------------


def _trust(args: argparse.Namespace) -> Any:
    from onnxgate.trust import from_flags

    return from_flags(pickle=args.trust_pickle, code=args.trust_code, types=args.trust_type)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"double": args.double, "static": args.static}


def _progress(args: argparse.Namespace) -> Any:
    from onnxgate._progress import NullProgress, StderrProgress

    return NullProgress() if args.quiet else StderrProgress()


def cmd_convert(args: argparse.Namespace) -> int:
    from onnxgate.pipelines.run import convert

    result = convert(
        args.source,
        args.output,
        sample=args.sample,
        opset=args.opset,
        framework=args.framework,
        trust=_trust(args),
        options=_options(args),
        progress=_progress(args),
    )
    print(f"wrote {result.output} ({result.conversion.converter}, {result.seconds:.2f}s)")
    return EXIT_OK


def _report_paths(args: argparse.Namespace) -> dict[str, Any]:
    return {"json": args.report, "markdown": args.markdown, "junit": args.junit}


def cmd_validate(args: argparse.Namespace) -> int:
    from onnxgate._io import check_output_path
    from onnxgate.pipelines.run import validate, write_reports

    paths = {k: check_output_path(v, f"{k} report") for k, v in _report_paths(args).items()}
    report = validate(
        args.source,
        args.model,
        sample=args.sample,
        atol=args.atol,
        rtol=args.rtol,
        providers=args.providers,
        framework=args.framework,
        trust=_trust(args),
        options=_options(args),
        progress=_progress(args),
    )
    write_reports(report, paths)
    _print_summary(report)
    return EXIT_OK if report.passed else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    from onnxgate.pipelines.run import run

    report, _ = run(
        args.source,
        output=args.output,
        sample=args.sample,
        opset=args.opset,
        atol=args.atol,
        rtol=args.rtol,
        providers=args.providers,
        framework=args.framework,
        trust=_trust(args),
        options=_options(args),
        report_paths=_report_paths(args),
        progress=_progress(args),
    )
    _print_summary(report)
    if args.output:
        print(f"wrote {args.output}" if report.passed else f"did not write {args.output}: validation did not pass")
    return EXIT_OK if report.passed else EXIT_FAILED


def _print_summary(report: Any) -> None:
    print(f"{report.status.upper()}: {report.source} -> {report.model.get('path') or 'ONNX'} "
          f"(opset {report.model.get('opset')}, {report.seconds:.2f}s)")
    for case in report.cases:
        if case.error:
            print(f"  {case.name:<10} {_short(case.provider):<10} ERROR  {case.error}")
        for o in case.outputs:
            err = "" if o.max_abs_error is None else f"max abs err {o.max_abs_error:.3g}"
            ties = f", {o.ties} tie(s)" if o.ties else ""
            verdict = "ok  " if o.passed else "FAIL"
            print(f"  {case.name:<10} {_short(case.provider):<10} {verdict} {o.name:<16} {err}{ties}")
    for f in report.findings:
        print(f"  check {f.check}: {f.level}: {f.message}")
    for line in report.failures():
        print(f"  failure: {line}", file=sys.stderr)


def _short(provider: str) -> str:
    return provider.replace("ExecutionProvider", "")


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
    from onnxgate.validation.providers import list_providers

    infos = list_providers()
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
    from onnxgate.demo import run_demo

    return run_demo(args.workdir, progress=_progress(args))


# -- entry point -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return _dispatch(args.func, args)


def _dispatch(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from onnxgate.errors import OnnxgateError

    try:
        return func(args)
    except OnnxgateError as exc:
        if args.debug:
            raise
        print(f"onnxgate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("onnxgate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `onnxgate inspect m.onnx | head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
