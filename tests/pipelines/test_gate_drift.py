"""The gate re-checks a model when the packages its published report records have drifted.

A real git repository in a temp dir, a real scikit-learn model published by a real gate
run; nothing in the repository changes, only the published report's record of a package
version is rewritten (as an upgrade would make it differ from the installed one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.pipelines import models
from tests.pipelines.test_gate import commit, git, place, suites

CONFIG = """\
[defaults]
registry = "registry"
providers = ["CPU"]
{extra}
[[model]]
name = "iris"
source = "models/iris.skops"
sample = "data/iris.npy"
version = "1.0.0"
"""
VERSION_DIR = Path("registry/iris/1.0.0")
SKLEARN = metadata.version("scikit-learn")


def make_repo(root: Path, built: tuple[Path, Path], *, extra: str = "") -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "CI")
    place(root, built, "models/iris.skops", "data/iris.npy")
    (root / "onnxgate.toml").write_text(CONFIG.format(extra=extra))
    (root / ".gitignore").write_text("registry/\n*.xml\n*.md\n")
    commit(root, "iris")
    return root


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A repository whose iris 1.0.0 the gate published (once for the module)."""
    from onnxgate.pipelines.gate import gate

    built = models.iris(tmp_path_factory.mktemp("built"))
    repo = make_repo(tmp_path_factory.mktemp("pub") / "repo", built)
    result = gate(repo / "onnxgate.toml", publish=True)
    assert result.status == "passed" and (repo / VERSION_DIR / "model.onnx").is_file(), result.to_markdown()
    return repo


