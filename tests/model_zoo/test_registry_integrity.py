"""A published registry under tampering: zoo verify checks every byte the manifest names,
in DIR mode and manifest mode, even with a warm cache; zoo index keeps what publish wrote.

Real publish (sklearn -> ONNX -> ORT), real files, real ``onnxgate`` subprocesses.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import assert_user_error, run_onnxgate
from tests.pipelines import models

MANIFEST = "ONNX_HUB_MANIFEST.json"
VERSION_DIR = Path("iris") / "1.0.0"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    from onnxgate.pipelines.publish import publish

    source, sample = models.iris(tmp_path_factory.mktemp("src"))
    reg = tmp_path_factory.mktemp("pub") / "reg"
    result = publish(source, reg, name="iris", version="1.0.0", sample=sample, tags=["tabular"])
    assert result.publication is not None
    return reg


@pytest.fixture
def reg(published, tmp_path) -> Path:
    copy = tmp_path / "site" / "reg"
    shutil.copytree(published, copy)
    return copy


def snapshot(root: Path) -> dict[str, str | None]:
    """Every file (sha256) and directory (None) under ``root``, hidden ones included."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def verify(target: Path, cache: Path):
    return run_onnxgate("--quiet", "zoo", "verify", target, "--cache", cache, "--in-process")


# -- tampering -------------------------------------------------------------------------


def double_coefficients(reg: Path) -> str:
    path = reg / VERSION_DIR / "model.onnx"
    model = onnx.load(str(path))
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "coefficients":
                attr.floats[:] = [2 * f for f in attr.floats]
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 2, init.name))
    onnx.save(model, str(path))
    return "iris/1.0.0/model.onnx"


def _float_output(directory: Path) -> Path:
    for f in sorted(directory.glob("output_*.pb")):
        t = onnx.TensorProto()
        t.ParseFromString(f.read_bytes())
        if numpy_helper.to_array(t).dtype.kind == "f":
            return f
    raise AssertionError(f"no float output in {directory}")


def _nudged(data: bytes) -> bytes:
    t = onnx.TensorProto()
    t.ParseFromString(data)
    return numpy_helper.from_array(numpy_helper.to_array(t) + np.float32(0.01), t.name).SerializeToString()


def nudge_loose_output(reg: Path) -> str:
    f = _float_output(reg / VERSION_DIR / "test_data_set_0")
    f.write_bytes(_nudged(f.read_bytes()))
    return f"iris/1.0.0/test_data_set_0/{f.name}"


def _rewrite_archive(reg: Path, *, update_manifest: bool) -> str:
    """Nudge the float output inside the archive (a valid, deterministic tar.gz again)."""
    archive = reg / VERSION_DIR / "iris-1.0.0.tar.gz"
    target = _float_output(reg / VERSION_DIR / "test_data_set_0").name
    out = io.BytesIO()
    with tarfile.open(archive) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None
            if data is not None and info.name.endswith(f"test_data_set_0/{target}"):
                data = _nudged(data)
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    archive.write_bytes(out.getvalue())
    if update_manifest:  # a tamperer who also rewrote the manifest: the loose files still disagree
        entries = json.loads((reg / MANIFEST).read_text())
        entries[0]["metadata"]["model_with_data_sha"] = hashlib.sha256(out.getvalue()).hexdigest()
        entries[0]["metadata"]["model_with_data_bytes"] = len(out.getvalue())
        (reg / MANIFEST).write_text(json.dumps(entries))
        return f"iris/1.0.0/test_data_set_0/{target}"
    return "iris/1.0.0/iris-1.0.0.tar.gz"


def nudge_archived_output(reg: Path) -> str:
    return _rewrite_archive(reg, update_manifest=False)


def nudge_archived_output_and_manifest(reg: Path) -> str:
    return _rewrite_archive(reg, update_manifest=True)


def append_to_archive(reg: Path) -> str:
    with open(reg / VERSION_DIR / "iris-1.0.0.tar.gz", "ab") as f:
        f.write(b"\0")
    return "iris/1.0.0/iris-1.0.0.tar.gz"


@pytest.mark.parametrize("tamper", [double_coefficients, nudge_loose_output, nudge_archived_output,
                                    nudge_archived_output_and_manifest, append_to_archive])
def test_a_tampered_registry_fails_zoo_verify_in_both_modes(reg, tmp_path, tamper):
    cache = tmp_path / "cache"
    for target in (reg, reg / MANIFEST):  # intact, and the cache now holds the genuine bytes
        r = verify(target, cache)
        assert r.code == 0 and "passed: 1" in r.out, (r.out, r.err)
    named = tamper(reg)
    for target in (reg, reg / MANIFEST):
        r = verify(target, cache)
        assert r.code == 1, (target, r.out, r.err)
        assert "tampered" in r.out and named in r.out, (target, r.out)
    report = tmp_path / "r.json"
    run_onnxgate("--quiet", "zoo", "verify", reg, "--cache", cache, "--in-process", "--report", report)
    [model] = json.loads(report.read_text())["models"]
    assert (model["verdict"], model["status"]) == ("failed", "tampered") and named in model["reason"]


# -- zoo index -------------------------------------------------------------------------


def test_index_into_its_own_manifest_round_trips_without_loss(reg):
    before = snapshot(reg)
    r = run_onnxgate("--quiet", "zoo", "index", reg, "-o", reg / MANIFEST)
    assert r.code == 0, r.err
    after = snapshot(reg)
    after.pop("." + MANIFEST + ".lock", None)
    before.pop("." + MANIFEST + ".lock", None)
    assert after == before  # the manifest's bytes included: names, tags, provenance, one archive
    [entry] = json.loads((reg / MANIFEST).read_text())
    assert entry["model"] == "iris" and entry["metadata"]["tags"] == ["tabular"] and "onnxgate" in entry["metadata"]


