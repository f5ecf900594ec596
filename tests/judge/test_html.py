"""The --html report, rendered for real in headless Chromium (Debian's chromium package).

Each page is opened twice: ``--dump-dom`` gives the DOM after plotly.js ran (charts carry
``data-rendered="true"`` once ``Plotly.newPlot`` drew them), ``--screenshot`` saves a PNG under
build/test-output/html/ (printed, so ``pytest -s`` shows where). The models are real: a
scikit-learn LogisticRegression converted by skl2onnx, the same file with its weights scaled
by 1.01, a gate over a real git repository, a zoo directory verified by ONNX Runtime.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT, assert_user_error

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "build" / "test-output" / "html"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs Debian's: apt-get install -y chromium)")


class Dom(HTMLParser):
    """Start tags in document order, with their attributes (what the checks below need)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if (tag is None or t == tag)
                and (cls is None or cls in a.get("class", "").split())
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def browse(page: Path, tmp_path: Path, name: str) -> Dom:
    """The page's DOM after its scripts ran, and a 1280x2000 screenshot saved as build/test-output/html/NAME.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    return Dom(dom)


def assert_self_contained(page: Path) -> None:
    """plotly.js inlined exactly once, and nothing fetched from the network."""
    from onnxgate.judge.html.render import plotly_js

    text = page.read_text(encoding="utf-8")
    assert len(re.findall(r"\* plotly\.js v\d", text)) == 1 and text.count(plotly_js()) == 1
    ours = text.replace(plotly_js(), "")  # plotly.js's own strings name its website; it fetches nothing
    assert not re.search(r"""<script[^>]+src=|<link[^>]+href=|@import|url\(|(src|href)=["']?(https?:)?//""", ours)


def rendered_charts(dom: Dom, cls: str) -> list[dict[str, str]]:
    charts = dom.find("div", cls)
    assert charts and all(c.get("data-rendered") == "true" and "js-plotly-plot" in c["class"] for c in charts), charts
    return charts


# -- run / validate ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """LogisticRegression on iris (outputs label and probabilities), its ONNX file, and one with weights x1.01."""
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    d = tmp_path_factory.mktemp("html")
    model = LogisticRegression(max_iter=500).fit(X, y)
    sio.dump(model, d / "lr.skops")
    np.save(d / "x.npy", X[::3].astype(np.float32))
    onx = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})
    (d / "lr.onnx").write_bytes(onx.SerializeToString())
    node = next(n for n in onx.graph.node if n.op_type == "LinearClassifier")
    coef = next(a for a in node.attribute if a.name == "coefficients")
    coef.floats[:] = [w * 1.01 for w in coef.floats]
    (d / "broken.onnx").write_bytes(onx.SerializeToString())
    return d


@needs_chromium
@pytest.mark.slow
def test_a_passing_and_a_failing_run_render_in_chromium(cli, iris, tmp_path):
    d = iris
    ok = cli("-q", "validate", d / "lr.skops", d / "lr.onnx", "--sample", d / "x.npy", "--benchmark", "--optimize",
             "--benchmark-seconds", "0.05", "--html", tmp_path / "ok.html", "--report", tmp_path / "ok.json")
    assert ok.code == 0, ok.out + ok.err
    cases = json.loads((tmp_path / "ok.json").read_text())["cases"]
    assert_self_contained(tmp_path / "ok.html")
    dom = browse(tmp_path / "ok.html", tmp_path, "run-passed")
    assert dom.find(id="verdict")[0]["data-verdict"] == "passed"
    assert not dom.find(id="failure-banner")
    cells = dom.find("td", "cell")
    assert len(cells) == len(cases) == 6 and {c["data-status"] for c in cells} == {"passed"}  # 3 shapes x 2 levels, CPU
    charts = {c["data-output"]: c["class"] for c in rendered_charts(dom, "output-chart")}
    assert sorted(charts) == ["label", "probabilities"]  # one chart per output
    assert "chart-exact" in charts["label"] and "chart-errors" in charts["probabilities"]
    assert len(rendered_charts(dom, "speed-chart")) == 1 and len(rendered_charts(dom, "variants-chart")) == 1
    assert dom.find("table", "placement") and dom.find("table", "variants")

    bad = cli("-q", "validate", d / "lr.skops", d / "broken.onnx", "--sample", d / "x.npy", "--html", tmp_path / "bad.html")
    assert bad.code == 1
    assert_self_contained(tmp_path / "bad.html")
    dom = browse(tmp_path / "bad.html", tmp_path, "run-failed")
    assert dom.find(id="verdict")[0]["data-verdict"] == "failed"
    banner = dom.text.index('id="failure-banner"')
    assert banner < dom.text.index("<h3>Outputs</h3>")  # the failure comes first
    assert "probabilities" in dom.text[banner:dom.text.index("</div>", banner)]
    assert {c["data-status"] for c in dom.find("td", "cell")} == {"failed"}
    assert dom.find("article", data_output="probabilities")[0]["data-status"] == "failed"
    assert dom.find("article", data_output="label")[0]["data-status"] == "passed"
    assert len(rendered_charts(dom, "output-chart")) == 2
    assert dom.find("tr", "beyond")  # worst elements beyond their limit are marked


