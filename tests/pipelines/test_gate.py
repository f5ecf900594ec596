"""The CI gate on a real git repository made in a temp dir, with real scikit-learn models."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import assert_user_error
from tests.pipelines import models

CONFIG = """\
[defaults]
registry = "registry"
providers = ["CPU"]

[[model]]
name = "iris"
source = "models/iris.skops"
sample = "data/iris.npy"
version = "1.0.0"

[[model]]
name = "diabetes"
source = "models/diabetes.skops"
sample = "data/diabetes.npy"
version = "1.0.0"
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def place(repo: Path, built: tuple[Path, Path], model: str, sample: str) -> None:
    for src, dst in zip(built, (model, sample)):
        (repo / dst).parent.mkdir(parents=True, exist_ok=True)
        (repo / dst).write_bytes(src.read_bytes())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The models, built once: iris, diabetes, a retrained diabetes, a 5-feature diabetes."""
    d = tmp_path_factory.mktemp("built")
    return {
        "iris": models.iris(d),
        "diabetes": models.diabetes(d),
        "diabetes_retrained": models.diabetes(d, alpha=0.05, stem="diabetes_retrained"),
        "diabetes_5": models.diabetes(d, features=5, stem="diabetes_5"),
    }


@pytest.fixture
def repo(tmp_path, built):
    """A git repository with two committed models and onnxgate.toml."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "ci@example.com")
    git(r, "config", "user.name", "CI")
    place(r, built["iris"], "models/iris.skops", "data/iris.npy")
    place(r, built["diabetes"], "models/diabetes.skops", "data/diabetes.npy")
    (r / "onnxgate.toml").write_text(CONFIG)
    (r / ".gitignore").write_text("registry/\n*.xml\n*.md\n")
    commit(r, "two models")
    return r


def suites(path: Path) -> dict[str, ET.Element]:
    return {s.get("name"): s for s in ET.parse(path).getroot().iter("testsuite")}


def run_gate(cli, repo: Path, *args: str):
    return cli("gate", "--config", repo / "onnxgate.toml", "--junit", repo / "junit.xml", "--summary", repo / "summary.md", *args)


def test_changed_since_validates_only_the_changed_model(cli, repo, built):
    everything = run_gate(cli, repo)
    assert everything.code == 0, (everything.out, everything.err)
    assert set(suites(repo / "junit.xml")) == {"iris", "diabetes"}

    place(repo, built["diabetes_retrained"], "models/diabetes.skops", "data/diabetes.npy")
    commit(repo, "retrain diabetes")
    r = run_gate(cli, repo, "--changed-since", "HEAD~1")
    assert r.code == 0, (r.out, r.err)
    assert set(suites(repo / "junit.xml")) == {"diabetes"}
    assert "diabetes 1.0.0 (source changed)" in r.out and "iris" not in r.out
    assert "gate [1/1] diabetes 1.0.0: PASSED" in r.err  # the live progress line
    summary = (repo / "summary.md").read_text()
    assert "| `diabetes` | 1.0.0 |" in summary and "`iris`" not in summary

    nothing = run_gate(cli, repo, "--changed-since", "HEAD")
    assert nothing.code == 0 and "no models changed" in nothing.out
    assert suites(repo / "junit.xml") == {}


def test_renamed_sample_still_selects_its_model(cli, repo):
    from onnxgate.pipelines.config import load_config
    from onnxgate.pipelines.gate import changes_since, select_models

    git(repo, "mv", "data/iris.npy", "data/iris-rows.npy")
    text = (repo / "onnxgate.toml").read_text().replace("data/iris.npy", "data/iris-rows.npy")
    (repo / "onnxgate.toml").write_text(text)
    commit(repo, "rename the iris sample")
    changes = changes_since("HEAD~1", repo)
    assert ("R", "data/iris-rows.npy", "data/iris.npy") in [(c.status, c.path, c.old_path) for c in changes]
    selected = select_models(load_config(repo / "onnxgate.toml"), changed_since="HEAD~1")
    assert selected == {"iris": "sample renamed from data/iris.npy"}

    r = run_gate(cli, repo, "--changed-since", "HEAD~1")
    assert r.code == 0, (r.out, r.err)
    assert set(suites(repo / "junit.xml")) == {"iris"}


