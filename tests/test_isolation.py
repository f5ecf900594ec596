"""ONNX Runtime in a worker process: real crashes, real hangs, and the parent goes on.

The crashes are real process deaths: a custom-op library whose constructor calls
abort() (built with the system C compiler, loaded by ONNX Runtime's dlopen), and
the worker's test-only fault hook (ONNXGATE_TEST_WORKER_FAULT) that sends SIGSEGV,
reads address 0 through ctypes, aborts or hangs at a chosen stage for a chosen model.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from onnxgate.runtime import isolation
from onnxgate.runtime.isolation import FAULT_ENV, IsolationPolicy, WorkerPool
from onnxgate.runtime.runner import RunError, create_session


def _relu_model(scale: float = 1.0) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])
    w = numpy_helper.from_array(np.full((3,), scale, np.float32), "W")
    nodes = [helper.make_node("Mul", ["X", "W"], ["XW"]), helper.make_node("Relu", ["XW"], ["Y"])]
    graph = helper.make_graph(nodes, f"relu{scale}", [x], [y], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def iris_model() -> tuple[bytes, np.ndarray]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(X, y)
    onx = to_onnx(model, X[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    return onx.SerializeToString(), X[:25]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def pool_with(request):
    """A WorkerPool whose workers start with the given fault spec; closed after the test."""
    pools = []

    def make(fault: str | None = None) -> WorkerPool:
        pool = WorkerPool(max_workers=1, env={FAULT_ENV: fault} if fault else None)
        pools.append(pool)
        return pool

    yield make
    for p in pools:
        p.close()


def test_worker_outputs_equal_in_process_outputs(iris_model, pool_with):
    data, X = iris_model
    pool = pool_with()
    worker = isolation.create_session(data, pool=pool)
    local = create_session(data)
    got, want = worker.run({"X": X}), local.run({"X": X})
    assert sorted(got) == sorted(want) == ["label", "probabilities"]
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k])
    assert worker.providers_used == ["CPUExecutionProvider"]
    assert worker.output_names() == local.output_names()
    # the broken twin: the worker must not paper over a real difference
    a = isolation.run_model(_relu_model(1.0), [{"X": np.array([[1, -2, 3]], np.float32)}], pool=pool)[0]["Y"]
    b = isolation.run_model(_relu_model(2.0), [{"X": np.array([[1, -2, 3]], np.float32)}], pool=pool)[0]["Y"]
    assert a.tolist() == [[1, 0, 3]] and b.tolist() == [[2, 0, 6]]
    assert pool.started == 1  # one worker served three models


def test_string_outputs_travel_without_pickle(pool_with):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("S", TensorProto.STRING, [None])
    y = helper.make_tensor_value_info("T", TensorProto.STRING, [None])
    m = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["S"], ["T"])], "s", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    out = isolation.run_model(m.SerializeToString(), [{"S": np.array(["a", "bé"], dtype=object)}], pool=pool_with())
    assert out[0]["T"].dtype == object and out[0]["T"].tolist() == ["a", "bé"]


@pytest.mark.parametrize(
    "mode,stage,signal_name",
    [("segv", "load", "SIGSEGV"), ("null", "run", "SIGSEGV"), ("abort", "run", "SIGABRT"), ("abort", "load", "SIGABRT")],
)
def test_crash_fails_one_model_and_the_next_one_runs(iris_model, pool_with, mode, stage, signal_name):
    data, X = iris_model
    pool = pool_with(f"{mode}:{stage}:{_sha(data)[:16]}")  # only the iris model crashes
    with pytest.raises(RunError) as err:
        isolation.run_model(data, [{"X": X}], pool=pool, label="'iris.onnx'")
    verb = "loading" if stage == "load" else "running"
    assert f"ONNX Runtime crashed with {signal_name} while {verb} 'iris.onnx'" in str(err.value)
    # the parent is alive, a fresh worker takes over, the next model runs
    out = isolation.run_model(_relu_model(), [{"X": np.array([[-1, 2, 3]], np.float32)}], pool=pool)
    assert out[0]["Y"].tolist() == [[0, 2, 3]]
    assert pool.started == 2


def test_hang_is_killed_at_the_timeout_and_reported(iris_model, pool_with):
    data, X = iris_model
    pool = pool_with(f"hang:run:{_sha(data)[:16]}")
    session = isolation.create_session(data, pool=pool, policy=IsolationPolicy(timeout=1.0), label="'slow.onnx'")
    start = time.perf_counter()
    with pytest.raises(RunError, match=r"did not finish running 'slow.onnx' within 1s; the worker was killed"):
        session.run({"X": X})
    assert time.perf_counter() - start < 8
    out = isolation.run_model(_relu_model(), [{"X": np.ones((2, 3), np.float32)}], pool=pool)
    assert out[0]["Y"].shape == (2, 3)


def test_ort_errors_stay_errors_not_crashes(pool_with):
    pool = pool_with()
    with pytest.raises(RunError, match="could not load the model"):
        isolation.create_session(b"\x08\x07this is not a model", pool=pool)
    session = isolation.create_session(_relu_model(), pool=pool)
    with pytest.raises(RunError, match="failed to run"):
        session.run({"X": np.ones((2, 4), np.float32)})  # wrong width
    assert pool.started == 1  # ordinary errors do not cost a worker


@pytest.mark.parametrize(
    "fault,kind",
    [("segv:load", "crash"), ("abort:run", "crash"), ("hang:run", "timeout"), ("hang:load", "timeout"),
     ("sigkill:run", "memory"), ("nomem:run", "memory"), ("nomem:load", "memory")],
)
def test_run_error_kind_says_how_the_worker_failed(iris_model, pool_with, fault, kind):
    data, X = iris_model
    pool = pool_with(f"{fault}:{_sha(data)[:16]}")
    with pytest.raises(RunError) as err:
        isolation.run_model(data, [{"X": X}], pool=pool, policy=IsolationPolicy(timeout=1.0))
    assert err.value.kind == kind, str(err.value)


def test_ort_errors_have_load_and_run_kinds(pool_with):
    for policy in (IsolationPolicy(), IsolationPolicy(in_process=True)):
        with pytest.raises(RunError) as err:
            isolation.create_session(b"\x08\x07this is not a model", pool=pool_with(), policy=policy)
        assert err.value.kind == "load"
        session = isolation.create_session(_relu_model(), pool=pool_with(), policy=policy)
        with pytest.raises(RunError) as err:
            session.run({"X": np.ones((2, 4), np.float32)})
        assert err.value.kind == "run"


def test_in_process_policy_gives_the_plain_session():
    from onnxgate.runtime.runner import Session

    s = isolation.create_session(_relu_model(), policy=IsolationPolicy(in_process=True))
    assert isinstance(s, Session)
    assert s.run({"X": np.array([[1, -1, 0]], np.float32)})["Y"].tolist() == [[1, 0, 0]]


ABORTING_LIBRARY = r"""
#include <stdlib.h>
__attribute__((constructor)) static void onnxgate_test_boom(void) { abort(); }
int RegisterCustomOps(void *options, const void *api) { return 0; }
"""


@pytest.fixture(scope="module")
def aborting_library(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the crashing custom-op library")
    d = tmp_path_factory.mktemp("customop")
    (d / "boom.c").write_text(ABORTING_LIBRARY)
    lib = d / "libboom.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(d / "boom.c")], check=True, capture_output=True)
    return lib


def test_custom_op_library_that_aborts_is_reported_and_the_run_goes_on(aborting_library, pool_with):
    from onnxgate.trust import Trust
    from onnxgate.errors import UntrustedSourceError
    from onnxgate.trust import require_custom_ops

    with pytest.raises(UntrustedSourceError, match="--trust-code"):
        require_custom_ops(Trust(), [aborting_library])
    libs = require_custom_ops(Trust(code=True), [aborting_library])
    pool = pool_with()
    with pytest.raises(RunError, match=r"ONNX Runtime crashed with SIGABRT while loading 'custom.onnx'"):
        isolation.create_session(_relu_model(), custom_op_libraries=libs, pool=pool, label="'custom.onnx'")
    out = isolation.run_model(_relu_model(3.0), [{"X": np.ones((1, 3), np.float32)}], pool=pool)
    assert out[0]["Y"].tolist() == [[3, 3, 3]]


def test_validate_reports_the_crash_and_the_next_validate_passes(tmp_path, cli, monkeypatch, iris_model):
    """The real CLI, in this process: model A crashes its worker, model B after it passes."""
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "iris.skops")
    np.save(tmp_path / "x.npy", X[:20].astype(np.float32))
    assert cli("convert", tmp_path / "iris.skops", "-o", tmp_path / "a.onnx", "--sample", tmp_path / "x.npy").code == 0
    a = (tmp_path / "a.onnx").read_bytes()
    from onnx import load_model_from_string

    m = load_model_from_string(a)
    m.doc_string = "same model, other bytes"
    (tmp_path / "b.onnx").write_bytes(m.SerializeToString())
    monkeypatch.setenv(FAULT_ENV, f"segv:load:{_sha(a)[:16]}")
    pool = WorkerPool(max_workers=1)
    monkeypatch.setattr(isolation, "_default_pool", pool)
    try:
        bad = cli("validate", tmp_path / "iris.skops", tmp_path / "a.onnx", "--sample", tmp_path / "x.npy")
        good = cli("validate", tmp_path / "iris.skops", tmp_path / "b.onnx", "--sample", tmp_path / "x.npy")
        direct = cli("validate", tmp_path / "iris.skops", tmp_path / "a.onnx", "--sample", tmp_path / "x.npy", "--in-process")
    finally:
        pool.close()
    assert bad.code == 1, bad
    assert f"ONNX Runtime crashed with SIGSEGV while loading '{tmp_path / 'a.onnx'}'" in bad.out
    assert "Traceback" not in bad.err
    assert good.code == 0, good
    assert direct.code == 0, direct  # --in-process: no worker, no fault hook
