"""``--engine ray`` on a real local Ray runtime (2 CPUs, started once for the module).

The Ray engine must give the verdicts the local engine gives: on the ONNX backend test
models shipped in the ``onnx`` package, on a zoo with a tampered model (a failure both must
catch), with a model that crashes its worker or hangs (it fails alone), and for the gate on
a real git repository with a model whose committed ONNX file was broken. Without Ray,
``--engine ray`` is a one-line user error naming the extra.
"""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import onnx
import pytest

from onnxgate.model_zoo.zoo import verify_zoo
from tests.conftest import assert_user_error, run_onnxgate

ray = pytest.importorskip("ray")

# One Ray runtime for the module: under `pytest -n 2 --dist loadgroup` (make test) every test
# here runs on the same xdist worker, so the runtime starts once, not once per worker.
pytestmark = pytest.mark.xdist_group("ray")

SUITES = ("pytorch-converted", "pytorch-operator", "simple")
DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime with 2 CPUs for every test here (its start-up costs ~10 s)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    from tests.model_zoo.test_zoo import build_zoo

    root = tmp_path_factory.mktemp("zoo")
    build_zoo(root)
    return root


def _statuses(report) -> dict[str, str]:
    return {r.name: r.status for r in report.results}


@pytest.mark.slow  # the Ray runtime's start-up alone is ~10 s on 2 cores
def test_backend_corpus_verdicts_match_jobs_1(ray_runtime, tmp_path):
    root = tmp_path / "corpus"
    for suite in SUITES:
        shutil.copytree(DATA / suite, root / suite)
    local = verify_zoo(root, jobs=1)
    remote = verify_zoo(root, jobs=2, engine="ray")
    assert len(remote.results) == len(local.results) == 140
    assert [r.name for r in remote.results] == [r.name for r in local.results]  # the report keeps the zoo's order
    assert _statuses(remote) == _statuses(local)
    assert remote.counts["passed"] >= 90 and remote.as_dict()["engine"] == "ray"


@pytest.mark.slow
def test_a_crashing_and_a_hanging_model_fail_alone_on_ray(ray_runtime, small_zoo, monkeypatch, tmp_path):
    """The fault-injection variables travel to the Ray tasks with the rest of the ONNXGATE_* environment."""
    from onnxgate.model_zoo.pool import CRASH_ENV, HANG_ENV

    models = ["vision/linear", "vision/relu_softmax", "tabular/iris_logreg", "vision/tampered"]
    clean = verify_zoo(small_zoo, models=models, engine="ray", jobs=2)
    assert _statuses(clean) == {"vision/linear": "passed", "vision/relu_softmax": "passed",
                                "tabular/iris_logreg": "passed", "vision/tampered": "mismatch"}
    monkeypatch.setenv(CRASH_ENV, "vision/relu_softmax")
    monkeypatch.setenv(HANG_ENV, "vision/linear")
    faulty = verify_zoo(small_zoo, models=models, engine="ray", jobs=2, timeout=5)
    by_name = {r.name: r for r in faulty.results}
    assert by_name["vision/relu_softmax"].status == "error" and "SIGSEGV" in by_name["vision/relu_softmax"].reason
    assert by_name["vision/linear"].status == "error" and "--timeout 5s" in by_name["vision/linear"].reason
    assert by_name["tabular/iris_logreg"].status == "passed"
    assert by_name["vision/tampered"].status == "mismatch"
    assert faulty.status == "error"


