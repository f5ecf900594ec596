"""What the gate tells CI (issue 18, item 4): WARN for accepted drift, a missing framework as one
model's ERROR, JUnit and summary on every exit, config problems at load, the zero SHA of a first push."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from tests.conftest import ROOT, assert_user_error, run_onnxgate
from tests.pipelines.test_gate import CONFIG, built, commit, place, repo, run_gate, suites  # noqa: F401 (fixtures)

NULL_SHA = "0" * 40


def _set_version(repo: Path, old: str, new: str) -> None:
    text = (repo / "onnxgate.toml").read_text()
    block = 'source = "models/diabetes.skops"\nsample = "data/diabetes.npy"\n'
    (repo / "onnxgate.toml").write_text(text.replace(block + old, block + new))


def test_accepted_drift_is_a_warn_line_a_summary_row_and_junit_output(cli, repo, built):
    first = run_gate(cli, repo, repo / "data/diabetes.npy", "--publish")
    assert first.code == 0, (first.out, first.err)
    # the same version again, without --publish: compared with it, and nothing said about republishing
    again = run_gate(cli, repo, repo / "data/diabetes.npy")
    assert again.code == 0 and "compared with 1.0.0" in again.out
    assert "already published" not in again.out + again.err

    place(repo, built["diabetes_retrained"], "models/diabetes.skops", "data/diabetes.npy")
    _set_version(repo, 'version = "1.0.0"', 'version = "1.1.0"\nregression = "warn"')
    commit(repo, "retrain diabetes as 1.1.0, drift accepted")
    r = run_gate(cli, repo, "--changed-since", "HEAD~1")
    assert r.code == 0, (r.out, r.err)
    lines = r.out.splitlines()
    assert lines[0].startswith("WARN    diabetes 1.1.0 (source changed, compared with 1.0.0"), r.out
    assert any(line.startswith("  warning: regression: output 'variable' drifted from published 1.0.0") for line in lines)
    assert "gate [1/1] diabetes 1.1.0: WARN" in r.err
    summary = (repo / "summary.md").read_text()
    assert "| `diabetes` | 1.1.0 | 🟡 warn |" in summary and "### Warnings" in summary and "drifted" in summary
    suite = suites(repo / "junit.xml")["diabetes"]
    assert suite.get("failures") == "0"
    (check,) = [c for c in suite.iter("testcase") if c.get("name") == "check regression"]
    assert "drifted from published 1.0.0" in check.find("system-out").text


SITE = """
import sys

class _Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "xgboost":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Uninstalled())
"""


def test_a_missing_framework_is_an_error_for_its_model_only(repo, tmp_path):
    import xgboost as xgb

    x = np.random.RandomState(0).rand(40, 4).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, label=x[:, 0] > 0.5), num_boost_round=3)
    booster.save_model(str(repo / "models" / "churn.ubj"))
    np.save(repo / "data" / "churn.npy", x[:8])
    config = CONFIG.split("[[model]]\nname = \"diabetes\"")[0] + (
        '[[model]]\nname = "churn"\nsource = "models/churn.ubj"\nsample = "data/churn.npy"\nversion = "1"\n')
    (repo / "onnxgate.toml").write_text(config)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITE))
    r = run_onnxgate("-q", "gate", "--junit", repo / "junit.xml", "--summary", repo / "summary.md", cwd=repo,
                     env={"PYTHONPATH": f"{site}:{ROOT / 'src'}:{ROOT}"})
    assert r.code == 1, (r.out, r.err)
    assert "PASSED  iris 1.0.0" in r.out and "ERROR   churn 1" in r.out
    assert "'xgboost', which is not installed (pip install 'onnxgate[boosting]')" in r.out
    s = suites(repo / "junit.xml")
    assert s["churn"].get("errors") == "1" and s["iris"].get("failures") == "0"
    assert "`churn`" in (repo / "summary.md").read_text()


def test_a_bad_config_still_writes_junit_and_summary(cli, repo, monkeypatch, tmp_path):
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    (repo / "onnxgate.toml").write_text(CONFIG.replace('source = "models/iris.skops"', 'sorce = "models/iris.skops"'))
    r = run_gate(cli, repo)
    assert_user_error(r, "unknown key 'sorce'")
    (suite,) = ET.parse(repo / "junit.xml").getroot().iter("testsuite")
    assert suite.get("name") == "onnxgate.toml" and suite.get("errors") == "1"
    assert "unknown key 'sorce'" in suite.find("testcase/error").get("message")
    for path in (repo / "summary.md", step):
        assert path.read_text().startswith("## onnxgate gate: ERROR") and "sorce" in path.read_text()


def test_an_unavailable_provider_in_the_config_is_exit_2_before_any_model_runs(cli, repo):
    (repo / "onnxgate.toml").write_text(CONFIG.replace('providers = ["CPU"]', 'providers = ["CPU", "CUDA"]'))
    r = run_gate(cli, repo)
    assert_user_error(r, "onnxgate.toml", "model 'iris'", "CUDA is not available here")
    assert "onnxgate: gate [" not in r.err  # no model ran
    assert suites(repo / "junit.xml")["onnxgate.toml"].get("errors") == "1"
    # a GPU model that this run does not check does not stop it; a name ONNX Runtime does not know always does
    gpu = CONFIG.replace('version = "1.0.0"\n', 'version = "1.0.0"\nproviders = ["CUDA"]\n', 1)
    (repo / "onnxgate.toml").write_text(gpu)
    commit(repo, "iris runs on CUDA")
    assert run_gate(cli, repo, "--changed-since", "HEAD").code == 0
    (repo / "onnxgate.toml").write_text(gpu.replace('providers = ["CUDA"]', 'providers = ["Bogus"]'))
    commit(repo, "a typo")
    assert_user_error(run_gate(cli, repo, "--changed-since", "HEAD"), "onnxgate.toml", "model 'iris'", "unknown execution provider Bogus")


def test_the_null_sha_of_a_first_push_checks_every_model(cli, repo):
    from onnxgate.pipelines.config import load_config
    from onnxgate.pipelines.gate import is_null_revision, select_models

    assert is_null_revision(NULL_SHA) and is_null_revision("0" * 64)
    assert not is_null_revision("0" * 39) and not is_null_revision("HEAD")
    assert select_models(load_config(repo / "onnxgate.toml"), changed_since=NULL_SHA) == {
        "iris": "no base revision (first push)", "diabetes": "no base revision (first push)"}
    r = run_gate(cli, repo, "--changed-since", NULL_SHA, "--shard", "2/2")  # one model is enough to see it run
    assert r.code == 0, (r.out, r.err)
    assert r.out.startswith("note: --changed-since 000000000000… is git's null revision")
    assert "PASSED  iris 1.0.0 (no base revision (first push))" in r.out
    assert "null revision" in (repo / "summary.md").read_text()
