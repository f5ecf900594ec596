"""The original framework runs in a worker: a hostile model file fails alone, onnxgate survives.

Each model here is a real one, fitted at test time, then corrupted the way an attacker (or a
broken exporter) would: out-of-range child indices, a corrupt split feature, a cycle. Every
run goes through the CLI in a fresh interpreter, so a crash of onnxgate itself would show as
a signal or a traceback, not as a test error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import run_onnxgate

TREE_TYPE = "sklearn.tree._tree.Tree"


def _assert_contained(result, *fragments):
    """Exit 2 with one line naming the failure; no traceback, no signal in the parent."""
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [l for l in result.err.splitlines() if l.startswith("onnxgate: error:")]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    d = tmp_path_factory.mktemp("fw")
    np.save(d / "x.npy", X[:20].astype(np.float32))
    return d, X, y


def _forest_with(d, X, y, name, edit):
    """A fitted RandomForest whose first tree's node array was edited, saved as .skops."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    tree = model.estimators_[0].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    edit(nodes)
    state["nodes"] = nodes
    tree.__setstate__(state)
    path = d / name
    sio.dump(model, path)
    return path


def test_forest_with_out_of_range_children_fails_alone(iris):
    d, X, y = iris

    def out_of_range(nodes):
        nodes["left_child"][0] = nodes["right_child"][0] = 10**8

    path = _forest_with(d, X, y, "oob.skops", out_of_range)
    # the audit of scikit-learn's tree arrays refuses it before anything runs on it ...
    audit = run_onnxgate("run", path, "--sample", d / "x.npy", "--timeout", "60")
    _assert_contained(audit, "nodes['left_child'][0]", "outside")
    # ... and when the user overrides the audit, the crash stays in the worker
    result = run_onnxgate("run", path, "--sample", d / "x.npy", "--trust-code", "--timeout", "60")
    _assert_contained(result, "oob.skops", "worker")


def test_cyclic_tree_is_stopped_by_timeout(iris):
    d, X, y = iris

    def cycle(nodes):
        nodes["left_child"][0] = nodes["right_child"][0] = 0

    path = _forest_with(d, X, y, "cycle.skops", cycle)
    _assert_contained(run_onnxgate("run", path, "--sample", d / "x.npy"), "cycle")  # the audit sees it
    start = time.monotonic()
    result = run_onnxgate("run", path, "--sample", d / "x.npy", "--trust-code", "--timeout", "5")
    _assert_contained(result, "cycle.skops", "within 5s")
    assert time.monotonic() - start < 90


@pytest.fixture(scope="module")
def boosting_data(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    d = tmp_path_factory.mktemp("boost")
    np.save(d / "x.npy", X[:16])
    return d, X, y


def test_xgboost_json_with_out_of_range_left_children_fails_alone(boosting_data):
    xgb = pytest.importorskip("xgboost")
    d, X, y = boosting_data
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, label=y), num_boost_round=5)
    good = d / "good.json"
    booster.save_model(good)
    doc = json.loads(good.read_text())
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][0] = 10**8
    bad = d / "bad.json"
    bad.write_text(json.dumps(doc))
    assert run_onnxgate("run", good, "--sample", d / "x.npy").code == 0  # the same model, intact, passes
    _assert_contained(run_onnxgate("run", bad, "--sample", d / "x.npy", "--timeout", "60"), "bad.json")


def test_lightgbm_text_with_corrupt_split_feature_fails_alone(boosting_data):
    lgb = pytest.importorskip("lightgbm")
    d, X, y = boosting_data
    model = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, label=y), num_boost_round=5)
    good = d / "good.txt"
    model.save_model(good)
    bad = d / "bad.txt"
    bad.write_text(re.sub(r"split_feature=(\d+)", "split_feature=100000000", good.read_text(), count=1))
    assert run_onnxgate("run", good, "--sample", d / "x.npy").code == 0
    _assert_contained(run_onnxgate("run", bad, "--sample", d / "x.npy", "--timeout", "60"), "bad.txt")


def test_the_parent_imports_no_framework_on_the_validation_path(iris):
    """Load, convert and reference all happen in the worker: sklearn never enters the parent."""
    d, X, y = iris
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    sio.dump(LogisticRegression(max_iter=500).fit(X, y), d / "lr.skops")
    code = (
        "import sys; from onnxgate.cli import main; rc = main(['-q', 'run', sys.argv[1], '--sample', sys.argv[2]]);"
        "print('LEAKED', sorted(m for m in ('sklearn', 'skops', 'torch', 'tensorflow') if m in sys.modules)); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(d / "lr.skops"), str(d / "x.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "LEAKED []" in proc.stdout, proc.stdout


def test_in_process_still_works_for_debugging(iris):
    d, X, y = iris
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    sio.dump(LogisticRegression(max_iter=500).fit(X, y), d / "lr2.skops")
    result = run_onnxgate("run", d / "lr2.skops", "--sample", d / "x.npy", "--in-process")
    assert result.code == 0, result.err


def test_a_killed_parent_leaves_no_framework_worker(iris):
    d, X, y = iris
    code = (
        "import sys, os, time; from onnxgate.pipelines.run import load_source;"
        "r = load_source(sys.argv[1], sample=sys.argv[2]);"
        "print('WORKER', r._worker.process.pid, flush=True); time.sleep(120)"
    )
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    sio.dump(LogisticRegression(max_iter=500).fit(X, y), d / "lr3.skops")
    parent = subprocess.Popen([sys.executable, "-c", code, str(d / "lr3.skops"), str(d / "x.npy")], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line.startswith("WORKER"), line
        worker = int(line.split()[1])
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.1)
        assert not _alive(worker), f"framework worker {worker} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
