"""The tensorflow converter: real SavedModels (a tf.Module and a Keras export), real tf2onnx,
real ONNX Runtime; signatures, bad directories and a tampered ONNX file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import assert_user_error, run_onnxgate

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """The demo's tf.Module SavedModel: signatures serving_default (label, logits, probs) and embed."""
    from onnxgate.demo_keras import build_tf_module

    return build_tf_module(tmp_path_factory.mktemp("tf_module"))


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory):
    """A SavedModel written by Keras's model.export() (signatures serve and serving_default)."""
    from onnxgate.converters._tf import import_keras
    from onnxgate.demo_keras import keras_cnn

    keras = import_keras()
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("keras_export") / "cnn_savedmodel"
    keras_cnn(keras).export(str(path), verbose=False)
    return path


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_serving_default_keeps_signature_names(cli, scorer, tmp_path):
    path, sample = scorer
    out, rep = tmp_path / "m.onnx", tmp_path / "r.json"
    result = cli("run", path, "--sample", sample, "-o", out, "--report", rep)
    assert result.code == 0, (result.out, result.err)
    report = _report(rep)
    assert report["framework"] == "tensorflow"
    assert "signature: serving_default" in report["conversion"]["notes"]
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["features"]
    assert sorted(o.name for o in model.graph.output) == ["label", "logits", "probs"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    cases = report["cases"]
    assert {c["name"] for c in cases} == {"batch=30", "batch=1", "batch=15"}
    assert all(o["passed"] for c in cases for o in c["outputs"])
    assert {o["name"] for c in cases for o in c["outputs"]} == {"label", "logits", "probs"}


def test_named_signature(cli, scorer, tmp_path):
    path, sample = scorer
    out = tmp_path / "embed.onnx"
    result = cli("run", path, "--sample", sample, "--signature", "embed", "-o", out)
    assert result.code == 0, (result.out, result.err)
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["embedding"]


def test_missing_signature_lists_the_available_ones(cli, scorer):
    path, sample = scorer
    result = cli("run", path, "--sample", sample, "--signature", "predict")
    assert_user_error(result, "'predict'", "['embed', 'serving_default']", "--signature")


def test_directory_that_is_not_a_saved_model(cli, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a model")
    assert_user_error(cli("run", plain, "--framework", "tensorflow"), "not a TensorFlow SavedModel", "saved_model.pb")
    assert_user_error(cli("run", plain), "no installed converter recognises")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\x00\x01 definitely not a protobuf")
    assert_user_error(cli("run", broken), "SavedModel")


def test_tampered_onnx_is_caught(cli, scorer, tmp_path):
    path, sample = scorer
    good = tmp_path / "good.onnx"
    assert cli("convert", path, "--sample", sample, "-o", good).code == 0
    model = onnx.load(str(good))
    # perturb the output layer only (w2 is the only 8x3 weight): logits and probs must fail
    (w2,) = [t for t in model.graph.initializer if list(t.dims) == [8, 3]]
    arr = onnx.numpy_helper.to_array(w2).copy() * 1.01
    w2.CopyFrom(onnx.numpy_helper.from_array(arr, w2.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    result = cli("validate", path, bad, "--sample", sample)
    assert result.code == 1, (result.out, result.err)
    failed = {line.split()[1] for line in result.out.splitlines() if line.startswith("  FAIL ")}  # one line per output
    assert {"logits", "probs"} <= failed, result.out


def test_keras_exported_saved_model(cli, keras_export, tmp_path):
    """Keras's model.export() SavedModel; inputs synthesised from the signature (no sample)."""
    rep = tmp_path / "r.json"
    result = cli("run", keras_export, "--report", rep)
    assert result.code == 0, (result.out, result.err)
    assert _report(rep)["inputs"]["kind"] == "synthesised"
    result = cli("run", keras_export, "--signature", "serve")
    assert result.code == 0, (result.out, result.err)


@pytest.mark.slow  # > 10 s on 2 cores
def test_cli_output_has_no_tensorflow_log_noise(scorer, tmp_path, monkeypatch):
    """A fresh process: TensorFlow's C++ and absl start-up lines must not reach the terminal."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    path, sample = scorer
    result = run_onnxgate("run", path, "--sample", sample)
    assert result.code == 0, result.err
    noise = [l for l in (result.out + result.err).splitlines() if any(s in l for s in ("oneDNN", "absl", "I0000", "W0000", "cuda", "tf2onnx"))]
    assert noise == [], noise


def test_sample_with_wrong_shape(cli, scorer, tmp_path):
    path, _ = scorer
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 5), np.float32))
    assert_user_error(cli("run", path, "--sample", wrong), "features", "[3, 5]")


def test_rename_outputs_follows_tensors_and_refuses_clashes():
    """The helper that gives converted graphs their signature/layer output names."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from onnxgate.converters._tf import rename_outputs
    from onnxgate.errors import ConversionError

    def graph():
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
        nodes = [helper.make_node("Neg", ["x"], ["a:0"]), helper.make_node("Abs", ["x"], ["b:0"]), helper.make_node("Relu", ["a:0"], ["hidden"])]
        outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2]) for n in ("a:0", "b:0", "hidden")]
        return helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])

    model = graph()
    rename_outputs(model, {"a:0": "b:0", "b:0": "a:0"})  # a swap keeps each tensor with its producer
    onnx.checker.check_model(model)
    x = np.array([[-1.0, 2.0]], np.float32)
    sess = ort.InferenceSession(model.SerializeToString())
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))
    np.testing.assert_array_equal(got["b:0"], -x)  # Neg's output, now called b:0
    np.testing.assert_array_equal(got["hidden"], np.maximum(-x, 0))  # its consumer follows the rename
    with pytest.raises(ConversionError, match="hidden"):
        rename_outputs(graph(), {"a:0": "hidden"})
