"""The keras converter, end to end through the real CLI: real Keras models, real tf2onnx and
Keras exports, real ONNX Runtime sessions. Models are tiny and built once per module."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import assert_user_error, run_onnxgate

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")


@pytest.fixture(scope="module")
def keras():
    from onnxgate.converters._tf import import_keras

    k = import_keras()
    k.utils.set_random_seed(0)
    return k


@pytest.fixture(scope="module")
def demo(tmp_path_factory, keras):
    """The demo's CNN, two-input and LSTM models, trained for one epoch."""
    from onnxgate.demo_keras import build_keras_models

    return build_keras_models(tmp_path_factory.mktemp("keras_demo"), epochs=1)


@pytest.fixture(scope="module")
def extra(tmp_path_factory, keras):
    """Models for the fallback path, dict inputs, Lambda layers and a keras.applications net."""
    root = tmp_path_factory.mktemp("keras_extra")
    seq = keras.Sequential([keras.layers.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3, name="dense_out")])
    seq.save(root / "sequential.keras")

    num, cat = keras.Input((4,), name="num"), keras.Input((6,), name="extra")
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([num, cat]))
    dict_model = keras.Model({"num": num, "extra": cat}, {"score": keras.layers.Dense(2, name="s")(h), "cls": keras.layers.Dense(3, name="c")(h)})
    dict_model.save(root / "dict_io.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "dict_io.npz", num=rng.standard_normal((6, 4)).astype(np.float32), extra=rng.standard_normal((6, 6)).astype(np.float32))

    x = keras.Input((3,), name="x")
    lam = keras.Model(x, keras.layers.Dense(2, name="out")(keras.layers.Lambda(lambda t: t * 2.0, name="double_it")(x)))
    lam.save(root / "lambda.keras")

    net = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    for layer in net.layers:  # weights=None leaves BatchNorm at its init: outputs constant, a vacuous check
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    net(np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32"), training=True)
    net.save(root / "mobilenet_v2.keras")
    return root


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


def _onnx_io(path: Path) -> tuple[dict, list[str]]:
    model = onnx.load(str(path))
    inputs = {i.name: (i.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input}
    return inputs, [o.name for o in model.graph.output]


@pytest.mark.slow  # > 10 s on 2 cores
@pytest.mark.parametrize(
    "name, outputs",
    [("keras_cnn", ["probs"]), ("keras_two_input", ["digit", "ink"]), ("keras_lstm_text", ["logits"])],
)
def test_demo_models_pass_with_names_and_dynamic_batch(cli, demo, tmp_path, name, outputs):
    src, sample = demo[name]
    out, rep = tmp_path / "m.onnx", tmp_path / "r.json"
    result = cli("run", src, "--sample", sample, "-o", out, "--report", rep)
    assert result.code == 0, (result.out, result.err)
    report = _report(rep)
    assert report["framework"] == "keras"
    assert "from_keras" in report["conversion"]["converter"]
    sizes = {case["name"] for case in report["cases"]}
    assert len(sizes) >= 2 and "batch=1" in sizes  # the same file ran at several batch sizes
    assert all(o["passed"] for case in report["cases"] for o in case["outputs"])
    assert sorted({o["name"] for case in report["cases"] for o in case["outputs"]}) == sorted(outputs)
    inputs, got_outputs = _onnx_io(out)
    assert got_outputs == outputs
    assert all(isinstance(shape[0], str) for _, shape in inputs.values()), inputs  # batch dim is symbolic
    if name == "keras_two_input":
        assert sorted(inputs) == ["pixels", "stats"]
    if name == "keras_lstm_text":
        assert inputs["tokens"][0] == onnx.TensorProto.INT32
        assert report["inputs"]["dtypes"] == {"tokens": "int32"}


def test_tampered_onnx_is_caught(cli, demo, tmp_path):
    src, sample = demo["keras_cnn"]
    good = tmp_path / "cnn.onnx"
    assert cli("convert", src, "-o", good, "--sample", sample).code == 0
    model = onnx.load(str(good))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = onnx.numpy_helper.to_array(biggest) * 1.05  # the dense kernel: a 5% larger logit scale
    biggest.CopyFrom(onnx.numpy_helper.from_array(arr, biggest.name))
    bad = tmp_path / "tampered.onnx"
    onnx.save(model, str(bad))
    assert cli("validate", src, good, "--sample", sample).code == 0
    result = cli("validate", src, bad, "--sample", sample)
    assert result.code == 1, (result.out, result.err)
    assert "FAIL" in result.out and "probs" in result.out
    assert "FAIL probs" in result.out  # the failing output's one line names it


def test_fallback_to_keras_export(cli, extra, tmp_path):
    """tf2onnx's from_keras cannot trace this Sequential model; Keras's own export can."""
    rep = tmp_path / "r.json"
    result = cli("run", extra / "sequential.keras", "--report", rep)
    assert result.code == 0, (result.out, result.err)
    conversion = _report(rep)["conversion"]
    assert "export(format='onnx')" in conversion["converter"]
    assert any("from_keras failed" in n for n in conversion["notes"])
    assert any("fallback" in n for n in conversion["notes"])


def test_dict_inputs_and_outputs_keep_their_keys(cli, extra, tmp_path):
    out, rep = tmp_path / "m.onnx", tmp_path / "r.json"
    result = cli("run", extra / "dict_io.keras", "--sample", extra / "dict_io.npz", "-o", out, "--report", rep)
    assert result.code == 0, (result.out, result.err)
    inputs, outputs = _onnx_io(out)
    assert sorted(inputs) == ["extra", "num"]
    assert sorted(outputs) == ["cls", "score"]
    assert {case["name"] for case in _report(rep)["cases"]} >= {"batch=6", "batch=1"}


@pytest.mark.slow  # > 10 s on 2 cores
def test_mobilenet_v2_passes(cli, extra):
    """A keras.applications architecture (weights=None), with inputs synthesised from its signature."""
    result = cli("run", extra / "mobilenet_v2.keras")
    assert result.code == 0, (result.out, result.err)
    assert "predictions" in result.out


def test_lambda_layer_needs_trust_code(cli, extra):
    result = cli("run", extra / "lambda.keras")
    assert_user_error(result, "Lambda", "double_it", "--trust-code")
    trusted = cli("run", extra / "lambda.keras", "--trust-code")
    assert trusted.code == 0, (trusted.out, trusted.err)


def test_corrupt_keras_files(cli, demo, tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip archive")
    assert_user_error(cli("run", garbage), "garbage.keras", "not a valid .keras file")
    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as zf:
        zf.writestr("metadata.json", "{}")
    assert_user_error(cli("run", no_config), "not a valid .keras file")
    out = tmp_path / "never.onnx"
    assert_user_error(cli("convert", garbage, "-o", out))
    assert not out.exists()


def test_sample_that_does_not_fit(cli, demo, tmp_path):
    src, _ = demo["keras_two_input"]
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=np.zeros((2, 64), np.float32), other=np.zeros((2, 4), np.float32))
    assert_user_error(cli("run", src, "--sample", wrong), "stats")
    src, _ = demo["keras_lstm_text"]
    floats = tmp_path / "floats.npy"
    np.save(floats, np.full((2, 20), 0.5))
    assert_user_error(cli("run", src, "--sample", floats), "int32")


def test_legacy_h5_through_tf_keras(cli, tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.layers.InputLayer((5,)), tf_keras.layers.Dense(4, activation="relu"), tf_keras.layers.Dense(2)])
    path = tmp_path / "legacy.h5"
    model.save(path)
    rep = tmp_path / "r.json"
    result = cli("run", path, "--report", rep)
    assert result.code == 0, (result.out, result.err)
    assert "tf-keras" in _report(rep)["versions"]
    x = tf_keras.layers.Input((3,), name="x")
    lam = tf_keras.Model(x, tf_keras.layers.Lambda(lambda t: t + 1.0, name="plus_one")(x))
    lam.save(tmp_path / "lambda.h5")
    assert_user_error(cli("run", tmp_path / "lambda.h5"), "Lambda", "plus_one", "--trust-code")


def test_in_memory_model_and_csv_sample(keras, tmp_path):
    """The Python API takes a Keras model object; a CSV of feature columns feeds a 2-D input."""
    from onnxgate.pipelines.run import run

    model = keras.Sequential([keras.layers.Input((3,), name="features"), keras.layers.Dense(2, name="out")])
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c\n" + "\n".join(f"{i},{i * 0.5},{-i}" for i in range(7)) + "\n")
    report, conv = run(model, sample=str(csv))
    assert report.passed, report.failures()
    assert [i.name for i in conv.model.graph.input] == ["features"]
    assert {c.name for c in report.cases} >= {"batch=7", "batch=1"}


def test_legacy_h5_without_tf_keras_says_what_to_install(tmp_path):
    """In a fresh interpreter where tf_keras cannot be imported."""
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.layers.InputLayer((3,)), tf_keras.layers.Dense(2)])
    path = tmp_path / "legacy.h5"
    model.save(path)
    shim = tmp_path / "shim"
    (shim / "tf_keras").mkdir(parents=True)
    (shim / "tf_keras" / "__init__.py").write_text("raise ImportError('No module named tf_keras')\n")
    result = run_onnxgate("-q", "run", path, env={"PYTHONPATH": f"{shim}:{Path(__file__).resolve().parents[2]}"})
    assert_user_error(result, "legacy.h5", "tf-keras", "pip install tf-keras")


def test_import_is_lazy():
    code = (
        "import sys, onnxgate.converters.keras, onnxgate.converters.tensorflow, onnxgate.demo_keras;"
        "from onnxgate.converters.base import registry; registry().get('keras').accepts('m.keras');"
        "assert not {'tensorflow', 'keras', 'tf2onnx'} & set(sys.modules), sorted(sys.modules)"
    )
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
