"""The speed report (--benchmark): real models, real timings; fields and consistency, never speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from onnxgate.diagnose.speed import matched_threads, time_calls


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_breast_cancer(return_X_y=True)
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0, n_jobs=-1).fit(X, y)
    sample = tmp_path_factory.mktemp("speed") / "x.npy"
    np.save(sample, X[:24].astype(np.float32))
    return model, sample


def test_time_calls_measures_the_call():
    t = time_calls(lambda: time.sleep(0.002), batch=1, budget_s=0.02)
    assert t.repetitions >= 10 and t.warmup >= 3
    assert 2.0 <= t.min_ms <= t.median_ms <= t.p90_ms <= t.max_ms


def test_matched_threads_limits_and_restores_the_estimator(forest):
    from threadpoolctl import threadpool_info

    model, _ = forest
    with matched_threads(1, model, "sklearn") as applied:
        assert model.n_jobs == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert model.n_jobs == -1
    assert "n_jobs" in applied["joblib"] and "limits=1" in applied["blas/openmp"]


def test_speed_report_fields_for_a_random_forest(forest, tmp_path):
    from onnxgate.pipelines.run import run

    model, sample = forest
    paths = {"json": tmp_path / "r.json", "markdown": tmp_path / "r.md"}
    report, _ = run(model, sample=sample, benchmark=True, threads=2, benchmark_seconds=0.03, report_paths=paths)
    assert report.passed
    speed = report.speed
    assert speed.framework == "sklearn" and speed.threads == 2
    assert speed.controls["onnxruntime"]["intra_op"].endswith("=2")
    assert "n_jobs=2" in speed.controls["sklearn"]["joblib"]
    assert [r.batch for r in speed.rows] == [1, 24]
    for row in speed.rows:
        for t in (row.original, row.onnxruntime):
            assert t.batch == row.batch and t.repetitions >= 10 and t.warmup >= 3
            assert 0 < t.min_ms <= t.median_ms <= t.p90_ms <= t.max_ms
        assert row.speedup == pytest.approx(row.original.median_ms / row.onnxruntime.median_ms)
    assert model.n_jobs == -1  # the user's estimator is left as it was
    data = json.loads(paths["json"].read_text())
    assert data["speed"]["threads"] == 2 and len(data["speed"]["rows"]) == 2
    assert {"median_ms", "p90_ms", "repetitions", "warmup"} <= set(data["speed"]["rows"][0]["onnxruntime"])
    assert data["variants"] is None
    md = paths["markdown"].read_text()
    assert "## Speed" in md and "| 24 |" in md


def test_no_speed_without_the_flag(forest):
    from onnxgate.pipelines.run import run

    model, sample = forest
    report, _ = run(model, sample=sample)
    assert report.speed is None and report.as_dict()["speed"] is None


def test_a_model_that_does_not_run_is_not_timed(forest, tmp_path):
    """An ONNX file with the wrong feature count errors; the report says why nothing was timed."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from onnxgate.pipelines.run import convert, validate

    model, sample = forest
    X, y = load_breast_cancer(return_X_y=True)
    other = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X[:, :5], y)
    np.save(tmp_path / "x5.npy", X[:4, :5].astype(np.float32))
    convert(other, tmp_path / "wrong.onnx", sample=tmp_path / "x5.npy")
    report = validate(model, tmp_path / "wrong.onnx", sample=sample, benchmark=True, benchmark_seconds=0.02)
    assert report.status == "error" and report.speed is None
    assert any(f.check == "speed" for f in report.findings)


def test_cli_benchmark_flags(cli, forest, tmp_path):
    import skops.io as sio

    model, sample = forest
    src = tmp_path / "rf.skops"
    sio.dump(model, src)
    trust = [a for t in sio.get_untrusted_types(file=src) for a in ("--trust-type", t)]
    out = tmp_path / "r.json"
    result = cli("-q", "run", src, "--sample", sample, *trust, "--benchmark", "--threads", "1", "--report", out)
    assert result.code == 0, result.err
    assert "speedup" in result.out
    assert json.loads(out.read_text())["speed"]["threads"] == 1
    bad = cli("run", src, "--sample", sample, "--threads", "0")
    assert bad.code == 2 and "--threads" in bad.err and "Traceback" not in bad.err


