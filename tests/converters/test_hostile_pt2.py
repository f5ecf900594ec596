"""A .pt2 archive runs no code unless pickles are trusted: the three routes by which
``torch.export.load`` unpickles (sample inputs saved with plain torch.save, a weight marked
``use_pickle``, an opaque constant) are refused before loading, and the intact archive passes."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.conftest import assert_user_error  # noqa: E402


class Payload:
    """Unpickling this touches ``marker``: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    x = torch.randn(5, 4)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)), d / "clean.pt2")
    np.save(d / "x.npy", x.numpy())
    return d


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy the archive member by member; ``change(name, data) -> bytes | None`` (None: unchanged)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            new = change(info.filename, data)
            zout.writestr(info, data if new is None else new)
        for name, data in getattr(change, "extra", {}).items():
            zout.writestr(name, data)


def _pickled_sample_inputs(marker):
    def change(name, data):
        if "/data/sample_inputs/" in name:
            buf = io.BytesIO()
            torch.save(((torch.zeros(5, 4), Payload(marker)), {}), buf)
            return buf.getvalue()
    return change


def _use_pickle_weight(marker):
    def change(name, data):
        if name.endswith("weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("/weights/weight_0"):  # the first entry's file, as torch.export.save names it
            buf = io.BytesIO()
            torch.save(Payload(marker), buf)
            return buf.getvalue()
    return change


def _opaque_constant(marker):
    from torch.export.pt2_archive.constants import OPAQUE_OBJ_FILENAME_PREFIX

    def change(name, data):
        if name.endswith("constants_config.json"):
            change.extra = {name.replace("model_constants_config.json", f"{OPAQUE_OBJ_FILENAME_PREFIX}0"): pickle.dumps(Payload(marker))}
            return json.dumps({"config": {"evil": {"path_name": f"{OPAQUE_OBJ_FILENAME_PREFIX}0", "is_param": False,
                                                   "use_pickle": True, "tensor_meta": None}}}).encode()
    return change


ROUTES = {"sample_inputs": (_pickled_sample_inputs, "sample inputs"),
          "use_pickle": (_use_pickle_weight, "use_pickle"),
          "opaque_constant": (_opaque_constant, "opaque object")}


@pytest.mark.parametrize("route", list(ROUTES))
def test_pickled_route_is_refused_and_runs_nothing(route, clean, tmp_path, cli):
    make, fragment = ROUTES[route]
    marker = tmp_path / "pwned"
    bad = tmp_path / f"{route}.pt2"
    _rewrite(clean / "clean.pt2", bad, make(marker))
    result = cli("run", bad, "--sample", clean / "x.npy", "--in-process")
    assert_user_error(result, "refusing to unpickle", fragment, "--trust-pickle")
    assert not marker.exists()


@pytest.mark.parametrize("route", list(ROUTES))
def test_the_payload_is_real(route, clean, tmp_path):
    """The refusal matters: torch.export.load itself runs each route's payload."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt2"
    _rewrite(clean / "clean.pt2", bad, ROUTES[route][0](marker))
    try:
        torch.export.load(bad)
    except Exception:  # noqa: BLE001 - the payload ran before the structure was checked
        pass
    assert marker.exists()


def test_clean_archive_passes_with_no_flag(clean, tmp_path, cli):
    result = cli("-q", "run", clean / "clean.pt2", "--sample", clean / "x.npy", "--in-process")
    assert result.code == 0, result.err


def test_scan_finds_nothing_in_a_clean_archive(clean):
    from onnxgate.converters.torch import pickled_members

    assert pickled_members((clean / "clean.pt2").read_bytes()) == []