def test_index_elsewhere_leaves_the_registry_byte_identical_and_keeps_provenance(reg, tmp_path):
    before = snapshot(reg)
    out = reg.parent / "all.json"
    r = run_onnxgate("--quiet", "zoo", "index", reg, "-o", out)
    assert r.code == 0, r.err
    assert snapshot(reg) == before
    [published] = json.loads((reg / MANIFEST).read_text())
    [entry] = json.loads(out.read_text())
    assert entry["model_path"] == "reg/" + published["model_path"]
    assert entry["metadata"]["model_with_data_path"] == "reg/" + published["metadata"]["model_with_data_path"]
    for e in (entry, published):
        e["model_path"] = e["metadata"]["model_with_data_path"] = ""
    assert entry == published
    assert verify(out, tmp_path / "c").code == 0


def test_index_of_a_plain_directory_elsewhere_stages_archives_outside_it(reg, tmp_path):
    (reg / MANIFEST).unlink()
    before = snapshot(reg)
    out = reg.parent / "plain.json"
    assert run_onnxgate("--quiet", "zoo", "index", reg, "-o", out).code == 0
    assert snapshot(reg) == before
    [entry] = json.loads(out.read_text())
    assert entry["metadata"]["model_with_data_path"].startswith("plain-archives/reg/iris/1.0.0/")
    assert (reg.parent / entry["metadata"]["model_with_data_path"]).is_file()
    assert run_onnxgate("--quiet", "zoo", "index", reg, "-o", out).code == 0  # stable: one archive per version
    assert len(list((reg.parent / "plain-archives").rglob("*.tar.gz"))) == 1
    assert verify(out, tmp_path / "c").code == 0


def test_index_in_place_without_the_publish_manifest_keeps_one_archive_per_version(reg):
    archive = reg / VERSION_DIR / "iris-1.0.0.tar.gz"
    published = archive.read_bytes()
    (reg / MANIFEST).unlink()
    assert run_onnxgate("--quiet", "zoo", "index", reg, "-o", reg / MANIFEST).code == 0
    assert sorted(p.name for p in (reg / VERSION_DIR).glob("*.tar.gz")) == [archive.name]
    assert archive.read_bytes() == published  # deterministic: the same archive, not a second one
    [entry] = json.loads((reg / MANIFEST).read_text())
    assert entry["metadata"]["model_with_data_path"] == "iris/1.0.0/iris-1.0.0.tar.gz"


@pytest.mark.parametrize("published_manifest", [True, False])
def test_a_staging_directory_never_appears_in_an_index(reg, published_manifest):
    from onnxgate.model_zoo.zoo import open_zoo

    assert sorted(p.name for p in reg.iterdir() if not p.name.startswith(".")) == [MANIFEST, "iris"]  # lock and staging hidden
    assert (reg / f".{MANIFEST}.lock").is_file()
    if not published_manifest:
        (reg / MANIFEST).unlink()
    debris = reg / ".onnxgate-staging" / "4242-abc" / "1.0.0"
    shutil.copytree(reg / VERSION_DIR, debris)
    listed = [e["model"] for e in open_zoo(reg).entries]  # what zoo verify DIR checks
    out = reg / MANIFEST
    assert run_onnxgate("--quiet", "zoo", "index", reg, "-o", out).code == 0
    text = out.read_text()
    assert ".onnxgate-staging" not in text and [e["model"] for e in json.loads(text)] in (["iris"], ["iris/1.0.0"])
    assert listed in (["iris"], ["iris/1.0.0"])


def test_provenance_outside_git_keeps_no_absolute_path(reg):
    """Published from a temp dir outside any repository (and, run from the project, outside the
    working directory): the file name only."""
    [entry] = json.loads((reg / MANIFEST).read_text())
    prov = entry["metadata"]["onnxgate"]
    outside_cwd = not Path(tempfile.gettempdir()).resolve().is_relative_to(Path.cwd().resolve())
    if outside_cwd:
        assert prov["source"]["path"] == "iris.skops" and prov["source"]["relative_to"] == "file name only"
    assert prov["source"]["path"].endswith("iris.skops") and prov["sample"]["path"].endswith("iris.npy")
    assert prov["git"] is None and "CPUExecutionProvider" in prov["host"]["providers"]
    report = json.loads((reg / VERSION_DIR / "report.json").read_text())
    assert (report["source"], report["inputs"]["sample"]) == (prov["source"]["path"], prov["sample"]["path"])
    text = (reg / MANIFEST).read_text() + (reg / VERSION_DIR / "report.json").read_text()
    assert '"/' not in text  # no JSON string starts with an absolute path


def test_index_refuses_a_tampered_or_incomplete_published_registry(reg):
    double_coefficients(reg)
    before = snapshot(reg)
    assert_user_error(run_onnxgate("--quiet", "zoo", "index", reg, "-o", reg / MANIFEST), MANIFEST, "iris/1.0.0/model.onnx")
    before.pop("." + MANIFEST + ".lock", None)
    after = snapshot(reg)
    after.pop("." + MANIFEST + ".lock", None)
    assert after == before


def test_index_refuses_a_model_the_publish_manifest_does_not_list(reg):
    shutil.copytree(reg / VERSION_DIR, reg / "iris" / "2.0.0")
    assert_user_error(run_onnxgate("--quiet", "zoo", "index", reg, "-o", reg / MANIFEST), MANIFEST, "does not list", "2.0.0")