def test_benchmark_needs_the_original(cli, forest, tmp_path):
    from onnxgate.pipelines.run import convert

    model, sample = forest
    convert(model, tmp_path / "m.onnx", sample=sample)
    result = cli("validate", tmp_path / "m.onnx", "--evidence", tmp_path, "--benchmark")
    assert result.code == 2 and "no original model to time" in result.err and "Traceback" not in result.err


def test_sklearn_speed_is_labelled_with_the_calls_it_times(forest):
    """The original's figure says what it times; scikit-learn has no second call path to add."""
    from onnxgate.pipelines.run import run

    model, sample = forest
    report, _ = run(model, sample=sample, benchmark=True, benchmark_seconds=0.02)
    speed = report.speed
    assert speed.reference_call == "predict/predict_proba/transform per output"
    assert all(r.alternatives == {} for r in speed.rows)
    md = "\n".join(speed.markdown())
    assert "| 1 | sklearn predict/predict_proba/transform per output |" in md
    assert "| 1 | onnxruntime InferenceSession.run |" in md


def test_torch_reference_is_labelled_as_the_eager_forward():
    from onnxgate.converters.torch import TorchConverter

    assert TorchConverter.reference_call == "eager forward under torch.no_grad()"


@pytest.mark.slow  # 8-20 s on 2 shared cores: TensorFlow's import and a tf2onnx conversion
def test_keras_speed_times_the_compiled_paths_beside_the_eager_call(tmp_path):
    """The Keras reference is an eager ``model(x)``: mostly call overhead at small batches. The
    compiled ``predict`` path and a ``tf.function`` are timed too, each with its own speedup."""
    pytest.importorskip("tensorflow")
    from onnxgate.converters._tf import import_keras
    from onnxgate.pipelines.run import run

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((6,), name="x"), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, name="out")])
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32))
    paths = {"json": tmp_path / "r.json", "markdown": tmp_path / "r.md"}
    report, _ = run(model, sample=str(tmp_path / "x.npy"), benchmark=True, benchmark_seconds=0.02, report_paths=paths)
    assert report.passed, report.failures()
    speed = report.speed
    assert speed.reference_call == "eager model(x, training=False)"
    for row in speed.rows:
        assert sorted(row.alternatives) == [f"model.predict(x, batch_size={row.batch})", "tf.function(model)(x)"]
        for t in row.alternatives.values():
            assert t.batch == row.batch and t.repetitions >= 10 and 0 < t.median_ms <= t.p90_ms
        compiled = row.alternatives["tf.function(model)(x)"]
        assert row.speedup_over(compiled) == pytest.approx(compiled.median_ms / row.onnxruntime.median_ms)
    data = json.loads(paths["json"].read_text())["speed"]
    assert data["reference_call"] == "eager model(x, training=False)"
    assert set(data["rows"][0]["alternatives"]["tf.function(model)(x)"]) >= {"median_ms", "speedup"}
    md = paths["markdown"].read_text()
    for label in ("keras eager model(x, training=False)", "keras model.predict(x, batch_size=16)", "keras tf.function(model)(x)"):
        assert f"| 16 | {label} |" in md, md
    text = "\n".join(speed.text())
    assert "vs keras tf.function(model)(x)" in text and "vs keras eager model(x, training=False)" in text


def test_an_alternative_call_that_fails_is_reported_not_fatal():
    """A converter's extra call path that raises is listed as not timed; the others are timed."""
    from onnxgate.converters.sklearn import SklearnConverter
    from onnxgate.runtime.framework import _Model, time_alternatives

    class WithPaths(SklearnConverter):
        def speed_calls(self, model, feeds):
            return {"predict": lambda: model.predict(feeds["X"]), "broken": lambda: model.predict(feeds["X"][:, :3])}

    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).standard_normal((8, 4))
    m = _Model(WithPaths(), LinearRegression().fit(x, x[:, 0]), None, {})
    timed, failed = time_alternatives(m, {"X": x}, 8, 0.01)
    assert list(timed) == ["predict"] and timed["predict"]["repetitions"] >= 10
    assert list(failed) == ["broken"] and failed["broken"].startswith("ValueError: X has 3 features")
