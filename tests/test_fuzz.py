"""Fuzzing: malformed inputs never take onnxgate down, counted from outside the process.

Each case builds one damaged input from a real small model made here with a fixed seed
(see ``tests/fuzz_inputs.py``): source files (.skops, .pt2, .keras, xgboost JSON,
lightgbm text), ONNX files, samples, evidence replayed with ``validate --evidence``,
zoo manifests and their ``.tar.gz`` archives for ``zoo verify``, and the gate's TOML.
It runs ``python -m onnxgate`` on it in a subprocess. A handled input ends with exit
0, 1, or 2 with one ``onnxgate: error:`` line; a signal, a traceback or a run longer
than ``CASE_TIMEOUT_S`` is a parent crash, and fails the case.

The default run takes the quick cases (one per target); ``-m slow`` adds the sweep of
every structural mutation plus seeded byte damage. ``ONNXGATE_FUZZ_STATS=FILE`` writes
the figures of :func:`test_fuzz_figures`.

The corpus (``tests/fuzz_corpus/``) keeps cases found by an earlier fuzzer and replays
them in-process; it ships with the model its ONNX files came from
(``source/iris_model.json``: the coefficients, rebuilt into a scikit-learn model here),
so a replay does not depend on how this machine would fit the model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.fuzz_inputs import CASE_TIMEOUT_S, Bases, Outcome, quick_cases, run_case, run_command, signature, sweep_cases

CORPUS = Path(__file__).parent / "fuzz_corpus"
OUTCOMES: dict[str, Outcome] = {}  # case -> outcome, shared by the case tests and the figures


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> Bases:
    return Bases(tmp_path_factory.mktemp("fuzzbases"))


@pytest.fixture(scope="module")
def fuzz_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzzwork")


def outcome_of(case: str, bases: Bases, work: Path) -> Outcome:
    """Run ``case`` once per session; later callers get the same outcome."""
    if case not in OUTCOMES:
        case_dir = work / case.replace("/", "_").replace(":", "_")
        try:
            OUTCOMES[case] = run_case(case, bases, case_dir)
        finally:
            shutil.rmtree(case_dir, ignore_errors=True)
    return OUTCOMES[case]


def assert_handled(o: Outcome) -> None:
    assert o.verdict == "handled", f"parent not clean on {o.summary()}\nstderr:\n{o.err[-3000:]}"


# -- the fuzz cases ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", quick_cases())
def test_fuzz_quick(case, bases, fuzz_work):
    assert_handled(outcome_of(case, bases, fuzz_work))


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in sweep_cases() if c not in quick_cases()])
def test_fuzz_sweep(case, bases, fuzz_work):
    assert_handled(outcome_of(case, bases, fuzz_work))


def fuzz_figures(outcomes: list[Outcome]) -> dict:
    verdicts = Counter(o.verdict for o in outcomes)
    worst = max(outcomes, key=lambda o: o.seconds)
    return {
        "cases": len(outcomes),
        "parent_crashes": sum(o.parent_crash for o in outcomes),
        "crashed_cases": [o.summary() for o in outcomes if o.verdict != "handled"],
        "verdicts": dict(verdicts),
        "distinct_outcomes": len({signature(o) for o in outcomes}),
        "worst_s": round(worst.seconds, 2),
        "worst_case": worst.case,
    }


def test_fuzz_figures(bases, fuzz_work):
    """The quick cases' figures, computed here (reusing outcomes the case tests already have)."""
    figures = fuzz_figures([outcome_of(c, bases, fuzz_work) for c in quick_cases()])
    path = os.environ.get("ONNXGATE_FUZZ_STATS")
    if path:
        Path(path).write_text(json.dumps(figures, indent=1) + "\n")
    assert figures["parent_crashes"] == 0, "parent crashes:\n" + "\n".join(figures["crashed_cases"])
    assert figures["verdicts"].get("handled") == figures["cases"], figures["crashed_cases"]
    assert figures["worst_s"] < CASE_TIMEOUT_S, figures
    assert figures["distinct_outcomes"] >= 5, f"the mutations should reach many different checks: {figures}"


@pytest.mark.parametrize("script, verdict", [
    ("import ctypes; ctypes.string_at(0)", "signal 11"),
    ("raise RuntimeError('boom')", "traceback"),
    ("import sys; print('onnxgate: error: x\\nmore', file=sys.stderr); sys.exit(2)", "noisy error"),
    ("import sys; print('onnxgate: error: bad input (fix it)', file=sys.stderr); sys.exit(2)", "handled"),
])
def test_crash_counting_sees_real_crashes(tmp_path, script, verdict):
    """The classifier that makes the figures counts a real crashed process, so the figure can be non-zero."""
    o = run_command([sys.executable, "-c", script], tmp_path, "self-test")
    assert o.verdict == verdict, o.summary()
    assert o.parent_crash == (verdict in ("signal 11", "traceback")), o.summary()


