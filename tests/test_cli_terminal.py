"""The terminal (issue 18, items 2 and 3): terse output, -v rows, CLI conventions, error reports on exit 2."""

from __future__ import annotations

import io
import json
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_user_error
from tests.pipelines import models

F32_OPTION = 'OpenVINO:load_config={"CPU":{"INFERENCE_PRECISION_HINT":"f32"}}'


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """A 2-output classifier (label, probabilities), its ONNX file, and the file with one weight scaled by 1.01."""
    import onnx

    from onnxgate.pipelines.run import convert

    d = tmp_path_factory.mktemp("iris")
    src, sample = models.iris(d)
    good = d / "iris.onnx"
    convert(src, good, sample=str(sample)).reference.close()
    model = onnx.load(str(good))
    (coefficients,) = [a for n in model.graph.node for a in n.attribute if a.name == "coefficients"]
    values = list(coefficients.floats)
    values[0] *= 1.01  # one weight
    del coefficients.floats[:]
    coefficients.floats.extend(values)
    bad = d / "iris_bad.onnx"
    onnx.save(model, str(bad))
    return src, sample, good, bad


def test_passing_two_output_model_prints_at_most_six_lines(cli, iris, tmp_path):
    src, sample, _, _ = iris
    paths = {"--report": tmp_path / "r.json", "--markdown": tmp_path / "r.md", "--junit": tmp_path / "r.xml"}
    result = cli("run", src, "--sample", sample, "-o", tmp_path / "out.onnx", *[a for kv in paths.items() for a in kv])
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) <= 6, result.out
    assert lines[0].startswith("PASSED: ")
    assert sum(line.startswith("  ok   label") for line in lines) == 1
    assert sum(line.startswith("  ok   probabilities") for line in lines) == 1
    assert "worst at batch=" in result.out and "6 cases" in result.out
    # the JUnit suite is named after the model, the Markdown states each rule once
    assert [s.get("name") for s in ET.parse(paths["--junit"]).getroot().iter("testsuite")] == ["iris"]
    report = json.loads(paths["--report"].read_text())
    md = paths["--markdown"].read_text()
    rules = {o["rule"] for c in report["cases"] for o in c["outputs"]}
    assert rules and all(md.count(rule.replace("|", "\\|")) == 1 for rule in rules), md


def test_failing_model_puts_the_output_and_localize_first_and_v_adds_rows(cli, iris):
    src, sample, _, bad = iris
    terse = cli("validate", src, bad, "--sample", sample)
    assert terse.code == 1, terse.err
    head = terse.out.splitlines()[:5]
    assert head[0].startswith("FAILED: ")
    assert any(line.startswith("  FAIL probabilities") and "fails in 6/6 cases" in line for line in head), head
    assert any("--localize" in line for line in head), head
    assert sum(line.startswith("  FAIL") for line in terse.out.splitlines()) == 1  # 6 failing cases, one line
    assert "failure:" not in terse.err  # the facts are not printed twice
    assert "batch=15   CPU" not in terse.out

    verbose = cli("validate", src, bad, "--sample", sample, "-v")  # -v after the subcommand
    rows = [line for line in verbose.out.splitlines() if line.startswith("  batch=") and "FAIL probabilities" in line]
    assert len(rows) == 6, verbose.out


def _case_error_report(n: int):
    from onnxgate.judge.report import Case, Report

    message = "ONNX Runtime cannot load the model: Could not find an implementation for Foo(1) node"
    cases = [Case(f"batch={b}", "CPUExecutionProvider", level, {}, error=message, error_kind="load")
             for b in (1, 15, 30) for level in ("disable", "all")][:n]
    report = Report(source="m.skops", framework="sklearn", model={}, inputs={}, tolerances={}, versions={}, cases=cases)
    return report, message


def test_a_real_ort_load_error_is_printed_once(cli, iris, tmp_path):
    """A custom-domain op ONNX Runtime has no kernel for: every case fails to load, one line says so."""
    import onnx
    from onnx import helper

    src, sample, good, _ = iris
    model = onnx.load(str(good))
    (last,) = [n for n in model.graph.node if "probabilities" in n.output]
    last.output[list(last.output).index("probabilities")] = "p0"
    model.graph.node.append(helper.make_node("Foo", ["p0"], ["probabilities"], domain="com.example"))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(model, str(tmp_path / "custom.onnx"))
    result = cli("-q", "validate", src, tmp_path / "custom.onnx", "--sample", sample)
    assert result.code == 1, result.err
    errors = [line for line in result.out.splitlines() if "com.example:Foo" in line]
    assert len(errors) == 1 and errors[0].startswith("  ERROR ONNX Runtime could not load") and "in 6 of 6 cases" in errors[0], result.out


