"""Zip bombs in model archives: a .skops whose array, or a .keras whose config.json,
inflates past ONNXGATE_MEMORY_LIMIT is refused from the zip directory and .npy headers,
before anything is inflated; the intact files load under the same limit."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_user_error

LIMIT = "2e7"  # 20 MB: the intact models are a few kB, the bombs inflate to 40 MB


def _swap(src: Path, dst: Path, pick, data: bytes) -> str:
    """Copy ``src`` with the first member ``pick`` accepts replaced by ``data`` (deflated)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        chosen = next(i.filename for i in zin.infolist() if pick(i.filename))
        for info in zin.infolist():
            zout.writestr(info.filename, data if info.filename == chosen else zin.read(info))
    return chosen


@pytest.fixture
def skops_model(tmp_path):
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    X = np.random.RandomState(0).rand(30, 3)
    sio.dump(LogisticRegression().fit(X, X[:, 0] > 0.5), tmp_path / "ok.skops")
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    return tmp_path


def test_skops_array_bomb_is_refused_before_inflating(skops_model, tmp_path, cli, monkeypatch):
    import io

    monkeypatch.setenv("ONNXGATE_MEMORY_LIMIT", LIMIT)
    buf = io.BytesIO()
    np.save(buf, np.zeros(5_000_000))  # 40 MB of zeros: about 40 kB deflated
    member = _swap(skops_model / "ok.skops", tmp_path / "bomb.skops", lambda n: n.endswith(".npy"), buf.getvalue())
    assert (tmp_path / "bomb.skops").stat().st_size < 200_000
    result = cli("run", tmp_path / "bomb.skops", "--sample", skops_model / "x.npy", "--in-process")
    assert_user_error(result, member, "inflates to 40.0 MB", "zip bomb")
    assert cli("-q", "run", skops_model / "ok.skops", "--sample", skops_model / "x.npy", "--in-process").code == 0


def test_a_lying_npy_header_is_refused_too(skops_model, tmp_path, monkeypatch):
    """The header declares the size; a member whose header claims 1e12 elements is refused by it."""
    from onnxgate.checks.limits import check_archive
    from onnxgate.errors import ModelFileError

    monkeypatch.setenv("ONNXGATE_MEMORY_LIMIT", LIMIT)
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    header = buf.getvalue()  # and no data at all
    _swap(skops_model / "ok.skops", tmp_path / "liar.skops", lambda n: n.endswith(".npy"), header)
    with pytest.raises(ModelFileError, match="inflates to 8000.0 GB"):
        check_archive(tmp_path / "liar.skops", "liar")
    check_archive(skops_model / "ok.skops", "ok")


@pytest.mark.slow
def test_keras_config_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from onnxgate.converters._tf import import_keras
    from onnxgate.converters.keras import KerasConverter
    from onnxgate.errors import ModelFileError
    from onnxgate.trust import Trust

    keras = import_keras()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "ok.keras")
    with zipfile.ZipFile(tmp_path / "ok.keras") as z:
        config = z.read("config.json")
    _swap(tmp_path / "ok.keras", tmp_path / "bomb.keras", lambda n: n == "config.json", config + b" " * 4_000_000)
    monkeypatch.setenv("ONNXGATE_MEMORY_LIMIT", LIMIT)
    with pytest.raises(ModelFileError, match="'config.json' inflates to 40.0 MB"):
        KerasConverter().load(str(tmp_path / "bomb.keras"), trust=Trust(), options={})
    assert KerasConverter().load(str(tmp_path / "ok.keras"), trust=Trust(), options={}).outputs
