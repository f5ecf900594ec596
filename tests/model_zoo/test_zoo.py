"""zoo index / fetch / verify against a real HTTP server on 127.0.0.1, with real models.

The zoo holds small real models: ONNX graphs whose stored outputs come from numpy (the
"original" computation), a scikit-learn model converted with skl2onnx whose stored
outputs come from scikit-learn, a tampered copy (weights perturbed after the test data
was written: must be a mismatch), and a model whose stored outputs are off by 1e-3 that
passes only through the tolerances in its data.json.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxgate.model_zoo.archive import ArchiveError, safe_extract
from onnxgate.model_zoo.fetch import Cache, ChecksumError, FetchError
from onnxgate.model_zoo.manifest import (
    ManifestError,
    model_entry,
    read_manifest,
    update_manifest,
)
from onnxgate.model_zoo.zoo import fetch_zoo, verify_zoo
from onnxgate.inputs.evidence import write_test_data_set
from tests.conftest import assert_user_error
from tests.model_zoo.zoo_server import start, stop

RNG = np.random.default_rng(0)
GOOD = ["vision/linear", "vision/relu_softmax", "tabular/iris_logreg", "vision/offset_tolerant"]
BAD = ["vision/tampered", "vision/offset_strict"]


def _linear_model(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", w.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", w.shape[1]])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _write(d: Path, model: onnx.ModelProto, sets: list[tuple[dict, dict]], data_json: dict | None = None) -> None:
    d.mkdir(parents=True)
    onnx.save(model, str(d / "model.onnx"))
    for i, (inputs, outputs) in enumerate(sets):
        write_test_data_set(d / f"test_data_set_{i}", inputs, outputs)
    if data_json is not None:
        (d / "data.json").write_text(json.dumps(data_json))


def build_zoo(root: Path) -> None:
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    b = RNG.standard_normal(3).astype(np.float32)
    sets = []
    for n in (5, 1):
        x = RNG.standard_normal((n, 4)).astype(np.float32)
        sets.append(({"X": x}, {"Y": x @ w + b}))
    _write(root / "vision" / "linear", _linear_model(w, b), sets)

    # tampered: the same test data, weights perturbed in the ONNX file afterwards
    _write(root / "vision" / "tampered", _linear_model(w + np.float32(0.05), b), sets)

    # stored outputs off by 1e-3: passes only under data.json's atol 1e-2
    off = [({"X": i["X"]}, {"Y": o["Y"] + np.float32(1e-3)}) for i, o in sets]
    _write(root / "vision" / "offset_tolerant", _linear_model(w, b), off, {"atol": 1e-2, "rtol": 1e-3})
    _write(root / "vision" / "offset_strict", _linear_model(w, b), off)

    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["R"]), helper.make_node("Softmax", ["R"], ["Y"], axis=-1)],
        "relu_softmax",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 5])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 5])],
    )
    x = RNG.standard_normal((6, 5)).astype(np.float32)
    r = np.maximum(x, 0)
    y = np.exp(r - r.max(axis=1, keepdims=True))
    y = (y / y.sum(axis=1, keepdims=True)).astype(np.float32)
    _write(root / "vision" / "relu_softmax", helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), [({"X": x}, {"Y": y})])

    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, t = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(X, t)
    onx = to_onnx(clf, X[:1], options={"zipmap": False}, target_opset=17)
    rows = X[::10]
    outputs = {"label": clf.predict(rows).astype(np.int64), "probabilities": clf.predict_proba(rows).astype(np.float32)}
    _write(root / "tabular" / "iris_logreg", onx, [({"X": rows}, outputs)])


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    build_zoo(root)
    return root


@pytest.fixture(scope="module")
def indexed(zoo, tmp_path_factory):
    from onnxgate.cli import main

    assert main(["--quiet", "zoo", "index", str(zoo), "-o", str(zoo / "ONNX_HUB_MANIFEST.json")]) == 0
    return zoo / "ONNX_HUB_MANIFEST.json"


@pytest.fixture
def server(indexed):
    s = start(indexed.parent)
    yield s
    stop(s)


def _by_name(report) -> dict:
    return {r.name: r for r in report.results}


def test_index_writes_hub_schema(indexed, zoo):
    entries = read_manifest(indexed)
    assert sorted(e["model"] for e in entries) == sorted(GOOD + BAD)
    e = next(e for e in entries if e["model"] == "tabular/iris_logreg")
    meta = e["metadata"]
    assert e["model_path"] == "tabular/iris_logreg/model.onnx" and e["opset_version"] == 17 and e["onnx_version"] == "1.12"
    assert meta["tags"] == ["tabular"]
    assert meta["io_ports"]["inputs"] == [{"name": "X", "shape": [None, 4], "type": "tensor(float)"}]
    assert {o["name"] for o in meta["io_ports"]["outputs"]} == {"label", "probabilities"}
    from onnxgate._io import sha256_file

    assert meta["model_sha"] == sha256_file(zoo / e["model_path"])
    archive = zoo / meta["model_with_data_path"]
    assert meta["model_with_data_sha"] == sha256_file(archive) and meta["model_with_data_bytes"] == archive.stat().st_size
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert "iris_logreg/model.onnx" in names and "iris_logreg/test_data_set_0/output_1.pb" in names
    tolerant = next(e for e in entries if e["model"] == "vision/offset_tolerant")
    assert tolerant["metadata"]["tolerances"] == {"atol": 1e-2, "rtol": 1e-3}
    # deterministic: indexing again gives the same archive bytes
    again = model_entry(zoo / "tabular" / "iris_logreg", name="tabular/iris_logreg", root=zoo, tags=["tabular"])
    assert again["metadata"]["model_with_data_sha"] == meta["model_with_data_sha"]


def test_verify_over_http_finds_the_tampered_model(server, cli, tmp_path):
    url = server.url + "ONNX_HUB_MANIFEST.json"
    report_path, junit_path = tmp_path / "r.json", tmp_path / "j.xml"
    r = cli("zoo", "verify", url, "--cache", tmp_path / "cache", "--report", report_path, "--junit", junit_path)
    assert r.code == 1, r.err
    assert "passed: 4" in r.out and "mismatch: 2" in r.out, r.out
    assert "6/6" in r.err  # the progress bar
    report = json.loads(report_path.read_text())
    status = {m["name"]: m["status"] for m in report["models"]}
    assert status == {**{n: "passed" for n in GOOD}, **{n: "mismatch" for n in BAD}}
    tampered = next(m for m in report["models"] if m["name"] == "vision/tampered")
    assert "differ beyond atol=1e-07 rtol=0.001" in tampered["reason"]
    tolerant = next(m for m in report["models"] if m["name"] == "vision/offset_tolerant")
    assert tolerant["tolerances"] == {"atol": 1e-2, "rtol": 1e-3} and len(tolerant["data_sets"]) == 2
    suite = ET.parse(junit_path).getroot().find("testsuite")
    assert suite.get("tests") == "6" and suite.get("failures") == "2" and suite.get("errors") == "0"
    archives = [p for p, _, _ in server.log if p.endswith(".tar.gz")]
    assert len(archives) == 6

    # second run: everything comes from the cache, nothing is downloaded again
    server.log.clear()
    r2 = cli("--quiet", "zoo", "verify", url, "--cache", tmp_path / "cache", "--model", "vision/linear", "--model", "tabular/iris_logreg")
    assert r2.code == 0, r2.out
    assert [p for p, _, _ in server.log] == ["ONNX_HUB_MANIFEST.json"]
    assert "passed: 2" in r2.out


def test_verify_by_tag_and_local_directory(indexed, zoo, cli, tmp_path):
    r = cli("--quiet", "zoo", "verify", indexed, "--tag", "tabular", "--cache", tmp_path / "c")
    assert r.code == 0 and "passed: 1" in r.out, r.out
    # a bare zoo directory (no manifest) is verified in place
    bare = tmp_path / "bare"
    shutil.copytree(zoo / "vision", bare / "vision", ignore=shutil.ignore_patterns("*.tar.gz"))
    r = cli("--quiet", "zoo", "verify", bare)
    assert r.code == 1 and "passed: 3" in r.out and "mismatch: 2" in r.out, r.out


def test_fetch_then_checksum_mismatch_deletes_the_file(server, cli, tmp_path):
    url = server.url + "ONNX_HUB_MANIFEST.json"
    entry = next(e for e in read_manifest(url) if e["model"] == "vision/linear")
    archive = entry["metadata"]["model_with_data_path"]
    server.faults[archive] = ["wrong"]
    r = cli("--quiet", "zoo", "fetch", url, "--model", "vision/linear", "--model", "vision/relu_softmax", "--cache", tmp_path / "c")
    assert r.code == 1
    assert entry["metadata"]["model_with_data_sha"] in r.out and "sha256 mismatch" in r.out and "the download is" in r.out
    assert "vision/relu_softmax" in r.out and "(downloaded)" in r.out
    sha = entry["metadata"]["model_with_data_sha"]
    assert not (tmp_path / "c" / "sha256" / sha[:2] / sha).exists()
    assert not list((tmp_path / "c" / "partial").glob("*.part"))
    # the fault is gone: fetching again downloads and checks it
    r = cli("--quiet", "zoo", "fetch", url, "--model", "vision/linear", "--cache", tmp_path / "c")
    assert r.code == 0 and "(downloaded)" in r.out
    local = Path(r.out.split(": ", 1)[1].split(" (")[0])
    assert local.name == "model.onnx" and local.is_file()


def test_resume_after_dropped_connection(server, indexed, tmp_path):
    entry = next(e for e in read_manifest(indexed) if e["model"] == "tabular/iris_logreg")
    meta = entry["metadata"]
    path = meta["model_with_data_path"]
    half = meta["model_with_data_bytes"] // 2
    server.faults[path] = [f"reset:{half}"]
    cache = Cache(tmp_path / "c", backoff=0.01)
    got = cache.fetch(server.url + path, sha256=meta["model_with_data_sha"], size=meta["model_with_data_bytes"])
    assert not got.hit and got.path.read_bytes() == (indexed.parent / path).read_bytes()
    reqs = server.requests_for(path)
    assert reqs[0] == (path, None, 200)
    assert reqs[1][1] is not None and reqs[1][2] == 206  # resumed with Range
    start = int(reqs[1][1].split("=")[1].rstrip("-"))
    assert 0 < start <= half


def test_retry_after_503_and_bounded(server, indexed, tmp_path):
    entry = next(e for e in read_manifest(indexed) if e["model"] == "vision/linear")
    meta = entry["metadata"]
    path = meta["model_with_data_path"]
    server.faults[path] = ["503", "503"]
    cache = Cache(tmp_path / "c", backoff=0.01, retries=3)
    got = cache.fetch(server.url + path, sha256=meta["model_with_data_sha"])
    assert [s for _, _, s in server.requests_for(path)] == [503, 503, 200]
    assert got.path.is_file()
    server.faults[path] = ["503"] * 10
    with pytest.raises(FetchError, match="after 3 attempts: HTTP 503"):
        Cache(tmp_path / "c2", backoff=0.01, retries=2).fetch(server.url + path, sha256=meta["model_with_data_sha"])


def test_404_fails_that_model_not_the_run(server, tmp_path):
    url = server.url + "ONNX_HUB_MANIFEST.json"
    entry = next(e for e in read_manifest(url) if e["model"] == "vision/relu_softmax")
    server.faults[entry["metadata"]["model_with_data_path"]] = ["404"]
    report = verify_zoo(url, models=["vision/relu_softmax", "vision/linear"], cache=tmp_path / "c", backoff=0.01)
    res = _by_name(report)
    assert res["vision/relu_softmax"].status == "load_failed" and "HTTP 404" in res["vision/relu_softmax"].reason
    assert res["vision/linear"].status == "passed"
    assert res["vision/relu_softmax"].verdict == "error"  # the shared vocabulary: it could not be checked
    assert report.status == "error" and not report.passed


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "members, fragment",
    [
        ([_file("ok/model.onnx"), _file("../evil.txt")], "'..' component"),
        ([_file("/tmp/onnxgate-evil.txt")], "absolute path"),
        ([_link("m/escape", "../../../etc")], "is a link"),
        ([_link("m/hard", "/etc/passwd", tarfile.LNKTYPE)], "is a link"),
        ([_file(f"m/f{i}") for i in range(30)], "cap of 20 entries"),
        ([_file("m/big", b"\0" * 5000)], "cap of 4096 extracted bytes"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "too-many-files", "too-big"],
)
def test_malicious_archives_are_refused(tmp_path, members, fragment):
    archive = _tar(tmp_path / "a.tar.gz", members)
    target = tmp_path / "sandbox" / "out"
    with pytest.raises(ArchiveError, match=fragment):
        safe_extract(archive, target, max_bytes=4096, max_files=20)
    assert not (tmp_path / "sandbox" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/onnxgate-evil.txt").exists()


def test_malicious_archive_in_a_manifest_fails_that_model(tmp_path, indexed):
    """A symlink archive served over HTTP with a correct sha256: refused, cache tree not kept."""
    from onnxgate._io import sha256_file

    site = tmp_path / "site"
    site.mkdir()
    archive = _tar(site / "evil.tar.gz", [_file("m/model.onnx", b"x"), _link("m/test_data_set_0", "/etc")])
    good = next(e for e in read_manifest(indexed) if e["model"] == "vision/linear")
    shutil.copy(indexed.parent / good["metadata"]["model_with_data_path"], site / "linear.tar.gz")
    (site / good["model_path"]).parent.mkdir(parents=True)  # zoo verify checks model_path too: serve it
    shutil.copy(indexed.parent / good["model_path"], site / good["model_path"])
    entries = [
        {"model": "evil", "model_path": "m/model.onnx", "opset_version": 17,
         "metadata": {"model_sha": "0" * 64, "model_with_data_path": "evil.tar.gz",
                      "model_with_data_sha": sha256_file(archive), "model_with_data_bytes": archive.stat().st_size}},
        {**good, "metadata": {**good["metadata"], "model_with_data_path": "linear.tar.gz"}},
    ]
    (site / "ONNX_HUB_MANIFEST.json").write_text(json.dumps(entries))
    s = start(site)
    try:
        report = verify_zoo(s.url + "ONNX_HUB_MANIFEST.json", cache=tmp_path / "c")
    finally:
        stop(s)
    res = _by_name(report)
    assert res["evil"].status == "load_failed" and "is a link" in res["evil"].reason
    assert res["vision/linear"].status == "passed"
    assert not (tmp_path / "c" / "extracted" / entries[0]["metadata"]["model_with_data_sha"]).exists()


def test_concurrent_fetches_share_the_cache(server, indexed, tmp_path):
    """Two processes fetch the same slow file into one cache at once: both succeed, one download."""
    entry = next(e for e in read_manifest(indexed) if e["model"] == "tabular/iris_logreg")
    path = entry["metadata"]["model_with_data_path"]
    server.faults[path] = ["slow", "slow"]
    url = server.url + "ONNX_HUB_MANIFEST.json"
    args = [sys.executable, "-m", "onnxgate", "--quiet", "zoo", "fetch", url, "--model", "tabular/iris_logreg", "--cache", str(tmp_path / "c")]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    states = sorted(o.strip().rsplit("(", 1)[1] for o, _ in outs)
    assert states == ["cached)", "downloaded)"], outs
    assert len([r for r in server.requests_for(path) if r[2] == 200]) == 1
    sha = entry["metadata"]["model_with_data_sha"]
    assert (tmp_path / "c" / "sha256" / sha[:2] / sha).read_bytes() == (indexed.parent / path).read_bytes()


def test_concurrent_manifest_updates_lose_nothing(indexed, tmp_path):
    base = read_manifest(indexed)[0]
    target = tmp_path / "ONNX_HUB_MANIFEST.json"

    def writer(k: int) -> None:
        for j in range(5):
            update_manifest(target, [{**base, "model": f"m{k}-{j}"}])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e["model"] for e in read_manifest(target)) == sorted(f"m{k}-{j}" for k in range(6) for j in range(5))
    update_manifest(target, [{**base, "model": "m0-0", "opset_version": 18}])  # same key: replaced
    entries = read_manifest(target)
    assert len(entries) == 30 and next(e for e in entries if e["model"] == "m0-0")["opset_version"] == 18


def test_worker_crash_fails_only_its_model(indexed, tmp_path, monkeypatch):
    from onnxgate.model_zoo.pool import CRASH_ENV

    monkeypatch.setenv(CRASH_ENV, "vision/relu_softmax")
    report = verify_zoo(indexed, models=["vision/linear", "vision/relu_softmax", "tabular/iris_logreg", "vision/tampered"],
                        jobs=2, cache=tmp_path / "c")
    res = _by_name(report)
    assert res["vision/relu_softmax"].status == "error" and "SIGSEGV" in res["vision/relu_softmax"].reason
    assert res["vision/linear"].status == "passed" and res["tabular/iris_logreg"].status == "passed"
    assert res["vision/tampered"].status == "mismatch"
    assert [r.name for r in report.results] == ["tabular/iris_logreg", "vision/linear", "vision/relu_softmax", "vision/tampered"]  # manifest order


def test_default_single_worker_isolates_crash_and_hang(indexed, tmp_path, monkeypatch, cli):
    """--jobs 1 still runs in a worker: a segfault or a hang fails that model, the run goes on."""
    from onnxgate.model_zoo.pool import CRASH_ENV, HANG_ENV

    monkeypatch.setenv(CRASH_ENV, "vision/relu_softmax")
    monkeypatch.setenv(HANG_ENV, "vision/linear")
    start = time.monotonic()
    result = cli("-q", "zoo", "verify", indexed, "--cache", tmp_path / "c", "--timeout", "3",
                 "--report", tmp_path / "r.json", "--model", "vision/linear", "--model", "vision/relu_softmax",
                 "--model", "tabular/iris_logreg")
    assert result.code == 1
    assert time.monotonic() - start < 60
    res = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())["models"]}
    assert "SIGSEGV" in res["vision/relu_softmax"]["reason"]
    assert "--timeout 3s" in res["vision/linear"]["reason"]
    assert res["tabular/iris_logreg"]["status"] == "passed"


def test_external_data_outside_the_model_directory_is_refused(tmp_path):
    d = tmp_path / "zoo" / "ext"
    w = np.ones((4, 3), np.float32)
    model = _linear_model(w, np.zeros(3, np.float32))
    x = np.ones((2, 4), np.float32)
    _write(d, model, [({"X": x}, {"Y": x @ w})])
    m = onnx.load(str(d / "model.onnx"))
    (tmp_path / "secret.bin").write_bytes(w.tobytes())
    t = next(i for i in m.graph.initializer if i.name == "W")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../secret.bin")
    onnx.save(m, str(d / "model.onnx"))
    report = verify_zoo(tmp_path / "zoo")
    assert report.results[0].status == "load_failed" and "outside the model's directory" in report.results[0].reason
    with pytest.raises(Exception, match="outside the model's directory"):
        model_entry(d, name="ext", root=tmp_path / "zoo")


def test_bad_manifests_are_user_errors(tmp_path, cli, indexed):
    bad = tmp_path / "ONNX_HUB_MANIFEST.json"
    bad.write_text("{not json")
    assert_user_error(cli("zoo", "verify", bad), "is not valid JSON")
    bad.write_text(json.dumps([{"model": "x", "model_path": "x.onnx", "metadata": {"model_sha": "abc"}}]))
    assert_user_error(cli("zoo", "verify", bad), "metadata.model_sha must be 64")
    bad.write_text(json.dumps({"model": "x"}))
    assert_user_error(cli("zoo", "fetch", bad), "must be a JSON list")
    assert_user_error(cli("zoo", "verify", tmp_path / "missing.json"), "does not exist")
    assert_user_error(cli("zoo", "verify", indexed, "--model", "nope"), "no model named 'nope'", "known models:")
    assert_user_error(cli("zoo", "verify", indexed, "--jobs", "0"), "--jobs", "between 1 and 256")
    assert_user_error(cli("zoo", "index", tmp_path / "empty-does-not-exist", "-o", tmp_path / "m.json"), "is not a directory")
    assert_user_error(cli("zoo", "verify", indexed, "--report", tmp_path / "no" / "r.json"), "does not exist")
    assert cli("zoo").code == 2
    with pytest.raises(ManifestError):
        read_manifest(tmp_path)


def test_zoo_verify_imports_no_framework(indexed, tmp_path):
    code = (
        "import sys; from onnxgate.cli import main; "
        f"rc = main(['--quiet', 'zoo', 'verify', {str(indexed)!r}, '--model', 'vision/linear', '--cache', {str(tmp_path / 'c')!r}]); "
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'sklearn') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_checksum_error_type(server, indexed, tmp_path):
    entry = read_manifest(indexed)[0]
    path = entry["metadata"]["model_with_data_path"]
    with pytest.raises(ChecksumError, match="the file was deleted"):
        Cache(tmp_path / "c").fetch(server.url + path, sha256="f" * 64)
    assert fetch_zoo(indexed, models=[entry["model"]], cache=tmp_path / "c")[0].error is None


def test_a_later_run_resumes_a_kept_partial_download(server, indexed, tmp_path):
    entry = next(e for e in read_manifest(indexed) if e["model"] == "vision/relu_softmax")
    meta = entry["metadata"]
    path, sha = meta["model_with_data_path"], meta["model_with_data_sha"]
    data = (indexed.parent / path).read_bytes()
    part = tmp_path / "c" / "partial" / f"{sha}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100])  # what an interrupted earlier run left behind
    got = Cache(tmp_path / "c").fetch(server.url + path, sha256=sha, size=meta["model_with_data_bytes"])
    assert got.path.read_bytes() == data and not part.exists()
    assert server.requests_for(path) == [(path, "bytes=100-", 206)]
