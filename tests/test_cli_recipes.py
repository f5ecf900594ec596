"""The CI recipes work as written (issue 18, item 5): the pre-commit hook under the real
``pre-commit`` in a temp git repository, and the Actions workflow against its JSON schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT
from tests.pipelines import models

SCHEMA = ROOT / "tests" / "data" / "schemas" / "github-workflows.json"  # SchemaStore's, vendored: no network
WORKFLOW = ROOT / "docs" / "github-actions-gate.yml"


def _workflow(path: Path = WORKFLOW) -> dict:
    data = yaml.safe_load(path.read_text())
    return {("on" if k is True else k): v for k, v in data.items()}  # YAML 1.1 reads the key `on` as True


def test_the_actions_workflow_is_valid_against_the_workflow_schema():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    workflow = _workflow()
    jsonschema.validate(workflow, schema)
    broken = json.loads(json.dumps(workflow))
    broken["jobs"]["gate"]["steps"][0]["with"] = "fetch-depth: 0"  # a mapping written as a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_actions_workflow_installs_from_the_repository_and_keeps_the_registry():
    text = WORKFLOW.read_text()
    workflow = _workflow()
    installs = [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if str(s.get("run", "")).startswith("pip install")]
    assert installs and all('"$ONNXGATE"' in run for run in installs)
    assert workflow["env"]["ONNXGATE"].startswith("onnxgate[sklearn] @ git+https://github.com/")
    assert "--registry registry" in text and "REGISTRY_BRANCH" in text and "git push origin" in text
    assert "github.event.before" in text  # the zero SHA of a first push is handled by the gate itself


def _git(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env, check=False)


def _init(repo: Path) -> None:
    repo.mkdir(parents=True)
    for args in (("init", "-q", "-b", "main"), ("config", "user.email", "ci@example.com"), ("config", "user.name", "CI"),
                 ("config", "commit.gpgsign", "false")):
        assert _git(repo, *args).returncode == 0


def _xgboost_model(path: Path, rounds: int) -> None:
    import xgboost as xgb

    x = np.random.RandomState(0).rand(60, 4).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, label=x[:, 0] > 0.5), num_boost_round=rounds)
    booster.save_model(str(path))
    np.save(path.with_suffix(".npy"), x[:8])


CONFIG = """\
[defaults]
providers = ["CPU"]
opt_levels = ["all"]

[[model]]
name = "churn"
source = "models/churn.ubj"
sample = "models/churn.npy"
version = "1"

[[model]]
name = "iris"
source = "models/iris.skops"
sample = "models/iris.npy"
version = "1"
watch = ["train/*.py"]
"""


@pytest.fixture
def hooked_repo(tmp_path):
    """A project using the hook from a local clone of this repository's .pre-commit-hooks.yaml, hooks installed."""
    hooks = tmp_path / "onnxgate-hooks"
    _init(hooks)
    shutil.copy(ROOT / ".pre-commit-hooks.yaml", hooks / ".pre-commit-hooks.yaml")
    assert _git(hooks, "add", "-A").returncode == 0 and _git(hooks, "commit", "-q", "-m", "hooks").returncode == 0
    rev = _git(hooks, "rev-parse", "HEAD").stdout.strip()

    repo = tmp_path / "project"
    _init(repo)
    (repo / "models").mkdir()
    models.iris(repo / "models")
    _xgboost_model(repo / "models" / "churn.ubj", rounds=3)
    (repo / "train").mkdir()
    (repo / "train" / "train.py").write_text("C = 1.0\n")
    (repo / "onnxgate.toml").write_text(CONFIG)
    # The hook as published, run from this environment (onnxgate and the frameworks are installed here):
    # `language: system` (no virtualenv built from the network), as the README's local hook does.
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{
        "repo": str(hooks), "rev": rev,
        "hooks": [{"id": "onnxgate-gate", "language": "system", "verbose": True}],
    }]}))
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", ONNXGATE_TRUST="",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")) if p))
    install = subprocess.run([str(bin_dir / "pre-commit"), "install"], cwd=repo, capture_output=True, text=True, env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    # the first commit, with the hook skipped (pre-commit's SKIP): the tests below need a HEAD to compare with
    first = _commit(repo, dict(env, SKIP="onnxgate-gate"), "first models")
    assert first.returncode == 0, first.stdout + first.stderr
    return repo, env


def _commit(repo: Path, env: dict, message: str) -> subprocess.CompletedProcess:
    assert _git(repo, "add", "-A").returncode == 0
    return _git(repo, "commit", "-m", message, env=env)


@pytest.mark.slow
def test_pre_commit_selects_an_xgboost_model_change_and_a_watched_script_change(hooked_repo):
    repo, env = hooked_repo
    _xgboost_model(repo / "models" / "churn.ubj", rounds=5)  # only the booster changes
    booster = _commit(repo, env, "retrain churn")
    out = booster.stdout + booster.stderr
    assert booster.returncode == 0, out
    assert "onnxgate gate" in out and "Skipped" not in out
    assert "PASSED  churn 1 (source changed)" in out and "iris" not in out

    (repo / "train" / "train.py").write_text("C = 0.5\n")  # only the watched training script changes
    script = _commit(repo, env, "tune the training script")
    out = script.stdout + script.stderr
    assert script.returncode == 0, out
    assert "PASSED  iris 1 (watched train/train.py changed)" in out and "churn" not in out

    (repo / "README.md").write_text("docs\n")  # a change that touches no model: the hook runs, selects nothing
    docs = _commit(repo, env, "docs")
    assert docs.returncode == 0 and "no models changed" in docs.stdout + docs.stderr


def test_the_readme_says_where_the_baseline_lives_and_the_workflow_keeps_it_there():
    """The README's baseline paragraph names the registry branch the example workflow restores and pushes."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**Where the regression baseline lives:**")
    paragraph = readme[start:readme.index("\n\n", start)]
    branch = _workflow()["env"]["REGISTRY_BRANCH"]
    assert f"`{branch}` branch" in paragraph or f"a `{branch}`" in paragraph, paragraph
    assert "--registry DIR" in paragraph and "no baseline" in paragraph
    text = WORKFLOW.read_text()
    assert 'git worktree add registry "origin/$REGISTRY_BRANCH"' in text and 'HEAD:refs/heads/$REGISTRY_BRANCH' in text
