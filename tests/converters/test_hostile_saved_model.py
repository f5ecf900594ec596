"""A SavedModel whose graph reads or writes files or runs Python is refused unless
--trust-code, before TensorFlow loads it; the same model without those ops passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_user_error

pytestmark = pytest.mark.slow
pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")


def _save(path: Path, body) -> Path:
    from onnxgate.converters._tf import import_tf

    tf = import_tf()

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def serve(self, x):
            return {"y": body(tf, x)}

    m = M()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return path


def _plain(tf, x):
    return 2.0 * x + 1.0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile_tf")
    secret = d / "secret.txt"
    secret.write_text("42")
    written = d / "written.txt"

    def reads(tf, x):
        n = tf.strings.to_number(tf.io.read_file(str(secret)))
        return x + n

    def writes(tf, x):
        with tf.control_dependencies([tf.io.write_file(str(written), tf.strings.as_string(tf.reduce_sum(x)))]):
            return tf.identity(x)

    def py_func(tf, x):
        return tf.numpy_function(lambda a: a * 2, [x], tf.float32)

    def eager_py_func(tf, x):
        return tf.py_function(lambda a: a * 2, [x], tf.float32)

    out = {name: _save(d / name, fn) for name, fn in
           {"plain": _plain, "read": reads, "write": writes, "py_func": py_func, "eager_py_func": eager_py_func}.items()}
    np.save(d / "x.npy", np.arange(12, dtype=np.float32).reshape(4, 3) / 7)  # rows differ: not a vacuous check
    from onnxgate.pipelines.run import convert

    convert(str(out["plain"]), d / "plain.onnx", sample=str(d / "x.npy"))  # what validate compares against
    return d, out, written


@pytest.mark.parametrize("name,op", [("read", "ReadFile"), ("write", "WriteFile"), ("py_func", "PyFunc"),
                                     ("eager_py_func", "EagerPyFunc")])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_file_and_python_ops_are_refused(name, op, command, models, cli, tmp_path):
    d, paths, written = models
    args = [command, paths[name]] + ([d / "plain.onnx"] if command == "validate" else []) + ["--sample", d / "x.npy"]
    assert_user_error(cli(*args), "refusing to load SavedModel", op, "--trust-code")
    assert not written.exists()


def test_the_ops_are_found_in_the_function_library(models):
    from onnxgate.converters.tensorflow import code_ops

    _, paths, _ = models
    assert code_ops(paths["plain"]) == []
    assert [op for op, _ in code_ops(paths["write"])] == ["WriteFile"]
    assert "function" in code_ops(paths["read"])[0][1]


def test_plain_saved_model_passes(models, cli):
    d, paths, _ = models
    result = cli("-q", "run", paths["plain"], "--sample", d / "x.npy")
    assert result.code == 0, result.err
