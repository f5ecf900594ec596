"""Resource bounds: huge declarations and out-of-directory paths are refused before anything is allocated."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from onnxgate.checks import limits
from tests.conftest import assert_user_error


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Path:
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    d = tmp_path_factory.mktemp("limits")
    X, y = load_iris(return_X_y=True)
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), d / "iris.skops")
    np.save(d / "x.npy", X[:20].astype(np.float32))
    return d


def _model(dims: list, *, external: str | None = None) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, dims)
    w = numpy_helper.from_array(np.ones((4,), np.float32), "W")
    if external is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=external)
    g = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g", [x], [y], initializer=[w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_available_memory_is_read_and_can_be_overridden(monkeypatch):
    assert limits.available_memory() > 10**8
    monkeypatch.setenv(limits.MEMORY_ENV, "12345")
    assert limits.available_memory() == 12345


def test_model_declaring_100_billion_elements_is_refused(iris, cli):
    (iris / "huge.onnx").write_bytes(_model([100_000, 1_000_000]))
    r = cli("validate", iris / "iris.skops", iris / "huge.onnx", "--sample", iris / "x.npy")
    assert_user_error(r, "declares 'X' with shape [100000, 1000000]", "100,000,000,000 elements", "400.0 GB")
    ok = _model([None, 4])  # the same graph with a symbolic batch axis is fine to declare
    from onnx import load_model_from_string

    limits.check_declared_shapes(load_model_from_string(ok), "ok")


def test_protobuf_larger_than_memory_is_refused_before_reading(iris, cli, monkeypatch):
    (iris / "m.onnx").write_bytes(_model([None, 4]))
    monkeypatch.setenv(limits.MEMORY_ENV, "100")
    r = cli("inspect", iris / "m.onnx")
    assert_user_error(r, "parsing it needs about", "is available", limits.MEMORY_ENV)
    monkeypatch.delenv(limits.MEMORY_ENV)
    assert cli("inspect", iris / "m.onnx").code == 0


def _npy_header_only(path: Path, shape: tuple, dtype: str = "<f4") -> None:
    """A .npy whose header declares ``shape`` and whose data is missing, as a lying or truncated file."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})


def test_npy_sample_with_10_to_the_8_rows_is_refused_from_its_header(iris, cli):
    _npy_header_only(iris / "big.npy", (10**8, 4))
    r = cli("convert", iris / "iris.skops", "-o", iris / "never.onnx", "--sample", iris / "big.npy")
    assert_user_error(r, "100,000,000 rows", "at most 1,000,000", "smaller sample")


def test_npz_member_bomb_is_refused_before_inflating(iris, cli):
    _npy = iris / "hdr.npy"
    _npy_header_only(_npy, (10**8, 4))
    with zipfile.ZipFile(iris / "big.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", _npy.read_bytes() + bytes(1 << 16))
    r = cli("convert", iris / "iris.skops", "-o", iris / "never.onnx", "--sample", iris / "big.npz")
    assert_user_error(r, "[X] has 100,000,000 rows")
    assert not (iris / "never.onnx").exists()


def test_wide_sample_over_the_memory_budget_is_refused(iris, cli, monkeypatch):
    _npy_header_only(iris / "wide.npy", (10, 10**9))
    r = cli("convert", iris / "iris.skops", "-o", iris / "never.onnx", "--sample", iris / "wide.npy")
    assert_user_error(r, "holds 40.0 GB", "budget for a sample")


def test_csv_with_too_many_rows_is_refused_without_parsing(iris, cli, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SAMPLE_ROWS", 50)
    rows = "\n".join("1,2,3,4" for _ in range(80))
    (iris / "long.csv").write_text("a,b,c,d\n" + rows + "\n")
    r = cli("convert", iris / "iris.skops", "-o", iris / "never.onnx", "--sample", iris / "long.csv")
    assert_user_error(r, "more than 50 rows")


def test_tensor_proto_declaring_huge_dims_is_refused(iris, cli):
    from onnx import TensorProto

    t = TensorProto(name="X", data_type=TensorProto.FLOAT, dims=[10**8, 10**4])
    d = iris / "test_data_set_0"
    d.mkdir(exist_ok=True)
    (d / "input_0.pb").write_bytes(t.SerializeToString())
    r = cli("convert", iris / "iris.skops", "-o", iris / "never.onnx", "--sample", d)
    assert_user_error(r, "4000.0 GB", "budget for a sample")


def test_tensor_proto_with_external_data_is_refused(iris, cli, tmp_path):
    from onnx import TensorProto

    t = TensorProto(name="X", data_type=TensorProto.FLOAT, dims=[2, 4], data_location=TensorProto.EXTERNAL)
    t.external_data.add(key="location", value="../../etc/passwd")
    d = tmp_path / "test_data_set_0"
    d.mkdir()
    (d / "input_0.pb").write_bytes(t.SerializeToString())
    r = cli("convert", iris / "iris.skops", "-o", tmp_path / "never.onnx", "--sample", d)
    assert_user_error(r, "keeps its data in an external file")


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin", ""])
def test_external_data_outside_the_model_directory_is_refused(tmp_path, cli, location):
    d = tmp_path / "model"
    d.mkdir()
    (tmp_path / "outside.bin").write_bytes(np.ones(4, np.float32).tobytes())
    (d / "m.onnx").write_bytes(_model([None, 4], external=location))
    r = cli("inspect", d / "m.onnx")
    assert_user_error(r, "outside the model's directory", "relative path next to the model")


def test_external_data_inside_the_model_directory_is_accepted(tmp_path, cli):
    from onnx import load_model_from_string

    (tmp_path / "w.bin").write_bytes(np.ones(4, np.float32).tobytes())
    (tmp_path / "m.onnx").write_bytes(_model([None, 4], external="w.bin"))
    assert cli("inspect", tmp_path / "m.onnx").code == 0
    files = limits.check_external_data(load_model_from_string((tmp_path / "m.onnx").read_bytes()), tmp_path, "m")
    assert files == [(tmp_path / "w.bin").resolve()]