# -- the corpus -------------------------------------------------------------------------------


def iris_from_source(source: Path):
    """The logistic regression the corpus came from, rebuilt from its stored coefficients."""
    from sklearn.linear_model import LogisticRegression

    doc = json.loads((source / "iris_model.json").read_text())
    model = LogisticRegression()
    model.coef_ = np.array(doc["coef"], dtype=np.float64)
    model.intercept_ = np.array(doc["intercept"], dtype=np.float64)
    model.classes_ = np.array(doc["classes"])
    model.n_features_in_ = doc["n_features"]
    model.n_iter_ = np.array([0], dtype=np.int32)
    return model


@pytest.fixture(scope="module")
def fixed_memory_budget():
    """The same memory budget on every machine, so that the corpus replays with the same exit codes."""
    old = os.environ.get("ONNXGATE_MEMORY_LIMIT")
    os.environ["ONNXGATE_MEMORY_LIMIT"] = "8e9"
    yield
    if old is None:
        os.environ.pop("ONNXGATE_MEMORY_LIMIT", None)
    else:
        os.environ["ONNXGATE_MEMORY_LIMIT"] = old


@pytest.fixture(scope="module")
def corpus_base(tmp_path_factory) -> Path:
    """``{base}`` for the corpus: the shipped model as .skops, its ONNX conversion and samples, made here."""
    import skops.io as sio

    from tests.fuzz_inputs import sklearn_to_onnx, write_samples

    d = tmp_path_factory.mktemp("corpusbase")
    model = iris_from_source(CORPUS / "source")
    sio.dump(model, d / "iris.skops")
    x = np.load(CORPUS / "source" / "x.npy")
    (d / "iris.onnx").write_bytes(sklearn_to_onnx(model, x))
    write_samples(d, x)
    return d


def run_cli(*args: str) -> tuple[int, str, str]:
    """The real entry point, in this process, output captured (the corpus holds only handled cases)."""
    from onnxgate.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["-q", *map(str, args)])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def check_clean(code: int, out: str, err: str, what: str) -> None:
    assert code in (0, 1, 2), (what, code, out, err)
    assert "Traceback" not in err and "Traceback" not in out, (what, err)
    if code == 2:
        lines = [l for l in err.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("onnxgate: error: "), (what, err)


def _corpus_cases() -> list[dict]:
    index = CORPUS / "cases.json"
    return json.loads(index.read_text()) if index.exists() else []


def linear_coefficients(onnx_bytes: bytes) -> tuple | None:
    import onnx
    from onnx import helper

    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception:
        return None
    for node in model.graph.node:
        if node.op_type == "LinearClassifier":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            return tuple(attrs.get("coefficients", ())), tuple(attrs.get("intercepts", ()))
    return None


def test_corpus_ships_with_its_model(corpus_base):
    """The corpus ONNX files hold exactly the coefficients of the shipped model (so replays are hermetic)."""
    ours = linear_coefficients((corpus_base / "iris.onnx").read_bytes())
    found = Counter(linear_coefficients(p.read_bytes()) for p in sorted(CORPUS.glob("*.onnx")))
    found.pop(None, None)
    most_common, count = found.most_common(1)[0]
    assert ours == most_common, "tests/fuzz_corpus/source/iris_model.json is not the model the corpus came from"
    assert count >= 10, found


@pytest.mark.parametrize("case", _corpus_cases(), ids=lambda c: c["label"])
def test_corpus_replays_cleanly(corpus_base, fixed_memory_budget, case):
    """Every kept case gives the same exit code as when it was found, cleanly."""
    files = {name: (CORPUS / stored).read_bytes() for name, stored in case["files"].items()}
    work = Path(tempfile.mkdtemp(prefix="corpus-"))
    try:
        for name, blob in files.items():
            (work / name).write_bytes(blob)
        args = [a.replace("{dir}", str(work)).replace("{base}", str(corpus_base)) for a in case["cmd"]]
        code, out, err = run_cli(*args)
        check_clean(code, out, err, case["label"])
        assert code == case["code"], (case["label"], code, out, err)
    finally:
        shutil.rmtree(work, ignore_errors=True)
