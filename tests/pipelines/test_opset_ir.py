"""Opset and IR honoured by ``convert``: the request is used or noted, --target-ort lowers the IR
version, and a model the checker or ONNX Runtime refuses is never written (real skl2onnx, real ORT)."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import onnx
import pytest

from onnxgate.converters.base import Converter
from tests.conftest import assert_user_error
from tests.pipelines.models import iris

warnings.filterwarnings("ignore")


def _default_opset(path) -> int:
    (version,) = [i.version for i in onnx.load(str(path)).opset_import if i.domain in ("", "ai.onnx")]
    return version


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("opset")
    return iris(directory)[0]


def test_requested_opset_is_used(cli, model, tmp_path):
    out = tmp_path / "m.onnx"
    result = cli("-q", "convert", model, "-o", out, "--opset", "17")
    assert result.code == 0, result.err
    assert _default_opset(out) == 17  # skl2onnx alone stamps 9 (the lowest its ops need) or repeats the import


def test_default_opset_is_left_alone_and_imports_are_merged(cli, model, tmp_path):
    out = tmp_path / "m.onnx"
    assert cli("-q", "convert", model, "-o", out).code == 0
    domains = [i.domain for i in onnx.load(str(out)).opset_import]
    assert len(domains) == len(set(domains)), domains  # skl2onnx repeats ai.onnx when zipmap=False is passed


def test_opset_above_the_converters_maximum_is_a_user_error(cli, model, tmp_path):
    import skl2onnx

    out = tmp_path / "m.onnx"
    too_new = skl2onnx.__max_supported_opset__ + 1
    if too_new > onnx.defs.onnx_opset_version():
        pytest.skip("the installed onnx is not newer than skl2onnx's maximum")
    assert_user_error(cli("convert", model, "-o", out, "--opset", str(too_new)), f"--opset {too_new}", "skl2onnx")
    assert not out.exists()


def test_opset_beyond_onnx_is_exit_2(cli, model, tmp_path):
    out = tmp_path / "m.onnx"
    result = cli("convert", model, "-o", out, "--opset", "99")
    assert result.code == 2 and "opset" in result.err
    assert not out.exists()


def test_target_ort_lowers_the_ir_version(cli, model, tmp_path):
    out = tmp_path / "m.onnx"
    result = cli("-q", "convert", model, "-o", out, "--target-ort", "1.17")
    assert result.code == 0, result.err
    written = onnx.load(str(out))
    assert written.ir_version == 9  # ORT 1.17 reads IR <= 9; the exporters write 10
    assert _default_opset(out) <= 20
    assert "IR version lowered from 10 to 9" in result.err
    onnx.checker.check_model(written, full_check=True)


def test_target_ort_that_cannot_be_met_is_refused(cli, model, tmp_path):
    out = tmp_path / "m.onnx"
    assert_user_error(cli("convert", model, "-o", out, "--target-ort", "1.12", "--opset", "20"),
                      "--target-ort 1.12 cannot be met", "opset 20")
    assert not out.exists()


def test_double_without_a_kernel_is_refused_before_writing(cli, tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = load_iris(return_X_y=True)
    path = tmp_path / "imputed.pkl"
    path.write_bytes(pickle.dumps(make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500)).fit(x, y)))
    np.save(tmp_path / "x.npy", x[:10])
    out = tmp_path / "m.onnx"
    result = cli("convert", path, "-o", out, "--double", "--trust-pickle", "--sample", tmp_path / "x.npy")
    assert result.code == 1, (result.out, result.err)
    lines = [l for l in result.err.splitlines() if l.startswith("onnxgate: error")]
    assert len(lines) == 1 and "Imputer" in lines[0] and "not written" in lines[0], result.err
    assert not out.exists()
    assert cli("-q", "convert", path, "-o", out, "--trust-pickle", "--sample", tmp_path / "x.npy").code == 0  # float32 has the kernel


class UnknownOpGraph:
    """A source whose converter (below) emits an op no opset defines: the checker must refuse it."""


class UnknownOpConverter(Converter):
    """A real plugin converter with a bug: its graph uses ``NoSuchOp`` (the contract's optional
    methods come from the base class, as a plugin's would)."""

    name = "unknown-op-test"
    install_hint = ""

    def accepts(self, source):
        return isinstance(source, UnknownOpGraph)

    def load(self, source, *, trust, options):
        return source

    def feeds(self, model, sample, *, options):
        return {"x": np.asarray(next(iter(sample.arrays.values())), np.float32)}

    def synthesize(self, model, *, options):
        return {"x": np.ones((4, 3), np.float32)}

    def convert(self, model, feeds, *, opset, options):
        from onnx import TensorProto, helper

        from onnxgate.converters.base import Conversion

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
        graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "g", [x], [y])
        return Conversion(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "test", [])

    def reference(self, model, feeds, output_names):
        return {"y": feeds["x"]}

    def versions(self):
        return {}


def test_convert_refuses_a_model_the_checker_rejects(tmp_path):
    from onnxgate.converters.base import registry
    from onnxgate.errors import InvalidModelError
    from onnxgate.pipelines.run import convert

    if UnknownOpConverter.name not in registry().names():
        registry().register(UnknownOpConverter())
    out = tmp_path / "bad.onnx"
    with pytest.raises(InvalidModelError, match="onnx.checker.*NoSuchOp") as caught:
        convert(UnknownOpGraph(), out, in_process=True)
    assert caught.value.exit_code == 1
    assert not out.exists()
    result = convert(UnknownOpGraph(), None, in_process=True)  # nothing to write: nothing refused here
    result.reference.close()