def test_config_table_change_selects_the_model_and_pre_commit_files_select_theirs(repo):
    from onnxgate.pipelines.config import load_config
    from onnxgate.pipelines.gate import select_models

    text = (repo / "onnxgate.toml").read_text().replace('version = "1.0.0"\n', 'version = "1.0.0"\natol = 1e-4\n', 1)
    (repo / "onnxgate.toml").write_text(text)
    commit(repo, "loosen iris")
    assert select_models(load_config(repo / "onnxgate.toml"), changed_since="HEAD~1") == {"iris": "config table changed"}
    # pre-commit passes the staged files; they are compared with HEAD
    cfg = load_config(repo / "onnxgate.toml")
    assert select_models(cfg, files=[repo / "data/diabetes.npy"]) == {"diabetes": "sample changed"}
    assert select_models(cfg, files=[repo / "README.md"]) == {}


def _tampered(onnx_path: Path) -> None:
    """Perturb the learned coefficients in place (LinearClassifier keeps them as a node attribute)."""
    import onnx

    model = onnx.load(str(onnx_path))
    coefficients = [a for n in model.graph.node for a in n.attribute if a.name == "coefficients"]
    assert coefficients, [n.op_type for n in model.graph.node]
    values = list(coefficients[0].floats)
    del coefficients[0].floats[:]
    coefficients[0].floats.extend(v * 1.05 + 0.05 for v in values)
    onnx.save(model, str(onnx_path))


def test_a_commit_that_breaks_parity_fails_naming_model_and_output(cli, repo):
    # a committed ONNX override, exactly as converted: passes
    assert cli("convert", repo / "models/iris.skops", "--sample", repo / "data/iris.npy", "-o", repo / "models/iris.onnx").code == 0
    text = (repo / "onnxgate.toml").read_text().replace(
        'sample = "data/iris.npy"\n', 'sample = "data/iris.npy"\nonnx = "models/iris.onnx"\n'
    )
    (repo / "onnxgate.toml").write_text(text)
    commit(repo, "commit the iris ONNX file")
    ok = run_gate(cli, repo, "--changed-since", "HEAD~1")
    assert ok.code == 0, (ok.out, ok.err)
    assert set(suites(repo / "junit.xml")) == {"iris"}

    _tampered(repo / "models/iris.onnx")
    commit(repo, "tamper with the iris ONNX file")
    bad = run_gate(cli, repo, "--changed-since", "HEAD~1")
    assert bad.code == 1, (bad.out, bad.err)
    assert "FAILED  iris 1.0.0 (onnx changed)" in bad.out
    suite = suites(repo / "junit.xml")["iris"]
    assert int(suite.get("failures")) > 0
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert any("probabilities" in name for name in failed), failed
    assert "FAILED" in (repo / "summary.md").read_text() and "probabilities" in (repo / "summary.md").read_text()


def test_regression_against_the_published_version_is_detected(cli, repo, built):
    first = run_gate(cli, repo, "--publish")
    assert first.code == 0, (first.out, first.err)
    assert (repo / "registry/diabetes/1.0.0/model.onnx").is_file()
    # unchanged and already published: compared with itself, not republished
    again = run_gate(cli, repo, "--publish")
    assert again.code == 0 and "already published" in again.out

    # a new version whose outputs drift from 1.0.0's published test data
    place(repo, built["diabetes_retrained"], "models/diabetes.skops", "data/diabetes.npy")
    (repo / "onnxgate.toml").write_text((repo / "onnxgate.toml").read_text().replace(
        'source = "models/diabetes.skops"\nsample = "data/diabetes.npy"\nversion = "1.0.0"',
        'source = "models/diabetes.skops"\nsample = "data/diabetes.npy"\nversion = "1.1.0"'))
    commit(repo, "retrain diabetes as 1.1.0")
    drift = run_gate(cli, repo, "--changed-since", "HEAD~1", "--publish")
    assert drift.code == 1, (drift.out, drift.err)
    suite = suites(repo / "junit.xml")["diabetes"]
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["vs published 1.0.0 variable"], failed
    assert not (repo / "registry/diabetes/1.1.0").exists()  # a failed gate publishes nothing

    # declared as intended (regression = "warn"): passes, publishes, keeps the warning
    (repo / "onnxgate.toml").write_text((repo / "onnxgate.toml").read_text().replace('version = "1.1.0"', 'version = "1.1.0"\nregression = "warn"'))
    commit(repo, "accept the drift")
    accepted = run_gate(cli, repo, "--changed-since", "HEAD~1", "--publish")
    assert accepted.code == 0, (accepted.out, accepted.err)
    assert (repo / "registry/diabetes/1.1.0/model.onnx").is_file()

    # a changed input signature (5 features instead of 10) is a regression too
    place(repo, built["diabetes_5"], "models/diabetes.skops", "data/diabetes.npy")
    (repo / "onnxgate.toml").write_text((repo / "onnxgate.toml").read_text().replace('version = "1.1.0"\nregression = "warn"', 'version = "2.0.0"'))
    commit(repo, "fewer features")
    sig = run_gate(cli, repo, "--changed-since", "HEAD~1")
    assert sig.code == 1, (sig.out, sig.err)
    assert "I/O signature changed since published 1.1.0: input 'X' shape [None, 10] -> [None, 5]" in sig.out


