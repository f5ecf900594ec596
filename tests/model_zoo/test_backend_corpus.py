"""The test data that ships inside the ``onnx`` package, indexed, served over HTTP and verified.

onnxgate's per-model verdicts must agree with a bare ONNX Runtime loop over the same
directories (session + run + ``np.testing.assert_allclose`` per output, as the ONNX
backend test runner does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxgate.model_zoo.zoo import index_zoo, verify_zoo
from tests.model_zoo.zoo_server import start, stop

SUITES = ("pytorch-converted", "pytorch-operator", "simple")
DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def _load(path: Path, type_proto) -> object:
    from onnx import numpy_helper

    if type_proto.WhichOneof("value") == "sequence_type":
        p = onnx.SequenceProto()
        p.ParseFromString(path.read_bytes())
        return numpy_helper.to_list(p)
    p = onnx.TensorProto()
    p.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(p)


def _assert_same(expected, got) -> None:
    if isinstance(expected, list):
        assert len(expected) == len(got)
        for e, g in zip(expected, got):
            _assert_same(e, g)
        return
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-7)
    else:
        np.testing.assert_array_equal(got, expected)


def bare_loop(model_dir: Path) -> bool:
    """What a user would write: load, run every test_data_set_N, assert_allclose."""
    try:
        model = onnx.load(str(model_dir / "model.onnx"))
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
        inits = {i.name for i in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in inits]
        for ds in sorted(model_dir.glob("test_data_set_*")):
            feeds = {vi.name: _load(ds / f"input_{k}.pb", vi.type) for k, vi in enumerate(inputs) if (ds / f"input_{k}.pb").exists()}
            outs = sess.run(None, feeds)
            for k, vi in enumerate(model.graph.output):
                _assert_same(_load(ds / f"output_{k}.pb", vi.type), outs[k])
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("backend")
    for suite in SUITES:
        shutil.copytree(DATA / suite, root / suite)
    index_zoo(root, root / "ONNX_HUB_MANIFEST.json")
    return root


@pytest.mark.slow  # > 10 s on 2 cores
def test_backend_corpus_verdicts_agree_with_a_bare_loop(corpus, tmp_path):
    server = start(corpus)
    try:
        report = verify_zoo(server.url + "ONNX_HUB_MANIFEST.json", jobs=2, cache=tmp_path / "cache")
    finally:
        stop(server)
    ours = {r.name: r.status for r in report.results}
    bare = {f"{d.parent.name}/{d.name}": bare_loop(d) for s in SUITES for d in sorted((corpus / s).iterdir()) if d.is_dir()}
    assert len(ours) == len(bare) == 140
    disagree = {n: (ours[n], bare[n]) for n in bare if (ours[n] == "passed") != bare[n]}
    assert not disagree, disagree
    assert report.counts["passed"] >= 90, report.counts  # 100 with onnxruntime 1.32; old opsets are "unsupported"
    assert report.counts["mismatch"] == 0
    # the training-domain Gradient op is a valid model that ORT does not implement
    assert ours["simple/test_gradient_of_add"] == "unsupported"
