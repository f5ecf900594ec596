"""CLI contract: lazy imports, help, inspect, providers, reports, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.conftest import assert_user_error

HEAVY = ("torch", "tensorflow", "keras", "sklearn")

PROBE = """
import sys
{code}
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _imported_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], capture_output=True, text=True, check=True
    ).stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("HEAVY="), out
    return [m for m in last[len("HEAVY="):].split(",") if m]


def _relu_model(tmp_path):
    """A one-node ONNX file with a symbolic batch dim and a metadata entry."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="author", value="onnxgate-tests")
    path = tmp_path / "relu.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_import_onnxgate_loads_no_framework():
    assert _imported_after("import onnxgate; onnxgate.__all__") == []


def test_help_loads_no_framework():
    code = "from onnxgate.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []
    # and the probe itself can fail: importing the sklearn converter's framework is seen
    assert "sklearn" in _imported_after("import onnxgate.converters.sklearn as s; s.default_opset()")


def test_inspect_and_providers_load_no_framework(tmp_path):
    path = _relu_model(tmp_path)
    code = f"from onnxgate.cli import main\nmain(['inspect', {str(path)!r}])\nmain(['providers'])"
    assert _imported_after(code) == []


def test_inspect_output(tmp_path, cli):
    path = _relu_model(tmp_path)
    text = cli("inspect", path)
    assert text.code == 0
    assert "x: float ['batch', 3]" in text.out and "author: onnxgate-tests" in text.out
    info = json.loads(cli("inspect", path, "--json").out)
    assert info["opset"] == 17 and info["outputs"] == [{"name": "y", "type": "float", "shape": ["batch", 3]}]


def test_providers_lists_cpu(cli):
    result = cli("providers", "--json")
    assert result.code == 0
    providers = {p["name"]: p for p in json.loads(result.out)}
    assert providers["CPUExecutionProvider"]["available"] is True


def test_usage_errors_exit_2(cli):
    result = cli("run")
    assert result.code == 2
    result = cli("validate", "a.skops", "b.onnx", "--atol", "abc")
    assert result.code == 2
    assert_user_error(cli("validate", "a.skops", "missing.onnx"), "does not exist")


def test_reports_in_three_formats(tmp_path, cli):
    sio = pytest.importorskip("skops.io")
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    src = tmp_path / "ridge.skops"
    sio.dump(Ridge().fit(X, y), src)
    np.save(tmp_path / "x.npy", X[:40].astype(np.float32))
    paths = {"report": tmp_path / "r.json", "markdown": tmp_path / "r.md", "junit": tmp_path / "r.xml"}
    result = cli("-q", "run", src, "--sample", tmp_path / "x.npy", *[a for k, p in paths.items() for a in (f"--{k}", p)])
    assert result.code == 0, result.err
    report = json.loads(paths["report"].read_text())
    assert report["schema"] == "onnxgate.report/1" and report["status"] == "passed"
    assert len(report["model"]["sha256"]) == 64 and report["model"]["opset"] >= 13
    assert len(report["inputs"]["hash"]) == 64
    for pkg in ("onnx", "onnxruntime", "scikit-learn", "skl2onnx"):
        assert report["versions"][pkg]
    out = report["cases"][0]["outputs"][0]
    assert {"max_abs_error", "max_rel_error", "mismatched", "worst", "atol", "rtol", "rule"} <= set(out)
    assert "| batch=40 | CPUExecutionProvider | `variable` | pass |" in paths["markdown"].read_text()
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) == len(report["cases"])


def test_progress_goes_to_stderr_for_slow_steps():
    import io
    import time

    from onnxgate._progress import StderrProgress

    stream = io.StringIO()
    progress = StderrProgress(stream, delay=0.05)
    with progress.step("quick"):
        pass
    with progress.step("slow"):
        time.sleep(0.2)
    text = stream.getvalue()
    assert "quick" not in text
    assert "onnxgate: slow ..." in text and "slow done in" in text


def test_demo_sklearn_models(tmp_path, monkeypatch, capsys):
    from onnxgate import demo

    monkeypatch.setattr(demo, "BUILDERS", [demo.build_sklearn_demo])
    code = demo.run_demo(tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("iris_logreg_pipeline", "diabetes_ridge", "cancer_random_forest", "iris_mixed_columns"):
        assert f"{name}" in out
        assert json.loads((tmp_path / "reports" / f"{name}.json").read_text())["status"] == "passed"
        assert (tmp_path / "onnx" / f"{name}.onnx").exists()


def test_missing_framework_is_one_line_with_install_hint(tmp_path):
    """With scikit-learn uninstalled (hidden from imports), a .skops source says what to install."""
    import textwrap

    from tests.conftest import ROOT, run_onnxgate

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys

        class _Uninstalled:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("sklearn", "skops", "skl2onnx"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, _Uninstalled())
    """))
    (tmp_path / "m.skops").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    result = run_onnxgate("run", tmp_path / "m.skops", "--sample", tmp_path / "x.npy",
                          env={"PYTHONPATH": f"{site}:{ROOT / 'src'}"})
    assert_user_error(result, "not installed", "onnxgate[sklearn]")