@pytest.fixture
def repo(published, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(published, copy, symlinks=True)
    return copy


def record_version(repo: Path, package: str, version: str) -> None:
    """Rewrite the published report's record, as if it had been validated with ``package`` ``version``."""
    path = repo / VERSION_DIR / "report.json"
    report = json.loads(path.read_text())
    report["versions"][package] = version
    path.write_text(json.dumps(report))


def nudge_published_probabilities(repo: Path) -> None:
    """Add 0.01 to the published expected probabilities (output_1.pb): replay must fail on them."""
    path = repo / VERSION_DIR / "test_data_set_0" / "output_1.pb"
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    assert t.name == "probabilities"
    path.write_bytes(numpy_helper.from_array(numpy_helper.to_array(t) + np.float32(0.01), t.name).SerializeToString())


def scale_published_weight(repo: Path) -> None:
    """Scale one coefficient of the published model.onnx by 1.01 (as if an older model had been published)."""
    path = repo / VERSION_DIR / "model.onnx"
    model = onnx.load(str(path))
    [coefficients] = [a for n in model.graph.node for a in n.attribute if a.name == "coefficients"]
    coefficients.floats[0] *= 1.01
    onnx.save(model, str(path))


def gate_cli(cli, repo: Path, *args: str):
    return cli("gate", "--config", repo / "onnxgate.toml", "--junit", repo / "junit.xml", "--changed-since", "HEAD", *args)


def junit_cases(repo: Path) -> dict[str, bool]:
    """JUnit testcase name -> passed, for the iris suite."""
    suite = suites(repo / "junit.xml")["iris"]
    return {c.get("name"): c.find("failure") is None and c.find("error") is None for c in suite.iter("testcase")}


def test_a_drifted_package_selects_the_model_which_is_replayed_and_passes(cli, repo):
    from onnxgate.pipelines.config import load_config
    from onnxgate.pipelines.gate import select_models

    assert select_models(load_config(repo / "onnxgate.toml"), changed_since="HEAD") == {}  # nothing changed
    record_version(repo, "scikit-learn", "1.0.2")
    reason = f"dependencies changed since published 1.0.0: scikit-learn 1.0.2 → {SKLEARN}"
    assert select_models(load_config(repo / "onnxgate.toml"), changed_since="HEAD") == {"iris": reason}

    r = gate_cli(cli, repo)
    assert r.code == 0, (r.out, r.err)
    assert f"PASSED  iris 1.0.0 ({reason}, compared with 1.0.0)" in r.out
    assert "published 1.0.0 replayed on its test data: passed" in r.out
    cases = junit_cases(repo)
    replayed = [n for n in cases if n.startswith("published 1.0.0 replayed: test_data_set_0")]
    assert replayed and all(cases[n] for n in replayed), cases
    assert any(n.startswith("vs published 1.0.0") for n in cases), cases  # the fresh conversion on the published data


@pytest.mark.parametrize("tamper", [nudge_published_probabilities, scale_published_weight])
def test_a_drifted_model_whose_published_version_disagrees_fails_naming_the_output(cli, repo, tamper):
    record_version(repo, "onnxruntime", "1.17.0")
    tamper(repo)
    r = gate_cli(cli, repo)
    assert r.code == 1, (r.out, r.err)
    assert "onnxruntime 1.17.0 → " in r.out and "FAILED  iris 1.0.0" in r.out
    failed = sorted(n for n, ok in junit_cases(repo).items() if not ok)
    assert "published 1.0.0 replayed: test_data_set_0 probabilities" in failed, failed
    # the fresh conversion against the published data: fails on changed data, passes on a changed published model
    assert ("vs published 1.0.0 probabilities" in failed) == (tamper is nudge_published_probabilities), failed


def test_drift_false_in_the_config_turns_it_off(tmp_path, published):
    from onnxgate.pipelines.config import load_config
    from onnxgate.pipelines.gate import select_models

    repo = make_repo(tmp_path / "repo", (published / "models/iris.skops", published / "data/iris.npy"), extra="drift = false\n")
    shutil.copytree(published / "registry", repo / "registry")
    record_version(repo, "scikit-learn", "1.0.2")
    assert select_models(load_config(repo / "onnxgate.toml"), changed_since="HEAD") == {}
    # the per-model key overrides the default
    text = (repo / "onnxgate.toml").read_text().replace('version = "1.0.0"', 'version = "1.0.0"\ndrift = true')
    (repo / "onnxgate.toml").write_text(text)
    commit(repo, "drift on for iris")
    assert select_models(load_config(repo / "onnxgate.toml"), changed_since="HEAD") == {"iris": f"dependencies changed since published 1.0.0: scikit-learn 1.0.2 → {SKLEARN}"}


def test_drift_reads_the_report_then_the_manifest_and_ignores_packages_never_installed(repo):
    from onnxgate.pipelines.drift import dependency_drift

    registry = repo / "registry"
    [entry] = json.loads((registry / "ONNX_HUB_MANIFEST.json").read_text())
    assert dependency_drift(entry, registry) == []
    record_version(repo, "python", "3.0.1")
    record_version(repo, "some-package-onnxgate-never-saw", "not installed")
    [change] = dependency_drift(entry, registry)
    assert str(change).startswith("python 3.0.1 → 3.")
    (repo / VERSION_DIR / "report.json").unlink()  # the manifest's copy of the versions stands in
    entry["metadata"]["onnxgate"]["versions"]["numpy"] = "1.0.0"
    assert [str(c) for c in dependency_drift(entry, registry)] == [f"numpy 1.0.0 → {metadata.version('numpy')}"]


def test_published_provenance_is_relative_and_names_the_commit(published):
    from onnxgate.model_zoo.manifest import read_manifest

    [entry] = read_manifest(published / "registry/ONNX_HUB_MANIFEST.json")
    prov = entry["metadata"]["onnxgate"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=published, capture_output=True, text=True, check=True).stdout.strip()
    assert prov["git"] == {"commit": head, "dirty": False}  # the registry itself is not dirt
    assert prov["source"]["path"] == "models/iris.skops" and prov["source"]["relative_to"] == "repository"
    assert prov["sample"]["path"] == "data/iris.npy"
    assert len(prov["source"]["sha256"]) == 64
    for package in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "python", "onnxgate"):
        assert package in prov["versions"], package
    assert "CPUExecutionProvider" in prov["host"]["providers"]
    assert prov["tolerance_rules"]["probabilities"]["rule"].startswith("calibrated")
    assert prov["tolerance_rules"]["label"]["rule"].startswith("exact")
    published_text = (published / "registry/ONNX_HUB_MANIFEST.json").read_text() + (published / VERSION_DIR / "report.json").read_text()
    assert str(published.parent) not in published_text and str(Path.home()) not in published_text  # never an absolute path


def test_git_state_dirty_flag_ignores_the_registry(tmp_path):
    from onnxgate.pipelines.provenance import git_state

    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    assert git_state(repo) is not None and git_state(repo).commit is None  # no commit yet
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    (repo / "a.txt").write_text("a")
    commit(repo, "a")
    assert git_state(repo).dirty is False
    (repo / "reg").mkdir()
    (repo / "reg" / "x").write_text("published")
    assert git_state(repo, exclude=repo / "reg").dirty is False
    assert git_state(repo).dirty is True
    assert git_state(tmp_path) is None  # not a repository


def test_regression_warn_keeps_a_failed_replay_as_a_warning(cli, repo):
    text = (repo / "onnxgate.toml").read_text().replace('version = "1.0.0"', 'version = "1.0.0"\nregression = "warn"')
    (repo / "onnxgate.toml").write_text(text)
    commit(repo, "accept drift for iris")
    record_version(repo, "onnxruntime", "1.17.0")
    scale_published_weight(repo)
    r = gate_cli(cli, repo)
    assert r.code == 0, (r.out, r.err)
    assert "published 1.0.0 replayed on its test data: failed" in r.out
    assert not any(n.startswith("published 1.0.0 replayed") for n in junit_cases(repo))  # warnings, not cases


