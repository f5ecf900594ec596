"""The one loop (judge.run_cases) on real ONNX Runtime sessions in real worker processes.

An endless Loop model must fail alone, as a "timeout" case, on every path that runs ONNX
Runtime: validate --evidence (the CLI, in a subprocess), the optimised variants, the gate's
drift replay against a published version, zoo verify, and localisation. A model with
external data is opened by path, so a decoy weights.bin in the working directory is never
read. A parent killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from onnxgate.inputs.evidence import write_test_data_set
from onnxgate.judge.run_cases import run_cases
from onnxgate.judge.tolerances import TolerancePolicy
from onnxgate.runtime.isolation import IsolationPolicy, WorkerPool
from onnxgate.runtime.ort_runner import OrtRunner, SessionSpec
from onnxgate.runtime.runner import RunError
from tests.conftest import ROOT
from tests.runtime.loop_models import endless_loop, scaled_relu, with_external_weights

X = np.array([[1.0, -2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, 4.0, -3.0], [2.0, 2.0, 2.0], [-5.0, 1.0, 0.0]], np.float32)
TIMEOUT = 3.0


@pytest.fixture
def pool():
    p = WorkerPool(max_workers=1)
    yield p
    p.close()


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]))


# -- the loop itself -----------------------------------------------------------------------


def test_loop_passes_matching_references_and_fails_wrong_ones(pool):
    runner = OrtRunner(SessionSpec(scaled_relu(2.0)), pool=pool)
    right = {"x": {"Y": np.maximum(X * 2.0, 0)}, "x1": {"Y": np.maximum(X[:1] * 2.0, 0)}}
    cases = run_cases(runner, [("x", {"X": X}), ("x1", {"X": X[:1]})], right, policy=TolerancePolicy())
    assert [c.status for c in cases] == ["passed", "passed"]
    assert cases[0].provider == "CPUExecutionProvider" and cases[0].input_shapes == {"X": [5, 3]}
    assert cases[0].providers_used == ["CPUExecutionProvider"]
    wrong = {"x": {"Y": np.maximum(X * 3.0, 0)}}
    (case,) = run_cases(runner, [("x", {"X": X})], wrong, policy=TolerancePolicy())
    assert case.status == "failed" and case.outputs[0].mismatched > 0


def test_a_model_that_cannot_load_is_a_load_error_on_every_case(pool):
    runner = OrtRunner(SessionSpec(b"not an onnx model", label="junk"), pool=pool)
    cases = run_cases(runner, [("a", {"X": X}), ("b", {"X": X[:1]})], {}, policy=TolerancePolicy())
    assert [(c.status, c.error_kind) for c in cases] == [("error", "load"), ("error", "load")]
    assert pool.started == 1  # the failed load is remembered, not retried in a fresh worker


def test_reference_errors_and_explanations_land_in_the_case(pool):
    runner = OrtRunner(SessionSpec(scaled_relu(1.0)), pool=pool)
    (ok, bad) = run_cases(
        runner, [("a", {"X": X}), ("b", {"X": np.zeros((2, 4), np.float32)})], {"a": {"Y": np.maximum(X, 0)}},
        policy=TolerancePolicy(), reference_errors={"a": "the original failed here"},
        explain=lambda name, feeds, exc: f"[{name}] {exc.kind}",
    )
    assert ok.error == "the original failed here"
    assert bad.error == "[b] run" and bad.error_kind == "run"


def test_endless_loop_times_out_alone_and_the_runner_stops(pool):
    runner = OrtRunner(SessionSpec(endless_loop(), isolation=IsolationPolicy(timeout=TIMEOUT)), pool=pool)
    start = time.monotonic()
    first, second = run_cases(runner, [("a", {"X": X}), ("b", {"X": X[:1]})], {"a": {}, "b": {}}, policy=TolerancePolicy())
    assert time.monotonic() - start < TIMEOUT + 15
    assert first.error_kind == "timeout" and f"within {TIMEOUT:g}s" in first.error
    assert second.error_kind == "timeout" and "not run" in second.error
    good = OrtRunner(SessionSpec(scaled_relu(1.0)), pool=pool)  # the pool goes on with a fresh worker
    (case,) = run_cases(good, [("a", {"X": X})], {"a": {"Y": np.maximum(X, 0)}}, policy=TolerancePolicy())
    assert case.status == "passed"


def test_run_error_kinds_are_checked():
    assert RunError("x", "memory").kind == "memory"
    with pytest.raises(ValueError):
        RunError("x", "exploded")


# -- every path: validate --evidence, variants, gate drift replay, zoo verify, localize ----------


def _evidence(tmp_path: Path, model: bytes) -> tuple[Path, Path]:
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    write_test_data_set(tmp_path / "ev" / "test_data_set_0", {"X": X}, {"Y": X + 1})
    return path, tmp_path / "ev"


def test_validate_evidence_cli_stops_an_endless_loop_at_the_timeout(tmp_path):
    model, evidence = _evidence(tmp_path, endless_loop())
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "onnxgate", "validate", str(model), "--evidence", str(evidence), "--timeout", "5"],
        capture_output=True, text=True, timeout=120, env=_env(), cwd=tmp_path,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert time.monotonic() - start < 60
    assert "Traceback" not in proc.stdout + proc.stderr
    # the terse terminal says a case error once, on stdout, collapsed over the cases it hit
    failures = [line for line in proc.stdout.splitlines() if "did not finish running" in line]
    assert failures and "within 5s" in failures[0], (proc.stdout, proc.stderr)


def test_optimize_variants_stop_an_endless_loop_each_alone(tmp_path):
    from onnxgate.pipelines.optimize import optimize_variants

    cases = [("batch=5", {"X": X})]
    variants = optimize_variants(
        endless_loop(), cases, {"batch=5": {"Y": X + 1}}, ["Y"], [(5, {"X": X})],
        policy=TolerancePolicy(), threads=1, budget_s=0.05, isolation=IsolationPolicy(timeout=TIMEOUT),
    )
    ran = [v for v in variants if v.cases]
    assert ran and ran[0].name == "converted"
    for v in ran:
        assert [c.error_kind for c in v.cases] == ["timeout"], v.name
        assert not v.timings and not v.passed  # a hung variant is not timed
    assert variants.best is None


def test_optimize_variants_still_pass_and_time_a_good_model():
    from onnxgate.pipelines.optimize import optimize_variants

    cases = [("batch=5", {"X": X})]
    variants = optimize_variants(
        scaled_relu(2.0), cases, {"batch=5": {"Y": np.maximum(2 * X, 0)}}, ["Y"], [(5, {"X": X})],
        policy=TolerancePolicy(), threads=1, budget_s=0.05,
    )
    converted = variants.get("converted")
    assert converted.passed and converted.timings[5].repetitions >= 10


def test_gate_drift_replay_stops_an_endless_loop(tmp_path):
    import onnx

    from onnxgate.judge.report import Report
    from onnxgate.model_zoo.manifest import io_ports
    from onnxgate.pipelines.gate import compare_with_published

    published = tmp_path / "registry" / "m" / "1.0"
    write_test_data_set(published / "test_data_set_0", {"X": X}, {"Y": np.maximum(2 * X, 0)})
    entry = {"model": "m", "model_path": "m/1.0/model.onnx",
             "metadata": {"version": "1.0", "io_ports": io_ports(onnx.load_model_from_string(scaled_relu(2.0)))}}
    new = tmp_path / "new.onnx"
    new.write_bytes(endless_loop())
    report = Report(source="s", framework=None, model={}, inputs={}, tolerances={}, versions={})
    compare_with_published(report, new, entry, tmp_path / "registry", TolerancePolicy(), "fail",
                           isolation=IsolationPolicy(timeout=TIMEOUT))
    (case,) = report.cases
    assert case.error_kind == "timeout" and "cannot run on published" in case.error
    assert report.status == "error"
    good = Report(source="s", framework=None, model={}, inputs={}, tolerances={}, versions={})
    compare_with_published(good, scaled_relu(2.0), entry, tmp_path / "registry", TolerancePolicy(), "fail")
    assert good.cases[0].status == "passed"


def _zoo(tmp_path: Path) -> Path:
    zoo = tmp_path / "zoo"
    for name, model, out in (("endless", endless_loop(), X + 1), ("relu", scaled_relu(2.0), np.maximum(2 * X, 0))):
        (zoo / name).mkdir(parents=True)
        (zoo / name / "model.onnx").write_bytes(model)
        write_test_data_set(zoo / name / "test_data_set_0", {"X": X}, {"Y": out})
    return zoo


def test_zoo_verify_cli_fails_an_endless_loop_alone_at_the_timeout(tmp_path):
    import json

    timeout = 10.0  # a zoo worker's limit covers the whole model, its imports included: room for a loaded machine
    report = tmp_path / "zoo.json"
    proc = subprocess.run(
        [sys.executable, "-m", "onnxgate", "-q", "zoo", "verify", str(_zoo(tmp_path)), "--timeout", str(timeout),
         "--cache", str(tmp_path / "cache"), "--report", str(report)],
        capture_output=True, text=True, timeout=120, env=_env(), cwd=tmp_path,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    results = {m["name"]: m for m in json.loads(report.read_text())["models"]}
    assert results["relu"]["status"] == "passed"
    assert results["endless"]["status"] == "error" and f"--timeout {timeout:g}s" in results["endless"]["reason"]


def test_zoo_verify_model_file_in_a_worker_stops_an_endless_loop(tmp_path, pool):
    from onnxgate.model_zoo.verify import data_dirs_of, verify_model_file

    zoo = _zoo(tmp_path)
    model = zoo / "endless" / "model.onnx"
    result = verify_model_file(model, data_dirs_of(model), name="endless", pool=pool,
                               isolation=IsolationPolicy(timeout=TIMEOUT))
    assert result.status == "error" and "did not finish running" in result.reason
    model = zoo / "relu" / "model.onnx"
    assert verify_model_file(model, data_dirs_of(model), name="relu", pool=pool).status == "passed"


def test_localize_reports_a_timeout_instead_of_hanging():
    import onnx

    from onnxgate.diagnose.localize import localize

    loc = localize(onnx.load_model_from_string(endless_loop()), {"X": X}, isolation=IsolationPolicy(timeout=TIMEOUT))
    assert loc.error_kind == "timeout" and loc.divergence is None
    assert loc.message().startswith("could not localise:")


# -- external data: opened by path, from the model's own directory ----------------------------


@pytest.fixture
def external(tmp_path):
    """A MatMul model with weights.bin next to it, and an unrelated working directory whose
    weights.bin has the same size and other values."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 4)).astype(np.float32)
    model = with_external_weights(tmp_path / "model", weights)
    write_test_data_set(tmp_path / "model" / "ev" / "test_data_set_0", {"X": X}, {"Y": X @ weights})
    decoy = tmp_path / "elsewhere"
    decoy.mkdir()
    (decoy / "weights.bin").write_bytes((weights + 10).tobytes())
    return model, decoy, weights