def test_an_ort_load_error_is_printed_once():
    from onnxgate.judge.terminal import summary_lines

    report, message = _case_error_report(6)
    lines = summary_lines(report)
    assert sum(message in line for line in lines) == 1, lines
    assert any(message in line and "in 6 of 6 cases" in line for line in lines), lines
    # and the collapse is not blind: two different errors stay two lines
    report.cases[0].error = "ONNX Runtime crashed"
    errors = [line for line in summary_lines(report) if line.startswith("  ERROR")]
    assert len(errors) == 2 and "in 5 of 6 cases" in errors[1] and "batch=1 on CPU/noopt" in errors[0], errors


def test_global_flags_before_or_after_the_subcommand(cli, tmp_path):
    from onnxgate.cli import build_parser

    parser = build_parser()
    for argv in (["-q", "-v", "--debug", "run", "m.skops"], ["run", "m.skops", "-q", "-v", "--debug"],
                 ["-q", "zoo", "verify", "d", "--debug", "-v"]):
        args, unknown = parser.parse_known_args(argv)
        assert not unknown and args.quiet and args.verbose and args.debug, argv
    args, _ = parser.parse_known_args(["run", "m.skops"])
    assert not (args.quiet or args.verbose or args.debug)
    assert cli("providers", "--json", "-q").code == 0
    # --debug after the subcommand really shows the traceback
    with pytest.raises(Exception, match="does not exist"):
        from onnxgate.cli import main

        main(["validate", str(tmp_path / "a.skops"), str(tmp_path / "b.onnx"), "--debug"])


def test_version(cli):
    from onnxgate import __version__

    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"onnxgate {__version__}"
    assert cli("run", "m.skops", "--version").code == 2  # run's --version is the model version: it needs a value


@pytest.mark.parametrize("argv, fragments", [
    (["run", "m.skops", "--sampel", "x.npy"], ["unrecognized arguments: --sampel", "did you mean --sample?", "'onnxgate run --help'"]),
    (["zoo", "verify", "d", "--jbos", "2"], ["did you mean --jobs?", "'onnxgate zoo verify --help'"]),
    (["rnu", "m.skops"], ["invalid choice: 'rnu'", "did you mean 'run'?"]),
    (["run"], ["'onnxgate run --help'"]),
], ids=["option", "nested", "command", "missing"])
def test_usage_errors_suggest_and_point_to_help(cli, argv, fragments):
    assert_user_error(cli(*argv), *fragments)


def test_no_suggestion_for_a_far_off_option(cli):
    result = cli("run", "m.skops", "--zzzzzz")
    assert_user_error(result, "unrecognized arguments: --zzzzzz", "'onnxgate run --help'")
    assert "did you mean" not in result.err


def test_help_texts_match_the_readme(cli):
    text = cli("run", "--help").out.replace("\n", " ")
    squeezed = "".join(text.split())
    assert "".join(F32_OPTION.split()) in squeezed and "precision=FP32" not in text
    assert F32_OPTION in (ROOT / "README.md").read_text()
    assert "--verbose, -v" in text and "--quiet, -q" in text and "--debug" in text


def test_providers_lists_as_available_only_providers_that_run_a_model(cli):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    listed = {p["name"]: p for p in json.loads(cli("providers", "--json").out)}
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()
    for name, info in listed.items():
        if info["available"] and info["source"] == "built-in":
            assert name in ort.InferenceSession(model, providers=[name]).get_providers()
    if "AzureExecutionProvider" in ort.get_available_providers():  # ORT lists it; it runs no node here
        assert listed["AzureExecutionProvider"]["available"] is False
        assert "remote endpoint" in listed["AzureExecutionProvider"]["reason"]
    assert listed["CPUExecutionProvider"]["available"] is True


def test_run_writes_a_junit_error_named_after_the_model_on_exit_2(cli, tmp_path):
    junit = tmp_path / "out" / "r.xml"
    junit.parent.mkdir()
    result = cli("run", tmp_path / "churn.skops", "--junit", junit)
    assert_user_error(result, "does not exist")
    (suite,) = ET.parse(junit).getroot().iter("testsuite")
    assert suite.get("name") == "churn" and suite.get("errors") == "1"
    assert "does not exist" in suite.find("testcase/error").get("message")
    zoo = cli("zoo", "verify", tmp_path / "hub" / "ONNX_HUB_MANIFEST.json", "--junit", junit)  # zoo verify too
    assert zoo.code == 2 and suite_errors(junit) == {"ONNX_HUB_MANIFEST": "1"}, zoo.err
    # a bad --junit path itself is still one error line, and nothing is written
    bad = cli("run", tmp_path / "churn.skops", "--junit", tmp_path / "nope" / "r.xml")
    assert_user_error(bad)
    assert not (tmp_path / "nope").exists()