TWO_MODELS = """\
[defaults]
registry = "registry"
providers = ["CPU"]

[[model]]
name = "iris"
source = "models/iris.skops"
sample = "data/iris.npy"
version = "1.0.0"

[[model]]
name = "boosted"
source = "models/boosted.joblib"
sample = "data/iris.npy"
version = "1.0.0"
"""


def boosted_pipeline(path: Path) -> Path:
    """A scikit-learn pipeline holding a small XGBClassifier (the sklearn converter's path to xgboost).

    No scaler in front: float32 rounding of scaled features flips tree thresholds (a real
    finding, but not this test's subject)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.pipeline import make_pipeline
    from xgboost import XGBClassifier

    x, y = load_iris(return_X_y=True)
    model = make_pipeline(XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1)).fit(x, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return path


def test_an_xgboost_upgrade_selects_the_model_holding_xgboost_but_not_a_plain_sklearn_one(tmp_path, published, monkeypatch):
    """Each published report records only the packages its model involves: the LogisticRegression's
    has no xgboost, the pipeline's has it, so upgrading xgboost re-checks the pipeline alone."""
    from onnxgate.pipelines.config import load_config
    from onnxgate.pipelines.gate import gate, select_models

    monkeypatch.setenv("ONNXGATE_TRUST", "pickle")  # the job's trust: the pipeline is a joblib pickle we built
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    place(repo, (published / "models/iris.skops", published / "data/iris.npy"), "models/iris.skops", "data/iris.npy")
    boosted_pipeline(repo / "models/boosted.joblib")
    (repo / "onnxgate.toml").write_text(TWO_MODELS)
    (repo / ".gitignore").write_text("registry/\n")
    commit(repo, "iris and boosted")
    result = gate(repo / "onnxgate.toml", publish=True)
    assert result.status == "passed", result.to_markdown()

    recorded = {name: json.loads((repo / f"registry/{name}/1.0.0/report.json").read_text())["versions"]
                for name in ("iris", "boosted")}
    assert "xgboost" not in recorded["iris"] and "onnxmltools" not in recorded["iris"], recorded["iris"]
    assert recorded["boosted"]["xgboost"] == metadata.version("xgboost") and "onnxmltools" in recorded["boosted"]

    for name, versions in recorded.items():  # an xgboost upgrade: every report that records xgboost now differs
        if "xgboost" in versions:
            path = repo / f"registry/{name}/1.0.0/report.json"
            report = json.loads(path.read_text())
            report["versions"]["xgboost"] = "1.7.0"
            path.write_text(json.dumps(report))
    selected = select_models(load_config(repo / "onnxgate.toml"), changed_since="HEAD")
    assert selected == {"boosted": f"dependencies changed since published 1.0.0: xgboost 1.7.0 → {metadata.version('xgboost')}"}


def test_each_converter_records_only_the_packages_its_model_involves():
    """The versions a report records are those the gate's drift check compares (no framework runs here
    beyond building three small scikit-learn estimators)."""
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    from onnxgate.converters.keras import KerasConverter, KerasModel
    from onnxgate.converters.sklearn import SklearnConverter
    from onnxgate.converters.tensorflow import TensorflowConverter

    sk = SklearnConverter()
    plain = sk.model_versions(make_pipeline(StandardScaler(), LogisticRegression()))
    assert {"scikit-learn", "skl2onnx"} <= set(plain) and not {"xgboost", "lightgbm", "onnxmltools"} & set(plain)
    boosted = sk.model_versions(make_pipeline(StandardScaler(), XGBClassifier()))
    assert {"xgboost", "onnxmltools"} <= set(boosted) and "lightgbm" not in boosted
    stacked = sk.model_versions(StackingClassifier([("gbm", LGBMClassifier()), ("lr", LogisticRegression())]))
    assert {"lightgbm", "onnxmltools"} <= set(stacked) and "xgboost" not in stacked

    def keras_model(legacy: bool) -> KerasModel:
        return KerasModel(None, "m", [], "single", [], "single", legacy=legacy)

    assert "keras" in KerasConverter().model_versions(keras_model(False))
    assert "tf-keras" not in KerasConverter().model_versions(keras_model(False))
    assert "keras" not in KerasConverter().model_versions(keras_model(True))
    assert "keras" not in TensorflowConverter().versions() and "tf2onnx" in TensorflowConverter().versions()