def test_shards_cover_every_model_exactly_once(cli, repo):
    from onnxgate.pipelines.gate import shard_names

    names = [f"m{i:02d}" for i in range(11)]
    for n in range(1, 6):
        shares = [shard_names(names, (k, n)) for k in range(1, n + 1)]
        assert sorted(x for s in shares for x in s) == sorted(names)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert shares == [shard_names(list(reversed(names)), (k, n)) for k in range(1, n + 1)]  # order-independent

    text = (repo / "onnxgate.toml").read_text()
    (repo / "onnxgate.toml").write_text(text + '\n[[model]]\nname = "iris-copy"\nsource = "models/iris.skops"\nsample = "data/iris.npy"\nversion = "1"\n')
    seen = []
    for k in (1, 2):
        r = run_gate(cli, repo, "--shard", f"{k}/2")
        assert r.code == 0, (r.out, r.err)
        seen.append(set(suites(repo / "junit.xml")))
    assert seen[0] | seen[1] == {"iris", "diabetes", "iris-copy"} and not seen[0] & seen[1]
    assert_user_error(run_gate(cli, repo, "--shard", "3/2"), "invalid --shard '3/2'")


def test_a_model_that_cannot_be_converted_is_an_error_and_the_others_still_run(cli, repo, built, monkeypatch, tmp_path):
    (repo / "models/iris.skops").write_bytes(b"not a skops file")
    commit(repo, "break iris")
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    r = run_gate(cli, repo)
    assert r.code == 1, (r.out, r.err)
    assert "ERROR   iris 1.0.0" in r.out and "PASSED  diabetes 1.0.0" in r.out
    s = suites(repo / "junit.xml")
    assert int(s["iris"].get("errors")) == 1 and int(s["diabetes"].get("failures")) == 0
    assert step.read_text().startswith("earlier step\n## onnxgate gate: ERROR")


BAD_CONFIGS = [
    ("sorce", CONFIG.replace('source = "models/iris.skops"', 'sorce = "models/iris.skops"'), ["onnxgate.toml:7:", "unknown key 'sorce'"]),
    ("defaults key", CONFIG.replace('providers = ["CPU"]', 'provider = ["CPU"]'), ["onnxgate.toml:3:", "[defaults]", "unknown key 'provider'"]),
    ("top key", "registry = 'x'\n" + CONFIG, ["onnxgate.toml:1:", "unknown key 'registry'"]),
    ("missing source", CONFIG.replace("models/diabetes.skops", "models/nope.skops"), ["onnxgate.toml:13:", "source 'models/nope.skops' does not exist"]),
    ("duplicate", CONFIG.replace('name = "diabetes"', 'name = "iris"'), ["onnxgate.toml:12:", "duplicate model name 'iris'", "first at line 6"]),
    ("unquoted version", CONFIG.replace('version = "1.0.0"', "version = 1.0", 1), ["onnxgate.toml:9:", "'version' must be a quoted string"]),
    ("no version", CONFIG.replace('version = "1.0.0"\n', "", 1), ["onnxgate.toml:5:", "missing key 'version'"]),
    ("syntax", CONFIG + "[[model]\n", ["invalid TOML", "line 16"]),
]