def test_a_task_the_cluster_cannot_hold_fails_at_once(ray_runtime, monkeypatch):
    """A GPU request on this CPU-only runtime: Ray would keep it pending for ever; it fails alone, now."""
    from onnxgate.engines import CallFailed, EngineSettings
    from onnxgate.engines.calls import forwarded_env
    from onnxgate.engines.ray_engine import map_tasks

    monkeypatch.setenv("ONNXGATE_PROBE", "seen")
    got = dict(map_tasks(forwarded_env, [(), ()], [{"num_cpus": 1, "num_gpus": 1}, {"num_cpus": 1}], EngineSettings("ray", 2)))
    assert isinstance(got[0], CallFailed) and "no node with 1 GPU (it has 2 CPU, 0 GPU)" in got[0].reason
    # the task ran in a Ray worker, whose environment is the one the runtime started with: set later in
    # the driver, a variable reaches tasks only because run_calls forwards ONNXGATE_* with each call
    assert "ONNXGATE_PROBE" not in got[1]


def test_zoo_verify_from_a_url_on_ray_fetches_each_blob_once_into_the_nodes_cache(ray_runtime, small_zoo, tmp_path, monkeypatch):
    """A manifest served over HTTP on 127.0.0.1, verified on Ray without --cache: each task resolves
    the cache of the node it runs on ($ONNXGATE_CACHE there, forwarded with the call; the driver
    names no directory). Blobs are content-addressed and locked one by one: two entries naming the
    same (slowly served) archive, run as two tasks at once on the 2 CPUs, download it once."""
    import json

    from onnxgate.cli import main
    from onnxgate.model_zoo.manifest import read_manifest
    from tests.model_zoo.zoo_server import start, stop

    root = tmp_path / "site"
    shutil.copytree(small_zoo, root)
    assert main(["--quiet", "zoo", "index", str(root), "-o", str(root / "ONNX_HUB_MANIFEST.json")]) == 0
    [linear] = [e for e in read_manifest(root / "ONNX_HUB_MANIFEST.json") if e["model"] == "vision/linear"]
    twin = {**linear, "model": "vision/linear-twin"}  # the same files under a second name
    (root / "twins.json").write_text(json.dumps([linear, twin]))
    archive = linear["metadata"]["model_with_data_path"]
    server = start(root)
    server.faults[archive] = ["slow", "slow"]  # both tasks are inside the download at once
    node_cache = tmp_path / "node-cache"
    monkeypatch.setenv("ONNXGATE_CACHE", str(node_cache))
    try:
        streamed: list[tuple[str, int, int]] = []
        report = verify_zoo(server.url + "twins.json", engine="ray", jobs=2, on_result=lambda r, i, n: streamed.append((r.name, i, n)))
    finally:
        stop(server)
    assert _statuses(report) == {"vision/linear": "passed", "vision/linear-twin": "passed"}
    assert sorted((i, n) for _, i, n in streamed) == [(1, 2), (2, 2)]  # each result as its task finished
    assert sorted(r.cache_hit for r in report.results) == [False, True]  # one downloaded, the other waited and reused it
    assert [r[2] for r in server.requests_for(archive)] == [200]
    assert [r[2] for r in server.requests_for(linear["model_path"])] == [200]
    sha = linear["metadata"]["model_with_data_sha"]
    assert (node_cache / "sha256" / sha[:2] / sha).read_bytes() == (root / archive).read_bytes()
    assert not list((node_cache / "partial").iterdir())


GATE_CONFIG = """\
[defaults]
providers = ["CPU"]

[[model]]
name = "iris"
source = "models/iris.skops"
sample = "data/iris.npy"
version = "1.0.0"

[[model]]
name = "iris_committed"
source = "models/iris.skops"
sample = "data/iris.npy"
onnx = "models/iris.onnx"
version = "1.0.0"
"""


def _junit_statuses(path: Path) -> dict[str, tuple[str, str, str]]:
    return {s.get("name"): (s.get("tests"), s.get("failures"), s.get("errors")) for s in ET.parse(path).getroot().iter("testsuite")}


def _convert(skops_file: Path, out: Path) -> None:
    """skl2onnx in this process (the test's own model: no framework worker to start)."""
    import numpy as np
    import skops.io as sio
    from skl2onnx import to_onnx

    model = sio.load(skops_file, trusted=sio.get_untrusted_types(file=skops_file))
    onnx.save(to_onnx(model, np.zeros((1, 4), np.float32), options={"zipmap": False}), str(out))