def test_the_decoy_would_be_read_from_bytes(external, monkeypatch):
    """The control: handed bytes, ONNX Runtime resolves weights.bin against the working directory."""
    model, decoy, weights = external
    monkeypatch.chdir(decoy)
    got = OrtRunner(SessionSpec(model.read_bytes(), isolation=IsolationPolicy(in_process=True))).infer({"X": X})
    assert not np.allclose(got["Y"], X @ weights)


@pytest.mark.parametrize("in_process", [False, True])
def test_external_data_model_is_opened_by_path(external, monkeypatch, in_process):
    model, decoy, weights = external
    monkeypatch.chdir(decoy)
    runner = OrtRunner(SessionSpec.of(os.path.relpath(model, decoy), isolation=IsolationPolicy(in_process=in_process)))
    np.testing.assert_allclose(runner.infer({"X": X})["Y"], X @ weights, rtol=1e-5)


def test_external_data_model_validates_from_an_unrelated_directory(external):
    model, decoy, _ = external
    proc = subprocess.run(
        [sys.executable, "-m", "onnxgate", "validate", str(model), "--evidence", str(model.parent / "ev")],
        capture_output=True, text=True, timeout=120, env=_env(), cwd=decoy,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.startswith("PASSED")


def test_external_data_model_verifies_and_localizes_from_an_unrelated_directory(external, monkeypatch):
    import onnx

    from onnxgate.diagnose.localize import localize
    from onnxgate.model_zoo.verify import verify_model_file

    model, decoy, weights = external
    monkeypatch.chdir(decoy)
    result = verify_model_file(model, [model.parent / "ev" / "test_data_set_0"], name="external")
    assert result.status == "passed", result.reason
    proto = onnx.load_model(str(model), load_external_data=False)
    loc = localize(proto, {"X": X}, model_dir=model.parent)
    assert loc.error is None and loc.compared == 1


# -- workers die with their parent -----------------------------------------------------------

_PARENT = """
import sys, time
from onnxgate.runtime.isolation import default_pool, create_session
sys.path.insert(0, {root!r})
from tests.runtime.loop_models import scaled_relu
create_session(scaled_relu(1.0))
(worker,) = default_pool()._idle
print(worker.process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_parent_killed_with_sigkill_leaves_no_worker(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", _PARENT.format(root=str(ROOT))], stdout=subprocess.PIPE,
                              text=True, env=_env(), cwd=tmp_path)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 3
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), f"worker {worker} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
