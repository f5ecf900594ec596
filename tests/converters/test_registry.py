"""Converter discovery through real entry points: third-party, broken and duplicate plugins."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from onnxgate.converters.base import BrokenConverter, Registry
from onnxgate.errors import DuplicateConverterError, PluginError
from tests.conftest import ROOT, assert_user_error, run_onnxgate

# A complete third-party converter: ``*.linear.npy`` holds a weight matrix W; the model is X @ W.
PLUGIN_MODULE = '''
from pathlib import Path
import numpy as np
from onnxgate.converters.base import Conversion, Converter

class LinearConverter(Converter):
    name = "linear"
    install_hint = "pip install linear-onnxgate"

    def accepts(self, source):
        return isinstance(source, (str, Path)) and str(source).endswith(".linear.npy")

    def load(self, source, *, trust, options):
        return np.load(source)

    def feeds(self, model, sample, *, options):
        (x,) = sample.arrays.values()
        return {"x": x.astype(np.float32)}

    def convert(self, model, feeds, *, opset, options):
        from onnx import TensorProto, helper, numpy_helper
        w = numpy_helper.from_array(model.astype(np.float32), "W")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["y"])], "linear",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, model.shape[0]])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, model.shape[1]])], [w])
        return Conversion(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset or 17)]), "linear 1.0")

    def reference(self, model, feeds, output_names):
        return {"y": feeds["x"].astype(np.float64) @ model}

    def versions(self):
        return {"linear-onnxgate": "1.0"}
'''


def _dist(root: Path, dist: str, entries: dict[str, str], module: str | None = None, code: str = "") -> None:
    """Write an installed-distribution layout (``*.dist-info`` with entry_points.txt) under ``root``."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[onnxgate.converters]\n{lines}\n")
    if module:
        (root / f"{module}.py").write_text(textwrap.dedent(code))


def _env(path: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(path), str(ROOT / "src")])}


def test_builtin_sklearn_comes_from_an_entry_point():
    info = {i.name: i for i in Registry().info()}
    assert info["sklearn"].value == "onnxgate.converters.sklearn:SklearnConverter"
    assert info["sklearn"].distribution == "onnxgate"
    assert info["sklearn"].status == "ok"


def test_third_party_converter_runs_end_to_end(tmp_path):
    plugins = tmp_path / "site"
    _dist(plugins, "linear_onnxgate", {"linear": "linear_plugin:LinearConverter"}, "linear_plugin", PLUGIN_MODULE)
    listed = run_onnxgate("converters", "--json", env=_env(plugins))
    assert listed.code == 0, listed.err
    entry = {c["name"]: c for c in json.loads(listed.out)}["linear"]
    assert entry["distribution"] == "linear_onnxgate" and entry["status"] == "ok"

    model = tmp_path / "m.linear.npy"
    np.save(model, np.arange(12, dtype=np.float64).reshape(4, 3) / 7)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    ran = run_onnxgate("-q", "run", model, "--sample", tmp_path / "x.npy", "--report", tmp_path / "r.json", env=_env(plugins))
    assert ran.code == 0, ran.out + ran.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["framework"] == "linear" and report["versions"]["linear-onnxgate"] == "1.0"


def test_broken_plugin_fails_alone(tmp_path):
    plugins = tmp_path / "site"
    _dist(plugins, "broken_onnxgate", {"broken": "broken_plugin:Converter"}, "broken_plugin", "import not_a_module_xyz\n")
    listed = run_onnxgate("converters", env=_env(plugins))
    assert listed.code == 0
    line = next(l for l in listed.out.splitlines() if l.startswith("broken"))
    assert "broken" in line and "not_a_module_xyz" in line
    # the sklearn path is untouched
    assert "sklearn      ok" in listed.out
    # using it says what failed and how to fix it
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    used = run_onnxgate("run", tmp_path / "x.npy", "--framework", "broken", "--sample", tmp_path / "x.npy", env=_env(plugins))
    assert_user_error(used, "failed to import", "not_a_module_xyz")


def test_duplicate_names_are_an_error(tmp_path):
    plugins = tmp_path / "site"
    _dist(plugins, "impostor", {"sklearn": "impostor_plugin:Converter"}, "impostor_plugin", "class Converter: pass\n")
    result = run_onnxgate("converters", env=_env(plugins))
    assert_user_error(result, "registered twice", "impostor")


def test_runtime_registration_refuses_overwrite():
    reg = Registry()

    class Fake:
        name = "sklearn"

    with pytest.raises(DuplicateConverterError):
        reg.register(Fake())


def test_broken_converter_stand_in_reports_hint():
    stand_in = BrokenConverter("torch", "onnxgate", ImportError("No module named 'torch'"), "pip install 'onnxgate[torch]'")
    assert stand_in.accepts("model.pt2") is False
    with pytest.raises(PluginError) as info:
        stand_in.load("model.pt2", trust=None, options={})
    assert "onnxgate[torch]" in str(info.value) and "No module named 'torch'" in str(info.value)
