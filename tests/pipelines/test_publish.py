"""Publishing: zoo layout, manifest with provenance, atomicity, locking, refusal to overwrite.

Real conversions, real ONNX Runtime, real processes racing on one registry, a real SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_user_error
from tests.pipelines import models

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(registry: Path) -> dict[str, str]:
    """Every visible file of a registry (staging debris excluded) with its sha256."""
    return {
        p.relative_to(registry).as_posix(): sha(p)
        for p in sorted(registry.rglob("*"))
        if p.is_file() and ".onnxgate-staging" not in p.parts and not p.name.endswith(".lock")
    }


def check_registry(registry: Path) -> list[dict]:
    """The manifest parses and every entry's files exist with the recorded sha256 and size."""
    from onnxgate.model_zoo.manifest import read_manifest

    entries = read_manifest(registry / "ONNX_HUB_MANIFEST.json")
    for e in entries:
        model = registry / e["model_path"]
        assert sha(model) == e["metadata"]["model_sha"], e["model_path"]
        archive = registry / e["metadata"]["model_with_data_path"]
        assert sha(archive) == e["metadata"]["model_with_data_sha"]
        assert archive.stat().st_size == e["metadata"]["model_with_data_bytes"]
    return entries


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    return models.iris(tmp_path_factory.mktemp("iris"))


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    return models.diabetes(tmp_path_factory.mktemp("diabetes"))


def test_publish_writes_zoo_layout_manifest_and_the_originals_outputs(cli, iris, tmp_path):
    source, sample = iris
    reg = tmp_path / "reg"
    r = cli("run", source, "--sample", sample, "--publish", reg, "--name", "iris", "--version", "1.0.0", "--tag", "tabular")
    assert r.code == 0, (r.out, r.err)
    assert "published iris 1.0.0" in r.out
    d = reg / "iris" / "1.0.0"
    assert sorted(p.name for p in d.iterdir()) == ["data.json", "iris-1.0.0.tar.gz", "model.onnx", "report.json", "test_data_set_0"]
    assert oct(os.stat(d / "model.onnx").st_mode & 0o777) != oct(0o600)  # shared registry: readable by others

    [entry] = check_registry(reg)
    assert entry["model"] == "iris" and entry["model_path"] == "iris/1.0.0/model.onnx"
    assert entry["opset_version"] >= 7 and entry["onnx_version"]
    meta = entry["metadata"]
    assert meta["tags"] == ["tabular"]
    assert meta["model_bytes"] == (d / "model.onnx").stat().st_size
    assert [p["name"] for p in meta["io_ports"]["inputs"]] == ["X"]
    prov = meta["onnxgate"]
    assert prov["status"] == "passed" and prov["framework"] == "sklearn" and prov["version"] == "1.0.0"
    assert prov["converter"].startswith("skl2onnx") and "scikit-learn" in prov["versions"]
    assert prov["providers"] == ["CPUExecutionProvider"]
    assert set(meta["tolerances"]) == {"atol", "rtol"}
    report = json.loads((d / "report.json").read_text())
    assert report["status"] == "passed" and report["model"]["sha256"] == meta["model_sha"]

    # test_data_set_0 holds the ORIGINAL's outputs (sklearn, float64), not ONNX Runtime's
    from onnxgate.inputs.evidence import read_test_data_set
    import skops.io as sio

    inputs, outputs = read_test_data_set(d / "test_data_set_0")
    model = sio.load(source, trusted=sio.get_untrusted_types(file=source))
    x = np.load(sample)
    np.testing.assert_array_equal(inputs["X"], x)
    np.testing.assert_array_equal(outputs["label"], model.predict(x.astype(np.float64)))
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(x.astype(np.float64)), rtol=1e-6)

    with tarfile.open(d / "iris-1.0.0.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("/model.onnx") for n in names) and any(n.endswith("test_data_set_0/output_1.pb") for n in names)

    # any zoo tool can read it: onnxgate's own verifier re-checks it with ONNX Runtime alone
    v = cli("zoo", "verify", reg / "ONNX_HUB_MANIFEST.json")
    assert v.code == 0, (v.out, v.err)


def test_existing_version_is_never_overwritten_without_force(cli, iris, diabetes, tmp_path):
    reg = tmp_path / "reg"
    assert cli("run", iris[0], "--sample", iris[1], "--publish", reg, "--name", "m", "--version", "1").code == 0
    before = snapshot(reg)
    # a different model under the same name and version is refused before any work
    r = cli("run", diabetes[0], "--sample", diabetes[1], "--publish", reg, "--name", "m", "--version", "1")
    assert_user_error(r, "m 1 is already published", "--force")
    assert snapshot(reg) == before
    r = cli("run", diabetes[0], "--sample", diabetes[1], "--publish", reg, "--name", "m", "--version", "1", "--force")
    assert r.code == 0 and "(replaced)" in r.out
    [entry] = check_registry(reg)
    assert entry["metadata"]["io_ports"]["inputs"][0]["shape"] == [None, 10]  # the diabetes model now
    assert not list((reg / ".onnxgate-staging").iterdir())  # the old version went with the staging dir


def test_failed_validation_publishes_nothing(cli, iris, tmp_path):
    reg = tmp_path / "reg"
    # float32 ONNX vs float64 scikit-learn cannot meet a zero tolerance: a real failed check
    r = cli("run", iris[0], "--sample", iris[1], "--atol", "0", "--rtol", "0",
            "--publish", reg, "--name", "iris", "--version", "1")
    assert r.code == 1, (r.out, r.err)
    assert "did not publish iris 1" in r.out
    assert not (reg / "ONNX_HUB_MANIFEST.json").exists() and not (reg / "iris").exists()

    from onnxgate.errors import OnnxgateError
    from onnxgate.pipelines.publish import publish, publish_report

    result = publish(iris[0], reg, name="iris", version="1", sample=iris[1], atol=0, rtol=0)
    assert not result.passed and result.publication is None
    with pytest.raises(OnnxgateError, match="validation failed"):
        publish_report(reg, name="iris", version="1", model=b"", report=result.report)
    assert not (reg / "iris").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--publish", "{reg}", "--version", "1"], "--publish needs --name"),
        (["--publish", "{reg}", "--name", "../evil", "--version", "1"], "invalid model name '../evil'"),
        (["--publish", "{reg}", "--name", "ok", "--version", "1/2"], "invalid version '1/2'"),
        (["--name", "x"], "--name only applies with --publish"),
    ],
)
def test_bad_publish_arguments_are_user_errors_before_any_work(cli, iris, tmp_path, args, fragment):
    reg = tmp_path / "reg"
    r = cli("run", iris[0], "--sample", iris[1], *[a.format(reg=reg) for a in args])
    assert_user_error(r, fragment)
    assert not reg.exists() and not (tmp_path / "evil").exists()