@pytest.mark.slow
def test_gate_on_ray_gives_the_default_engines_result(ray_runtime, cli, tmp_path):
    from tests.pipelines import models
    from tests.pipelines.test_gate import _tampered, commit, git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    model, sample = models.iris(repo / "models")
    (repo / "data").mkdir()
    shutil.move(sample, repo / "data" / "iris.npy")
    _convert(model, repo / "models/iris.onnx")
    _tampered(repo / "models/iris.onnx")  # the committed ONNX file no longer matches the model
    (repo / "onnxgate.toml").write_text(GATE_CONFIG)
    (repo / ".gitignore").write_text("*.xml\n")
    commit(repo, "a good model and a broken ONNX file")

    def gate(*engine: str):
        junit = repo / f"junit{len(engine)}.xml"
        result = cli("gate", "--config", repo / "onnxgate.toml", "--junit", junit, *engine)
        return result, _junit_statuses(junit)

    (default, default_junit), (on_ray, ray_junit) = gate(), gate("--engine", "ray")
    assert default.code == on_ray.code == 1, (on_ray.out, on_ray.err)
    assert ray_junit == default_junit
    for result in (default, on_ray):
        assert "PASSED  iris 1.0.0" in result.out and "FAILED  iris_committed 1.0.0" in result.out, result.out


def test_engine_ray_without_ray_is_a_user_error_with_the_install_hint(tmp_path):
    """A real import failure: a ``ray`` package earlier on the path that raises ImportError.
    It is reported before the zoo is read, so no model runs and no report is written."""
    small_zoo = tmp_path / "zoo"
    blocker = tmp_path / "blocker" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('ray is blocked for this test')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", ""), *sys.path[:1]])
    result = run_onnxgate("zoo", "verify", small_zoo, "--engine", "ray", "--report", tmp_path / "r.json",
                          env={"PYTHONPATH": path})
    assert_user_error(result, "--engine ray needs the Python package 'ray'", "pip install 'onnxgate[ray]'")
    assert not (tmp_path / "r.json").exists()


def test_ray_address_needs_engine_ray_and_a_reachable_cluster(cli, tmp_path):
    small_zoo = tmp_path / "zoo"
    assert_user_error(cli("zoo", "verify", small_zoo, "--ray-address", "127.0.0.1:6379"), "--ray-address only applies with --engine ray")
    closed = _closed_port()
    result = cli("zoo", "verify", small_zoo, "--engine", "ray", "--ray-address", f"127.0.0.1:{closed}", "--report", tmp_path / "r.json")
    assert_user_error(result, f"cannot reach the Ray cluster at '127.0.0.1:{closed}'")  # at once: ray.init would retry for minutes
    assert not (tmp_path / "r.json").exists()
    assert_user_error(cli("gate", "--engine", "ray", "--ray-address", "nohost"), "is not HOST:PORT")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a port the OS just handed out and nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_gate_model_asks_ray_for_what_its_providers_need(tmp_path):
    from onnxgate.pipelines.config import load_config
    from onnxgate.pipelines.gate import model_resources

    tables = [("cpu", None), ("cuda", '["CUDA", "CPU"]'), ("tensorrt", '["TensorRT"]'), ("openvino", '["OpenVINO"]')]
    text = "".join(f'[[model]]\nname = "{n}"\nsource = "{n}.skops"\nversion = "1"\n' + (f"providers = {p}\n" if p else "")
                   for n, p in tables)
    (tmp_path / "onnxgate.toml").write_text(text)
    cfg = load_config(tmp_path / "onnxgate.toml", check_paths=False)
    assert {n: model_resources(cfg.model(n)) for n, _ in tables} == {
        "cpu": {"num_cpus": 1}, "cuda": {"num_cpus": 1, "num_gpus": 1},
        "tensorrt": {"num_cpus": 1, "num_gpus": 1}, "openvino": {"num_cpus": 1},
    }
