"""Hostile zoos: remote manifests naming local files, linked test data, trickling servers,
tampered caches, extraction debris, garbage partial downloads, one corrupt model in a directory.

A real HTTP server on 127.0.0.1 and real files; each test fails on the behaviour the issue reported.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest

from onnxgate.model_zoo.fetch import Cache, DeadlineError
from onnxgate.model_zoo.manifest import read_manifest
from onnxgate.model_zoo.zoo import fetch_zoo, verify_zoo
from tests.conftest import assert_user_error
from tests.model_zoo.test_zoo import build_zoo, indexed, server, zoo  # noqa: F401  (fixtures)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entry(indexed: Path, name: str) -> dict:
    return next(e for e in read_manifest(indexed) if e["model"] == name)


@pytest.mark.parametrize("ref", ["file:///etc/passwd", "/etc/passwd", "/proc/self/environ", "ftp://127.0.0.1/x"])
def test_a_remote_manifest_never_reaches_local_files(server, indexed, tmp_path, ref):
    local = Path("/etc/passwd")
    entry = _entry(indexed, "vision/linear")
    entry["model_path"] = ref
    meta = entry["metadata"]
    for key in ("model_with_data_path", "model_with_data_sha", "model_with_data_bytes"):
        meta.pop(key, None)
    meta["model_sha"], meta["model_bytes"] = _sha(local), local.stat().st_size  # the oracle's "right" answer
    name = f"hostile-{hashlib.md5(ref.encode()).hexdigest()[:8]}.json"
    (indexed.parent / name).write_text(json.dumps([entry]))
    [result] = fetch_zoo(server.url + name, cache=tmp_path / "c")
    assert result.error and result.path is None, result
    assert "refusing" in result.error or "HTTP 404" in result.error, result.error
    assert not (tmp_path / "c" / "sha256").exists() or not any((tmp_path / "c" / "sha256").rglob("*"))
    if not ref.startswith(("file:", "ftp:")):  # a path resolves against the manifest's URL, on the server
        assert server.requests_for(ref.lstrip("/"))


def test_zoo_index_never_follows_a_linked_test_data_directory(zoo, tmp_path, cli):
    d = tmp_path / "z"
    shutil.copytree(zoo / "vision" / "linear", d / "linear", ignore=shutil.ignore_patterns("*.tar.gz"))
    secret = tmp_path / "secret"
    shutil.copytree(d / "linear" / "test_data_set_0", secret)
    (secret / "secret.txt").write_text("private")
    shutil.rmtree(d / "linear" / "test_data_set_1")
    (d / "linear" / "test_data_set_1").symlink_to(secret, target_is_directory=True)
    r = cli("zoo", "index", d, "-o", d / "ONNX_HUB_MANIFEST.json")
    assert_user_error(r, "test_data_set_1", "symbolic link")
    assert not (d / "ONNX_HUB_MANIFEST.json").exists()
    assert not list((d / "linear").glob("*.tar.gz"))


def test_a_trickling_server_is_given_up_on_at_the_deadline(server, indexed, tmp_path):
    meta = _entry(indexed, "vision/linear")["metadata"]
    path = meta["model_with_data_path"]
    server.faults[path] = ["trickle"]
    start = time.monotonic()
    with pytest.raises(DeadlineError, match="deadline"):
        Cache(tmp_path / "c", deadline=1.5, backoff=0.01).fetch(server.url + path, sha256=meta["model_with_data_sha"])
    assert time.monotonic() - start < 4


def test_fetch_and_verify_take_a_checked_timeout(cli, indexed):
    for verb in ("fetch", "verify"):
        for bad in ("0", "-1", "nan", "inf"):
            assert_user_error(cli("zoo", verb, indexed, "--timeout", bad), "--timeout")
    assert_user_error(cli("zoo", "verify", indexed, "--jobs", "0"), "--jobs")


def _extracted(cache: Path, sha: str) -> Path:
    return cache / "extracted" / sha


@pytest.mark.parametrize("tamper", ["output", "model", "extra file", "missing file"])
def test_a_tampered_extracted_cache_is_rebuilt(server, indexed, tmp_path, tamper):
    url = server.url + "ONNX_HUB_MANIFEST.json"
    meta = _entry(indexed, "vision/linear")["metadata"]
    cache = tmp_path / "c"
    first = verify_zoo(url, models=["vision/linear"], cache=cache, in_process=True)
    assert first.passed
    tree = _extracted(cache, meta["model_with_data_sha"])
    out = next(tree.rglob("output_0.pb"))
    if tamper == "output":
        out.write_bytes(out.read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    elif tamper == "model":
        next(tree.rglob("model.onnx")).write_bytes(b"garbage")
    elif tamper == "extra file":
        (out.parent / "output_1.pb").write_bytes(out.read_bytes())
    else:
        out.unlink()
    again = verify_zoo(url, models=["vision/linear"], cache=cache, in_process=True)
    assert again.passed, again.table()


def test_extraction_debris_is_gone_after_the_next_run(server, indexed, tmp_path):
    url = server.url + "ONNX_HUB_MANIFEST.json"
    sha = _entry(indexed, "vision/linear")["metadata"]["model_with_data_sha"]
    debris = tmp_path / "c" / "extracted" / f".{sha[:12]}.k1ll3d"  # what kill -9 mid-extraction leaves
    debris.mkdir(parents=True)
    (debris / "model.onnx").write_bytes(b"\0" * 1_000_000)
    assert verify_zoo(url, models=["vision/linear"], cache=tmp_path / "c", in_process=True).passed
    assert not debris.exists()
    assert [p.name for p in (tmp_path / "c" / "extracted").iterdir()] == [sha]


def test_a_garbage_partial_download_restarts_from_zero(server, indexed, tmp_path):
    meta = _entry(indexed, "vision/relu_softmax")["metadata"]
    path, sha = meta["model_with_data_path"], meta["model_with_data_sha"]
    part = tmp_path / "c" / "partial" / f"{sha}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that is no prefix of the archive")
    got = Cache(tmp_path / "c").fetch(server.url + path, sha256=sha, size=meta["model_with_data_bytes"])
    assert got.path.read_bytes() == (indexed.parent / path).read_bytes() and not part.exists()
    assert [r[1] for r in server.requests_for(path)] == ["bytes=40-", None]  # resumed, then from zero


def test_one_corrupt_model_fails_alone_in_a_zoo_directory(zoo, tmp_path, cli):
    d = tmp_path / "z"
    shutil.copytree(zoo, d, ignore=shutil.ignore_patterns("*.tar.gz", "ONNX_HUB_MANIFEST.json"))
    (d / "vision" / "linear" / "model.onnx").write_bytes(b"\x08\x07garbage")
    report = verify_zoo(d, in_process=True)
    status = {r.name: r.status for r in report.results}
    assert status["vision/linear"] == "load_failed"
    assert status["vision/relu_softmax"] == "passed" and status["tabular/iris_logreg"] == "passed"
