"""The trust policy: every path that can run code is refused by default, says why and how to allow it."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from onnxgate import trust as trust_mod
from onnxgate.trust import Trust
from onnxgate.errors import OnnxgateError, UntrustedSourceError
from tests.conftest import assert_user_error


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    import joblib
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    d = tmp_path_factory.mktemp("trust")
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    joblib.dump(model, d / "iris.joblib")
    sio.dump(model, d / "iris.skops")
    np.save(d / "x.npy", X[:20].astype(np.float32))
    return d


def test_trust_is_still_importable_from_base():
    assert trust_mod.Trust is Trust


@pytest.mark.parametrize(
    "env,pickle,code",
    [("", False, False), ("pickle", True, False), ("code", False, True), ("pickle, CODE", True, True), ("all", True, True)],
)
def test_environment_variable_grants_trust(env, pickle, code):
    t = trust_mod.from_flags(environ={"ONNXGATE_TRUST": env})
    assert (t.pickle, t.code) == (pickle, code)
    assert trust_mod.from_flags(pickle=True, environ={}).pickle


def test_unknown_word_in_the_environment_variable_is_a_user_error(iris, cli, monkeypatch):
    monkeypatch.setenv("ONNXGATE_TRUST", "pickles")
    r = cli("convert", iris / "iris.skops", "-o", iris / "out.onnx", "--sample", iris / "x.npy")
    assert_user_error(r, "ONNXGATE_TRUST='pickles'", "unknown word", "pickle,code")


def test_pickle_is_refused_by_default_and_allowed_by_flag_or_env(iris, cli, monkeypatch, tmp_path):
    monkeypatch.delenv("ONNXGATE_TRUST", raising=False)
    r = cli("convert", iris / "iris.joblib", "-o", tmp_path / "a.onnx", "--sample", iris / "x.npy")
    assert_user_error(r, "refusing to unpickle", "runs arbitrary code", "--trust-pickle", "ONNXGATE_TRUST=pickle")
    assert not (tmp_path / "a.onnx").exists()
    monkeypatch.setenv("ONNXGATE_TRUST", "pickle")
    r = cli("run", iris / "iris.joblib", "--sample", iris / "x.npy", "--report", tmp_path / "r.json")
    assert r.code == 0, r
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["trust"] == {"pickle": True, "code": False, "types": [], "audited": []}  # the report says what was trusted


def test_module_callable_is_refused_without_trust_code(iris, cli, tmp_path, monkeypatch):
    monkeypatch.delenv("ONNXGATE_TRUST", raising=False)
    (tmp_path / "trust_factory_mod.py").write_text(
        "def make():\n"
        "    from sklearn.datasets import load_iris\n"
        "    from sklearn.linear_model import LinearRegression\n"
        "    X, y = load_iris(return_X_y=True)\n"
        "    return LinearRegression().fit(X, y)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = cli("convert", "trust_factory_mod:make", "-o", tmp_path / "f.onnx", "--sample", iris / "x.npy")
    assert_user_error(r, "refusing to import 'trust_factory_mod:make'", "runs its code", "--trust-code")
    assert "trust_factory_mod" not in sys.modules  # refused before import
    r = cli("convert", "trust_factory_mod:make", "-o", tmp_path / "f.onnx", "--sample", iris / "x.npy", "--trust-code")
    assert r.code == 0, r
    assert (tmp_path / "f.onnx").stat().st_size > 0


def test_skops_types_outside_the_default_list_are_refused(cli, tmp_path, monkeypatch):
    import skops.io as sio
    from sklearn.datasets import load_iris

    monkeypatch.delenv("ONNXGATE_TRUST", raising=False)
    (tmp_path / "trust_custom_mod.py").write_text(
        "from sklearn.linear_model import LogisticRegression\n"
        "class MyLogistic(LogisticRegression):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import trust_custom_mod

    X, y = load_iris(return_X_y=True)
    sio.dump(trust_custom_mod.MyLogistic(max_iter=300).fit(X, y), tmp_path / "p.skops")
    untrusted = sio.get_untrusted_types(file=str(tmp_path / "p.skops"))
    assert untrusted == ["trust_custom_mod.MyLogistic"]
    np.save(tmp_path / "x.npy", X[:5].astype(np.float32))
    r = cli("convert", tmp_path / "p.skops", "-o", tmp_path / "p.onnx", "--sample", tmp_path / "x.npy")
    assert_user_error(r, "contains types skops does not trust by default", "--trust-type trust_custom_mod.MyLogistic")
    assert not (tmp_path / "p.onnx").exists()


def test_keras_lambda_layers_need_trust_code():
    with pytest.raises(UntrustedSourceError) as err:
        trust_mod.require_lambda_layers(Trust(), "'m.keras'", ["lambda_1"])
    assert "Lambda layer(s) ['lambda_1']" in str(err.value) and "--trust-code" in str(err.value)
    trust_mod.require_lambda_layers(Trust(), "'m.keras'", [])  # none: nothing to refuse
    trust_mod.require_lambda_layers(Trust(code=True), "'m.keras'", ["lambda_1"])


def test_custom_op_libraries_need_trust_code_and_must_exist(tmp_path):
    lib = tmp_path / "libops.so"
    with pytest.raises(UntrustedSourceError, match="native code runs inside ONNX Runtime.*--trust-code"):
        trust_mod.require_custom_ops(Trust(), [lib])
    with pytest.raises(OnnxgateError, match="does not exist"):
        trust_mod.require_custom_ops(Trust(code=True), [lib])
    lib.write_bytes(b"\x7fELF")
    assert trust_mod.require_custom_ops(Trust(code=True), [lib]) == [str(lib.resolve())]
    assert trust_mod.require_custom_ops(Trust(), []) == []


def test_require_pickle_and_require_code_messages():
    with pytest.raises(UntrustedSourceError) as err:
        trust_mod.require_pickle(Trust(), "'m.pt'", alternative="save it with torch.export.save")
    text = str(err.value)
    assert "refusing to unpickle 'm.pt'" in text and "torch.export.save" in text and "--trust-pickle" in text
    trust_mod.require_pickle(Trust(pickle=True), "'m.pt'")
    with pytest.raises(UntrustedSourceError, match="refusing to load 'x': it runs code from the file"):
        trust_mod.require_code(Trust(), "'x'")
    trust_mod.require_code(Trust(code=True), "'x'")
