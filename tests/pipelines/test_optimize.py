"""Optimised variants (--optimize, --publish-best), each validated against the ORIGINAL model.

Real scikit-learn models, real skl2onnx conversions, real ORT offline optimisation,
float16 conversion and dynamic int8 quantisation. A deliberately broken int8 variant
and a deliberately broken float16 variant must be caught and never chosen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings

import numpy as np
import pytest

from onnxgate.pipelines.optimize import INT8_TOLERANCE, best_variant
from onnxgate.judge.compare import compare_outputs
from onnxgate.runtime.runner import create_session
from onnxgate.judge.tolerances import DEFAULTS, TolerancePolicy

FAST = {"benchmark_seconds": 0.02}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    sample = tmp_path_factory.mktemp("opt") / "digits.npy"
    np.save(sample, X[:32].astype(np.float32))
    return X.astype(np.float32), y, sample


def _mlp(X, y):
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: parity, not accuracy, is under test
        return MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0).fit(X, y)


def _int8_breaking(X, y):
    """An MLP whose float function is unchanged but whose int8 quantisation is ruined.

    A pixel that is 0 in every digit gets a weight of 1e4: it never contributes in float,
    but per-tensor int8 quantisation of that weight matrix now has a step of ~80, so every
    real weight (|w| < 1) rounds to zero.
    """
    model = _mlp(X, y)
    dead = int(np.where(X.max(axis=0) == 0)[0][0])
    model.coefs_[0][dead, :] = 1e4
    return model


def test_variants_table_for_an_mlp(digits, tmp_path):
    from onnxgate.pipelines.run import run

    X, y, sample = digits
    paths = {"json": tmp_path / "r.json", "markdown": tmp_path / "r.md"}
    report, _ = run(_mlp(X, y), sample=sample, optimize=True, threads=1, report_paths=paths, **FAST)
    assert report.passed and report.speed is not None  # --optimize implies the speed report
    names = [v.name for v in report.variants]
    assert names == ["converted", "ort-basic", "ort-extended", "float16", "int8-dynamic", "simplified"]
    for name in ("converted", "ort-basic", "ort-extended", "float16", "int8-dynamic"):
        v = report.variants.get(name)
        # int8 kernels differ by CPU (VNNI or not: u8s8 saturation on AVX2), so its verdict may go
        # either way here; it must then agree with its own error (the broken model below must fail)
        assert v.passed or (name == "int8-dynamic" and v.failures()), (name, v.failures())
        assert sorted(v.timings) == [1, 32] and all(t.repetitions >= 10 for t in v.timings.values())
        assert v.size and v.max_abs_error is not None and v.label_agreement is not None
        assert set(v.speedups) == {1, 32}
    assert report.variants.get("ort-basic").optimization == "disable"  # saved graph, run as saved
    int8 = report.variants.get("int8-dynamic")
    probs = [o for c in int8.cases for o in c.outputs if o.name == "probabilities"]
    assert all(o.atol >= INT8_TOLERANCE[0] and "int8" in o.rule for o in probs)
    best = report.variants.best
    assert best is not None and best.passed and best.verdict == "best"
    assert all(v.verdict for v in report.variants)  # every other one says why it lost
    data = json.loads(paths["json"].read_text())
    assert data["variants"]["best"] == best.name and len(data["variants"]["variants"]) == 6
    md = paths["markdown"].read_text()
    int8_cell = "yes" if report.variants.get("int8-dynamic").passed else "**no**"
    assert "## Optimised variants" in md and f"| int8-dynamic | int8 | {int8_cell} |" in md


def test_float16_variant_is_held_to_float16_tolerances(digits):
    """It passes under float16 tolerances, and the same outputs would fail float32's."""
    from onnxgate.pipelines.run import run

    X, y, sample = digits
    report, _ = run(_mlp(X, y), sample=sample, optimize=True, **FAST)
    fp16 = report.variants.get("float16")
    assert fp16.passed, fp16.failures()
    atol, rtol, _ = DEFAULTS["float16"]
    for c in fp16.cases:
        for o in c.outputs:
            if o.kind == "float":
                assert (o.atol, o.rtol) == (atol, rtol) and "float16" in o.rule
    first_case = fp16.cases[0].name
    feeds = dict(__import__("onnxgate.pipelines.run", fromlist=["batch_cases"]).batch_cases({"X": np.load(sample)}))[first_case]
    got = create_session(fp16.data).run(feeds)
    model = _mlp(X, y)
    reference = {"label": model.predict(feeds["X"]), "probabilities": model.predict_proba(feeds["X"])}
    strict = compare_outputs(reference, got, policy=TolerancePolicy(), output_names=["label", "probabilities"])
    assert not next(o for o in strict if o.name == "probabilities").passed


