"""Replayable evidence: test_data_set_N with the ORIGINAL outputs, re-verified by ORT alone."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import pytest

from onnxgate.inputs.evidence import find_test_data_sets, read_test_data_set
from tests.conftest import assert_user_error

BLOCKED = ("sklearn", "skl2onnx", "skops", "torch", "tensorflow", "keras", "onnxmltools")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A classifier, its ONNX file and the evidence written while validating it."""
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.cli import main

    X, y = load_iris(return_X_y=True)
    d = tmp_path_factory.mktemp("evidence")
    model = LogisticRegression(max_iter=500).fit(X, y)
    sio.dump(model, d / "lr.skops")
    np.save(d / "x.npy", X[::6].astype(np.float32))
    code = main(["-q", "run", str(d / "lr.skops"), "--sample", str(d / "x.npy"), "-o", str(d / "lr.onnx"),
                 "--save-evidence", str(d / "ev")])
    assert code == 0
    return d, model


@pytest.fixture
def hidden_frameworks(tmp_path):
    """PYTHONPATH with a sitecustomize that makes every ML framework import fail."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys

        class _Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError(f"{{name}} is hidden for this test")
                return None

        sys.meta_path.insert(0, _Hide())
    """))
    return {"PYTHONPATH": str(site)}


def test_evidence_holds_inputs_and_the_original_frameworks_outputs(converted):
    d, model = converted
    sets = find_test_data_sets(d / "ev")
    assert [s.name for s in sets] == ["test_data_set_0", "test_data_set_1", "test_data_set_2"]  # batch 25, 1, 13
    inputs, outputs = read_test_data_set(sets[0])
    assert list(inputs) == ["X"] and list(outputs) == ["label", "probabilities"]
    X = np.load(d / "x.npy")
    assert np.array_equal(inputs["X"], X)
    # the framework's own answers (float64 from scikit-learn), not ONNX Runtime's float32
    assert outputs["probabilities"].dtype == np.float64
    assert np.array_equal(outputs["probabilities"], model.predict_proba(X.astype(np.float64)))
    assert np.array_equal(outputs["label"], model.predict(X.astype(np.float64)))
    assert read_test_data_set(sets[1])[0]["X"].shape == (1, 4)


def test_replay_with_the_framework_hidden(converted, hidden_frameworks, onnxgate_subprocess, tmp_path):
    d, _ = converted
    probe = onnxgate_subprocess("-q", "run", d / "lr.skops", "--sample", d / "x.npy", env=hidden_frameworks)
    assert probe.code != 0 and "is hidden for this test" in probe.err  # the blocker really hides the framework
    report = tmp_path / "r.json"
    res = onnxgate_subprocess("-q", "validate", d / "lr.onnx", "--evidence", d / "ev", "--report", report, env=hidden_frameworks)
    assert res.code == 0, res.err
    data = json.loads(report.read_text())
    assert data["status"] == "passed" and data["inputs"]["kind"] == "evidence"
    assert [c["name"] for c in data["cases"]] == ["test_data_set_0", "test_data_set_1", "test_data_set_2"]
    assert "scikit-learn" not in data["versions"]


def test_replay_catches_a_perturbed_file_with_the_framework_hidden(converted, hidden_frameworks, onnxgate_subprocess, tmp_path):
    d, _ = converted
    model = onnx.load(str(d / "lr.onnx"))
    node = next(n for n in model.graph.node if n.op_type == "LinearClassifier")
    intercepts = next(a for a in node.attribute if a.name == "intercepts")
    intercepts.floats[1] += 0.05
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    res = onnxgate_subprocess("-q", "validate", bad, "--evidence", d / "ev", env=hidden_frameworks)
    assert res.code == 1 and "FAIL probabilities" in res.out


def test_replay_a_single_test_data_set_directory(cli, converted):
    d, _ = converted
    res = cli("-q", "validate", d / "lr.onnx", "--evidence", d / "ev" / "test_data_set_1")
    assert res.code == 0, res.err


def test_evidence_usage_errors(cli, converted, tmp_path):
    d, _ = converted
    assert_user_error(cli("validate", d / "lr.onnx", "--evidence", tmp_path), "holds no test_data_set_N")
    assert_user_error(cli("validate", d / "lr.onnx", "--evidence", tmp_path / "nope"), "not a directory")
    assert_user_error(cli("validate", d / "lr.skops", d / "lr.onnx", "--evidence", d / "ev"), "--evidence replaces SOURCE")
    assert_user_error(cli("validate", d / "lr.onnx"), "MODEL.onnx")
    (tmp_path / "file").write_text("x")
    res = cli("run", d / "lr.skops", "--sample", d / "x.npy", "--save-evidence", tmp_path / "file")
    assert_user_error(res, "it is a file")
    res = cli("run", d / "lr.skops", "--sample", d / "x.npy", "--save-evidence", tmp_path / "a" / "b")
    assert_user_error(res, "does not exist")


def test_replay_a_model_with_external_weights_from_another_directory(cli, tmp_path, monkeypatch):
    """Weights in external data are found next to the model (not the cwd) and never parsed twice."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxgate.inputs.evidence import write_evidence

    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        [numpy_helper.from_array(w, "W")],
    )
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model_dir / "m.onnx"),
              save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (model_dir / "weights.bin").stat().st_size == w.nbytes
    x = np.random.default_rng(1).standard_normal((6, 64)).astype(np.float32)
    write_evidence(tmp_path / "ev", [({"x": x}, {"y": x.astype(np.float64) @ w.astype(np.float64)})])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = cli("-q", "validate", model_dir / "m.onnx", "--evidence", tmp_path / "ev")
    assert res.code == 0, res.out + res.err
    w2 = w.copy()
    w2[3, 3] += 1.0
    (model_dir / "weights.bin").write_bytes(w2.tobytes())  # the weights file changed after the evidence
    res = cli("-q", "validate", model_dir / "m.onnx", "--evidence", tmp_path / "ev")
    assert res.code == 1 and "FAIL y " in res.out