def suite_errors(path: Path) -> dict[str, str]:
    return {s.get("name"): s.get("errors") for s in ET.parse(path).getroot().iter("testsuite")}


def test_framework_warnings_go_into_the_report_not_the_terminal(capsys):
    import argparse

    from onnxgate.cli import _attach_warnings, _dispatch
    from onnxgate.judge.terminal import summary_lines

    report, _ = _case_error_report(1)
    args = argparse.Namespace(debug=False, verbose=False)

    def command(ns):
        warnings.warn("The tensor attributes were assigned during export", UserWarning)
        _attach_warnings(report, ns)
        return 0

    assert _dispatch(command, args) == 0
    assert "UserWarning" not in capsys.readouterr().err
    (finding,) = [f for f in report.findings if f.check == "framework-warning"]
    assert finding.message.startswith("UserWarning: The tensor attributes were assigned during export")
    assert not any("tensor attributes" in line for line in summary_lines(report))
    assert any("tensor attributes" in line for line in summary_lines(report, verbose=True))


def test_progress_names_the_model_and_keeps_the_start_line_of_a_step_that_holds_the_gil():
    from onnxgate._progress import StderrProgress, labelled

    stream = io.StringIO()
    progress = labelled(StderrProgress(stream, delay=0.05), "model.keras")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)  # like a C extension holding the GIL: the announcing timer cannot run
    try:
        with progress.step("converting with keras"):
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:
                pass
    finally:
        sys.setswitchinterval(interval)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "onnxgate: [model.keras] converting with keras ...", lines
    assert lines[1].startswith("onnxgate: [model.keras] converting with keras done in")
    assert labelled(progress, "other") is progress  # a labelled progress keeps its label


def test_a_real_run_names_the_model_in_every_progress_line(cli, iris, monkeypatch):
    """Through the CLI, with the announce delay at zero so that every step shows: each progress
    line on stderr carries the model's file name and the step, stdout keeps none of them."""
    import functools

    from onnxgate import _progress

    monkeypatch.setattr(_progress, "StderrProgress", functools.partial(_progress.StderrProgress, delay=0.0))
    src, sample, good, _ = iris
    result = cli("validate", src, good, "--sample", sample)
    assert result.code == 0, result.err
    progress = [line for line in result.err.splitlines() if line.startswith("onnxgate: ")]
    assert progress and all(line.startswith("onnxgate: [iris.skops] ") for line in progress), result.err
    steps = {line.removeprefix("onnxgate: [iris.skops] ").split(" ...")[0].split(" done in")[0] for line in progress}
    assert any(step.startswith("loading") for step in steps) and len(steps) >= 3, steps
    assert "onnxgate: " not in result.out


def test_a_real_framework_warning_in_the_worker_goes_into_the_report(cli, iris, tmp_path):
    """scikit-learn warns when it unpickles an estimator saved by another version (a warning that
    matters: the model may compute something else). It is raised in the framework worker; it lands
    in the report as a finding, is printed only with -v, and never leaks raw onto the terminal."""
    import pickle

    import sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    _, sample, _, _ = iris
    x, y = load_iris(return_X_y=True)
    data = pickle.dumps(LogisticRegression(max_iter=500).fit(x, y))
    now = sklearn.__version__.encode()
    stamp = b"0." + b"0" * (len(now) - 2)  # the same length: the pickle stays valid
    (tmp_path / "old.pkl").write_bytes(data.replace(now, stamp))
    result = cli("run", tmp_path / "old.pkl", "--sample", sample, "--trust-pickle", "--report", tmp_path / "r.json")
    assert result.code == 0, result.err
    assert "unpickle" not in result.out + result.err
    findings = [f["message"] for f in json.loads((tmp_path / "r.json").read_text())["findings"] if f["check"] == "framework-warning"]
    expected = f"InconsistentVersionWarning: Trying to unpickle estimator LogisticRegression from version {stamp.decode()}"
    assert any(m.startswith(expected) for m in findings), findings
    verbose = cli("run", tmp_path / "old.pkl", "--sample", sample, "--trust-pickle", "-v")
    assert expected in verbose.out