def test_broken_float16_variant_is_caught(digits):
    """An output offset beyond float16's range (65504) breaks only the float16 variant."""
    from sklearn.neural_network import MLPRegressor

    from onnxgate.pipelines.run import run

    X, y, sample = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, random_state=0).fit(X, y.astype(float))
    model.intercepts_[-1] = model.intercepts_[-1] + 1e5
    report, _ = run(model, sample=sample, optimize=True, **FAST)
    assert report.passed  # the float32 model is fine
    fp16 = report.variants.get("float16")
    assert not fp16.passed and fp16.verdict.startswith("failed parity")
    assert report.variants.best is not fp16 and report.variants.best.passed


def test_failed_int8_variant_is_never_published(digits, tmp_path):
    from onnxgate.pipelines.run import run

    X, y, sample = digits
    out = tmp_path / "best.onnx"
    report, conv = run(_int8_breaking(X, y), sample=sample, output=out, publish_best=True, **FAST)
    assert report.passed  # the converted float model still matches the original
    int8 = report.variants.get("int8-dynamic")
    assert int8.data is not None and not int8.passed
    assert int8.label_agreement < 0.9 and int8.verdict.startswith("failed parity with the original")
    best = report.variants.best
    assert best is not int8 and best.passed
    written = out.read_bytes()
    assert written == best.data and written != int8.data
    assert report.model.published_variant == {
        "name": best.name, "sha256": hashlib.sha256(written).hexdigest(), "bytes": len(written)
    }
    # even if it were the fastest by far, a variant that failed parity is not chosen
    batch = report.variants.select_batch
    fastest = dataclasses.replace(int8, timings={b: dataclasses.replace(t, median_ms=1e-9) for b, t in int8.timings.items()})
    others = [v for v in report.variants if v is not int8]
    assert best_variant([fastest, *others], batch=batch) is best


def test_tree_model_variants_say_why_they_were_not_built(digits):
    from sklearn.ensemble import RandomForestClassifier

    from onnxgate.pipelines.run import run

    X, y, sample = digits
    model = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)
    report, _ = run(model, sample=sample, optimize=True, **FAST)
    assert "nothing to convert" in report.variants.get("float16").skipped
    assert "nothing to quantise" in report.variants.get("int8-dynamic").skipped
    for name in ("float16", "int8-dynamic"):
        assert report.variants.get(name).verdict.startswith("not built")
    assert report.variants.best is not None and report.variants.best.precision == "float32"


def test_cli_optimize_and_publish_best(cli, digits, tmp_path):
    import skops.io as sio

    X, y, sample = digits
    src = tmp_path / "mlp.skops"
    sio.dump(_int8_breaking(X, y), src)
    trust = [a for t in sio.get_untrusted_types(file=src) for a in ("--trust-type", t)]
    out, rep = tmp_path / "m.onnx", tmp_path / "r.json"
    result = cli("-q", "run", src, "--sample", sample, *trust, "--publish-best", "-o", out, "--report", rep)
    assert result.code == 0, result.err
    assert "int8-dynamic" in result.out and "FAIL" in result.out and "variant written" in result.out
    data = json.loads(rep.read_text())
    assert data["variants"]["best"] != "int8-dynamic"
    assert data["model"]["published_variant"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