def test_debris_of_a_killed_commit_is_replaced_without_force(iris, tmp_path):
    """A version directory the manifest does not list (killed between rename and manifest) is not 'published'."""
    from onnxgate.pipelines.publish import publish

    reg = tmp_path / "reg"
    (reg / "iris" / "1").mkdir(parents=True)
    (reg / "iris" / "1" / "junk").write_text("half")
    result = publish(iris[0], reg, name="iris", version="1", sample=iris[1])
    assert result.publication.replaced
    assert not (reg / "iris" / "1" / "junk").exists()
    assert [e["model_path"] for e in check_registry(reg)] == ["iris/1/model.onnx"]


def _worker(reg: Path, name: str, model: tuple[Path, Path], start: Path, *versions: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "publish_worker.py"), str(reg), name, str(model[0]), str(model[1]), str(start), *versions],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


@pytest.mark.slow  # > 10 s on 2 cores
def test_concurrent_publishers_never_lose_or_corrupt_entries(iris, diabetes, tmp_path):
    """Three processes race on one registry: every distinct version lands; of one shared
    name and version, exactly one process wins and the others are refused."""
    reg, start = tmp_path / "reg", tmp_path / "go"
    versions = [f"1.{i}" for i in range(4)]
    procs = [
        _worker(reg, "iris", iris, start, *versions, "same:9"),
        _worker(reg, "diabetes", diabetes, start, "same:9", *versions),
        _worker(reg, "iris-b", iris, start, versions[0], "same:9", *versions[1:]),
    ]
    time.sleep(0.2)
    start.touch()
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    lines = [line for out, _ in outs for line in out.splitlines()]
    assert sum(line.endswith(" ok") for line in lines) == 3 * 4 + 1, lines
    assert sum(line.startswith("same 9 refused") and "already published" in line for line in lines) == 2, lines
    entries = check_registry(reg)
    assert sorted((e["model"], e["model_path"].split("/")[1]) for e in entries) == sorted(
        [(m, v) for m in ("iris", "diabetes", "iris-b") for v in versions] + [("same", "9")]
    )