@pytest.mark.parametrize("what, text, fragments", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_exit_2_naming_file_line_and_key(cli, repo, what, text, fragments):
    (repo / "onnxgate.toml").write_text(text)
    r = run_gate(cli, repo)
    assert_user_error(r, *fragments)
    assert [s.get("errors") for s in suites(repo / "junit.xml").values()] == ["1"]  # a red test in CI, not "no report"


def test_pyproject_tool_table_and_git_errors(cli, repo, monkeypatch):
    text = CONFIG.replace("[defaults]", "[tool.onnxgate.defaults]").replace("[[model]]", "[[tool.onnxgate.model]]")
    (repo / "onnxgate.toml").unlink()
    (repo / "pyproject.toml").write_text('[project]\nname = "zoo"\n\n' + text.replace('sample = "data/iris.npy"', 'sampel = "data/iris.npy"'))
    monkeypatch.chdir(repo)
    assert_user_error(cli("gate"), "pyproject.toml:11:", "unknown key 'sampel'")
    (repo / "pyproject.toml").write_text('[project]\nname = "zoo"\n\n' + text)
    r = cli("gate", "--changed-since", "no-such-rev")
    assert_user_error(r, "unknown revision 'no-such-rev'", "fetch-depth: 0")
    commit(repo, "move the config into pyproject.toml")
    r = cli("gate", "--changed-since", "HEAD~1")  # the old config was elsewhere: every model is new
    assert r.code == 0 and "new in the config" in r.out


def test_benchmark_in_the_config_adds_the_speed_report(repo):
    from onnxgate.pipelines.gate import gate

    text = (repo / "onnxgate.toml").read_text().replace('version = "1.0.0"\n', 'version = "1.0.0"\nbenchmark = true\nthreads = 1\n', 1)
    (repo / "onnxgate.toml").write_text(text)
    result = gate(repo / "onnxgate.toml")
    speeds = {o.name: o.report.speed for o in result.outcomes}
    assert speeds["diabetes"] is None  # only the model whose table asks for it is timed
    speed = speeds["iris"].as_dict()
    assert speed and "threads" in str(speed)
    bad = text.replace("benchmark = true", 'benchmark = "yes"')
    (repo / "onnxgate.toml").write_text(bad)
    with pytest.raises(Exception, match="benchmark"):
        gate(repo / "onnxgate.toml")


class _Payload:
    """Unpickling this creates ``path``: proof that the pickle's code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _add_pickle_with_self_trust(repo: Path, marker: Path) -> None:
    import pickle

    (repo / "models/evil.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))
    (repo / "onnxgate.toml").write_text(
        CONFIG + '\n[[model]]\nname = "evil"\nsource = "models/evil.pkl"\nsample = "data/iris.npy"\n'
        'version = "1.0.0"\nframework = "sklearn"\ntrust = ["pickle"]\n'
    )


def test_a_change_cannot_grant_itself_trust(cli, repo, tmp_path, monkeypatch):
    monkeypatch.delenv("ONNXGATE_TRUST", raising=False)
    marker = tmp_path / "payload-ran"
    git(repo, "checkout", "-q", "-b", "pr")
    _add_pickle_with_self_trust(repo, marker)
    commit(repo, "a pull request: a pickle and trust for it")
    r = run_gate(cli, repo, "--changed-since", "main")
    assert r.code == 1, (r.out, r.err)
    assert "ERROR   evil 1.0.0" in r.out and "refusing to unpickle" in r.out
    assert "not applied" in r.out and "base revision" in r.out
    assert not marker.exists()
    # The same file with trust granted by the job: the payload really is live code.
    monkeypatch.setenv("ONNXGATE_TRUST", "pickle")
    run_gate(cli, repo, "--changed-since", "main")
    assert marker.exists()


def test_trust_comes_from_the_base_revision():
    from onnxgate.pipelines.gate import base_trust

    old = {"defaults": {"trust": ["code"]}, "model": [
        {"name": "a", "trust": ["pickle"], "trust_types": ["numpy.float64"]}, {"name": "b"}, {"name": "c", "trust": "pickle"}]}
    granted = base_trust(old)
    assert granted["a"].words == ("pickle",) and granted["a"].types == ("numpy.float64",)
    assert granted["b"].words == ("code",) and granted["c"].words == ()
    assert base_trust(None) == {}