def test_html_to_a_directory_is_refused_before_any_work(cli, tmp_path):
    for args in (("validate", tmp_path / "m.skops", tmp_path / "m.onnx"), ("run", tmp_path / "m.skops"),
                 ("gate", "--config", tmp_path / "onnxgate.toml"), ("zoo", "verify", tmp_path)):
        r = cli(*args, "--html", tmp_path)
        assert_user_error(r, "HTML report", "is a directory")
    assert not list(tmp_path.iterdir())


# -- gate ------------------------------------------------------------------------------------------


GATE_CONFIG = """\
[defaults]
registry = "registry"
providers = ["CPU"]

[[model]]
name = "iris"
source = "models/lr.skops"
sample = "data/x.npy"
version = "1.0.0"

[[model]]
name = "iris-broken"
source = "models/lr.skops"
sample = "data/x.npy"
onnx = "models/broken.onnx"
version = "1.0.0"
"""


@needs_chromium
@pytest.mark.slow
def test_gate_html_has_one_row_per_model_linking_to_its_detail(cli, iris, tmp_path):
    repo = tmp_path / "repo"
    for src, dst in (("lr.skops", "models/lr.skops"), ("broken.onnx", "models/broken.onnx"), ("x.npy", "data/x.npy")):
        (repo / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(iris / src, repo / dst)
    (repo / "onnxgate.toml").write_text(GATE_CONFIG)
    git = ["git", "-C", str(repo), "-c", "user.email=ci@example.com", "-c", "user.name=CI"]
    subprocess.run([*git[:3], "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "two models"], check=True)

    r = cli("-q", "gate", "--config", repo / "onnxgate.toml", "--html", tmp_path / "gate.html")
    assert r.code == 1, r.out + r.err
    assert_self_contained(tmp_path / "gate.html")
    dom = browse(tmp_path / "gate.html", tmp_path, "gate")
    rows = {row["data-model"]: row["data-status"] for row in dom.find("tr", "model-row")}
    assert rows == {"iris": "passed", "iris-broken": "failed"}
    links = [a["href"] for a in dom.find("a") if a.get("href", "").startswith("#model-")]
    sections = {s["id"]: s["data-status"] for s in dom.find("section", "model")}
    assert sorted(link[1:] for link in links) == sorted(sections) and sections == {"model-iris": "passed", "model-iris-broken": "failed"}
    assert len(rendered_charts(dom, "output-chart")) == 4  # two outputs per model


# -- zoo verify ------------------------------------------------------------------------------------


def _linear(w: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", w.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", w.shape[1]])],
        [numpy_helper.from_array(w, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@needs_chromium
def test_zoo_verify_html_has_one_row_per_model_linking_to_its_detail(cli, tmp_path):
    from onnxgate.inputs.evidence import write_test_data_set

    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3)).astype(np.float32)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    for name, weights in (("good", w), ("scaled", w * np.float32(1.01))):  # stored outputs come from the original w
        d = tmp_path / "zoo" / name
        d.mkdir(parents=True)
        onnx.save(_linear(weights), str(d / "model.onnx"))
        write_test_data_set(d / "test_data_set_0", {"X": x}, {"Y": x @ w})

    r = cli("-q", "zoo", "verify", tmp_path / "zoo", "--html", tmp_path / "zoo.html", "--report", tmp_path / "zoo.json")
    assert r.code == 1, r.out + r.err
    assert_self_contained(tmp_path / "zoo.html")
    dom = browse(tmp_path / "zoo.html", tmp_path, "zoo-verify")
    assert dom.find(id="verdict")[0]["data-verdict"] == "failed"
    rows = {row["data-model"]: row["data-status"] for row in dom.find("tr", "model-row")}
    assert rows == {"good": "passed", "scaled": "failed"}
    sections = {s["id"]: s["data-status"] for s in dom.find("section", "model")}
    assert sections == {"model-good": "passed", "model-scaled": "failed"}
    assert {a["href"] for a in dom.find("a") if a.get("href", "").startswith("#model-")} == {"#model-good", "#model-scaled"}
    charts = rendered_charts(dom, "output-chart")
    assert [c["data-output"] for c in charts] == ["Y", "Y"]
    assert all("chart-errors" in c["class"] for c in charts)  # the error summaries crossed the worker's JSON pipe
    report = (tmp_path / "zoo.json").read_text()
    assert '"errors"' not in report  # ... and stay out of the JSON report
    assert [c["data-status"] for c in dom.find("td", "cell")] == ["passed", "failed"]  # data set x output grid


# -- the data behind the plots ---------------------------------------------------------------------


def test_error_summary_is_bounded_and_kept_out_of_json_and_junit():
    from onnxgate.judge.compare import OutputComparison, compare_outputs
    from onnxgate.judge.error_summary import MAX_POINTS, MAX_WORST

    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2000, 50)).astype(np.float32)
    got = ref * np.float32(1.01)
    (c,) = compare_outputs({"y": ref}, {"y": got})
    s = c.errors
    assert not c.passed and s is not None
    assert sum(s.counts) + s.zeros == ref.size and len(s.points) + len(s.beyond) <= MAX_POINTS
    assert len(s.worst) == MAX_WORST and s.worst[0].ratio >= s.worst[-1].ratio > 1
    assert s.worst[0].abs_error == pytest.approx(abs(float(got[tuple(s.worst[0].index)]) - float(ref[tuple(s.worst[0].index)])), rel=1e-3)
    assert "errors" not in c.as_dict() and len(json.dumps(c.as_dict(errors=True))) < 12_000
    again = OutputComparison(**json.loads(json.dumps(c.as_dict(errors=True))))  # the zoo pool's JSON pipe
    assert again.errors == s
    (same,) = compare_outputs({"y": ref}, {"y": got})
    assert same.errors == s  # deterministic: the same report twice is the same file