@pytest.mark.slow  # > 10 s on 2 cores
def test_sigkill_mid_publish_leaves_registry_readable_and_unchanged(cli, iris, tmp_path):
    from onnxgate.model_zoo.manifest import read_manifest

    reg = tmp_path / "reg"
    assert cli("run", iris[0], "--sample", iris[1], "--publish", reg, "--name", "iris", "--version", "1").code == 0
    before = snapshot(reg)
    manifest_bytes = (reg / "ONNX_HUB_MANIFEST.json").read_bytes()
    big = models.big_mlp(tmp_path, width=500)
    cmd = [sys.executable, "-m", "onnxgate", "-q", "run", str(big[0]), "--sample", str(big[1]),
           "--trust-type", models.MLP_TYPE, "--publish", str(reg), "--name", "big", "--version", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    staging = reg / ".onnxgate-staging"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if staging.is_dir() and any(staging.iterdir()):  # it has started writing the new version
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the publish finished before it could be killed"
    assert any(staging.iterdir())  # it was killed mid-way: its half-written staging dir is left

    assert (reg / "ONNX_HUB_MANIFEST.json").read_bytes() == manifest_bytes
    assert [e["model"] for e in read_manifest(reg / "ONNX_HUB_MANIFEST.json")] == ["iris"]
    assert snapshot(reg) == before and not (reg / "big").exists()
    assert cli("zoo", "verify", reg).code == 0

    # the next publish of that version is not blocked and sweeps the dead publisher's staging dir
    r = cli("run", big[0], "--sample", big[1], "--trust-type", models.MLP_TYPE,
            "--publish", reg, "--name", "big", "--version", "1")
    assert r.code == 0, (r.out, r.err)
    assert not list(staging.iterdir())
    assert [e["model"] for e in check_registry(reg)] == ["iris", "big"]


def _validated(model: tuple[Path, Path]):
    from onnxgate.pipelines.run import convert, validate

    conv = convert(model[0], None, sample=model[1])
    try:
        report = validate(model[0], conv.model, conversion=conv)
    finally:
        conv.reference.close()
    assert report.passed
    return conv.model.SerializeToString(), report


def _version_files(reg: Path) -> dict[str, str]:
    d = reg / "m" / "1"
    return {p.relative_to(d).as_posix(): sha(p) for p in sorted(d.rglob("*")) if p.is_file() and p.name != "report.json"}


def test_force_republish_survives_a_crash_at_every_file_system_step(iris, diabetes, tmp_path, monkeypatch):
    """Crash before each file-system step of a --force commit: the old version is never lost, and after
    recovery the manifest and the files agree, on the whole old version or the whole new one."""
    import shutil

    from onnxgate.pipelines import publish as pub

    old_raw, old_report = _validated(iris)
    new_raw, new_report = _validated(diabetes)
    base = tmp_path / "base"
    pub.publish_report(base, name="m", version="1", model=old_raw, report=old_report)
    old_files = _version_files(base)
    outcomes = []
    for n in range(1, 40):
        reg = tmp_path / f"reg{n}"
        shutil.copytree(base, reg)
        monkeypatch.setattr(pub._Steps, "crash_at", n)
        try:
            pub.publish_report(reg, name="m", version="1", model=new_raw, report=new_report, force=True)
            crashed = False
        except pub.SimulatedCrash:
            crashed = True
        monkeypatch.setattr(pub._Steps, "crash_at", None)
        if crashed:  # the old version's files are somewhere in the registry
            assert set(old_files.values()) <= {sha(p) for p in reg.rglob("*") if p.is_file()}, n
        pub.recover(reg)
        [entry] = check_registry(reg)
        files = _version_files(reg)
        assert files == old_files or entry["metadata"]["model_sha"] == sha(reg / "m/1/model.onnx") != old_files["model.onnx"], n
        assert not (reg / pub.JOURNAL).exists() and not (reg / pub.ASIDE).exists() and not (reg / pub.PENDING).exists()
        outcomes.append("old" if files == old_files else "new")
        if not crashed:
            break
    assert len(outcomes) > 8 and outcomes[-1] == "new" and "old" in outcomes, outcomes


def test_a_dangling_manifest_symlink_is_refused(iris, tmp_path):
    from onnxgate.pipelines.publish import PublishError, publish_report

    raw, report = _validated(iris)
    reg, outside = tmp_path / "reg", tmp_path / "outside.json"
    reg.mkdir()
    (reg / "ONNX_HUB_MANIFEST.json").symlink_to(outside)
    with pytest.raises(PublishError, match="symbolic link"):
        publish_report(reg, name="m", version="1", model=raw, report=report)
    assert not outside.exists() and not (reg / "m").exists()


def test_published_files_follow_the_umask(iris, tmp_path):
    from onnxgate.pipelines.publish import publish_report

    raw, report = _validated(iris)
    old = os.umask(0o002)
    try:
        publish_report(tmp_path / "reg", name="m", version="1", model=raw, report=report)
    finally:
        os.umask(old)
    reg = tmp_path / "reg"
    assert (reg / "ONNX_HUB_MANIFEST.json").stat().st_mode & 0o777 == 0o664
    assert (reg / "m/1/model.onnx").stat().st_mode & 0o777 == 0o664
    assert (reg / "m/1/test_data_set_0").stat().st_mode & 0o777 == 0o775