def test_findings_split_into_what_and_fix():
    from onnxgate.judge.html.views import split_fix

    assert split_fix("CPU at batch=1: passes with X but fails with Y: an ORT issue; deploy with graph_optimization_level=X") == (
        "CPU at batch=1: passes with X but fails with Y: an ORT issue", "deploy with graph_optimization_level=X")
    assert split_fix("OpenVINO took 3/5 nodes") == ("OpenVINO took 3/5 nodes", None)


def test_a_report_that_could_not_run_renders_its_error_first_without_plots():
    from onnxgate.judge.html import render_report
    from onnxgate.judge.report import Case, Report

    report = Report(source="m.skops", framework="sklearn", model={}, inputs={}, tolerances={}, versions={})
    report.cases = [Case("batch=8", "CPUExecutionProvider", "all", {"X": [8, 4]}, error="ONNX Runtime cannot load the model: bad op")]
    page = Dom(render_report(report))
    assert page.find(id="verdict")[0]["data-verdict"] == "error"
    assert "bad op" in page.text[page.text.index('id="failure-banner"'):] and not page.find("div", "output-chart")
    assert [c["data-status"] for c in page.find("td", "cell")] == ["error"]
    assert "plotly.js v" not in page.text  # no chart, no plotly.js


def test_exit_2_still_writes_an_html_page_saying_why_nothing_was_checked(cli, iris, tmp_path):
    """A sample that does not fit the model, and a gate config naming an unknown provider: exit 2,
    one error line, and --html gets a complete page with the ERROR verdict and the message at
    the top (CI publishes it as it publishes the JUnit error testcase); no charts, no plotly.js."""
    np.save(tmp_path / "x3.npy", np.zeros((4, 3), np.float32))  # iris has 4 features
    r = cli("run", iris / "lr.skops", "--sample", tmp_path / "x3.npy", "--html", tmp_path / "run.html", "--junit", tmp_path / "run.xml")
    assert_user_error(r)
    message = r.err.strip().splitlines()[-1].removeprefix("onnxgate: error: ")
    page = Dom((tmp_path / "run.html").read_text(encoding="utf-8"))
    assert page.find(id="verdict")[0]["data-verdict"] == "error"
    banner = page.text[page.text.index('id="failure-banner"'):]
    assert message.split(";")[0][:60] in banner.replace("&#39;", "'").replace("&quot;", '"'), (message, banner[:400])
    assert "plotly.js v" not in page.text and (tmp_path / "run.xml").is_file()

    (tmp_path / "onnxgate.toml").write_text('[defaults]\nproviders = ["NoSuchExecutionProvider"]\n\n[[model]]\nname = "lr"\n'
                                             f'source = "{iris / "lr.skops"}"\nversion = "1"\n')
    g = cli("gate", "--config", tmp_path / "onnxgate.toml", "--html", tmp_path / "gate.html")
    assert_user_error(g, "NoSuchExecutionProvider")
    assert Dom((tmp_path / "gate.html").read_text(encoding="utf-8")).find(id="verdict")[0]["data-verdict"] == "error"
