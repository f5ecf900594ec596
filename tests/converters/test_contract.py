"""The converter contract: one signature per method, checked when an entry point loads.

Plugins here are real: a module and a ``*.dist-info`` with ``entry_points.txt`` on
``sys.path`` (in-process) or on ``PYTHONPATH`` (the CLI in a fresh interpreter).
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxgate.converters.base import (
    METHODS,
    BrokenConverter,
    Converter,
    ConverterSettings,
    Registry,
    check_contract,
    contract_problems,
    expected_signature,
)
from onnxgate.errors import ContractError, NeedsSampleError, PluginError, SampleError, UnsupportedModelError
from tests.conftest import ROOT, assert_user_error, run_onnxgate
from tests.converters.test_registry import _dist, _env

BUILTIN = ["sklearn", "xgboost", "lightgbm", "torch", "tensorflow", "keras"]

# A plugin that follows the contract: the identity on a .ident.npy array.
GOOD = '''
import numpy as np
from onnxgate.converters.base import Conversion, Converter

class IdentityConverter(Converter):
    name = "ident"
    install_hint = "pip install ident-onnxgate"

    def accepts(self, source):
        return str(source).endswith(".ident.npy")

    def load(self, source, *, trust, options):
        return "identity"

    def feeds(self, model, sample, *, options):
        (x,) = sample.arrays.values()
        return {"x": x.astype(np.float32)}

    def convert(self, model, feeds, *, opset, options):
        raise NotImplementedError

    def reference(self, model, feeds, output_names):
        return {"y": feeds["x"]}

    def versions(self):
        return {}
'''

# The same plugin written against the old protocol: ``load`` without ``options``.
BAD = GOOD.replace("class IdentityConverter", "class OldConverter").replace(
    "def load(self, source, *, trust, options):", "def load(self, source, *, trust):"
)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path holding two installed plugin distributions: one good, one bad."""
    root = tmp_path / "site"
    _dist(root, "ident_onnxgate", {"ident": "ident_plugin:IdentityConverter"}, "ident_plugin", GOOD)
    _dist(root, "old_onnxgate", {"old": "old_plugin:OldConverter"}, "old_plugin", BAD)
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("ident_plugin", "old_plugin"):
        sys.modules.pop(name, None)


# -- the check itself -----------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_converter_follows_the_contract(name):
    reg = Registry()
    converter = reg.get(name)
    assert not isinstance(converter, BrokenConverter), converter.error
    assert isinstance(converter, Converter)
    assert contract_problems(type(converter)) == []
    settings = converter.settings_class
    assert issubclass(settings, ConverterSettings) and dataclasses.is_dataclass(settings)
    assert settings.__dataclass_params__.frozen


def test_broken_stand_in_follows_the_contract_too():
    assert contract_problems(BrokenConverter) == []


def test_expected_signatures():
    assert [expected_signature(m) for m in METHODS] == [
        "accepts(self, source)",
        "load(self, source, *, trust, options)",
        "feeds(self, model, sample, *, options)",
        "synthesize(self, model, *, options)",
        "convert(self, model, feeds, *, opset, options)",
        "reference(self, model, feeds, output_names)",
        "versions(self)",
        "model_versions(self, model)",
        "speed_calls(self, model, feeds)",
    ]


def _plugin_class(**methods):
    """A real converter class built from the GOOD plugin, with some methods replaced."""
    namespace: dict = {}
    exec(GOOD, namespace)
    base = namespace["IdentityConverter"]
    return type("Variant", (base,), methods)


def test_missing_options_parameter_names_the_method():
    bad = _plugin_class(load=lambda self, source, *, trust: source)
    (problem,) = contract_problems(bad)
    assert problem == "load(self, source, *, trust) does not match the contract load(self, source, *, trust, options)"


def test_keyword_only_ness_is_checked():
    bad = _plugin_class(feeds=lambda self, model, sample, options: {})
    (problem,) = contract_problems(bad)
    assert "feeds(self, model, sample, options) does not match" in problem
    assert "feeds(self, model, sample, *, options)" in problem


def test_extra_parameters_are_allowed_only_with_defaults():
    ok = _plugin_class(convert=lambda self, model, feeds, *, opset, options, strict=False: None)
    assert contract_problems(ok) == []
    bad = _plugin_class(convert=lambda self, model, feeds, *, opset, options, strict: None)
    assert contract_problems(bad) != []


def test_a_duck_typed_class_must_provide_every_method():
    class Duck:
        name = "duck"
        install_hint = ""
        settings_class = ConverterSettings

        def accepts(self, source):
            return False

    problems = contract_problems(Duck)
    assert "has no method load; expected load(self, source, *, trust, options)" in problems
    assert "has no method synthesize; expected synthesize(self, model, *, options)" in problems
    with pytest.raises(ContractError) as info:
        check_contract(Duck)
    assert "\n" not in str(info.value) and "subclass onnxgate.converters.Converter" in str(info.value)


def test_an_unimplemented_abstract_method_is_named():
    class Half(Converter):
        name = "half"

        def accepts(self, source):
            return False

    problems = contract_problems(Half)
    assert "does not implement load(self, source, *, trust, options)" in problems
    assert not any("synthesize" in p for p in problems)  # the base class provides it


def test_runtime_registration_checks_the_contract():
    class Old:
        name = "old-runtime"
        install_hint = ""

        def accepts(self, source):
            return False

    reg = Registry()
    with pytest.raises(ContractError):
        reg.register(Old())
    assert "old-runtime" not in reg.names()


# -- real entry points ------------------------------------------------------------------------


def test_good_plugin_loads_from_its_entry_point(site):
    reg = Registry()
    converter = reg.get("ident")
    assert type(converter).__name__ == "IdentityConverter" and isinstance(converter, Converter)
    info = {i.name: i for i in reg.info()}
    assert info["ident"].status == "ok" and info["ident"].distribution == "ident_onnxgate"


def test_bad_plugin_is_broken_and_fails_alone(site):
    reg = Registry()
    broken = reg.get("old")
    assert isinstance(broken, BrokenConverter)
    info = {i.name: i for i in reg.info()}
    assert info["old"].status == "broken"
    assert "load(self, source, *, trust) does not match the contract load(self, source, *, trust, options)" in info["old"].error
    assert info["sklearn"].status == "ok" and info["ident"].status == "ok"
    with pytest.raises(PluginError) as err:
        broken.load("x.npy", trust=None, options={})
    text = str(err.value)
    assert "\n" not in text and "'old' from old_onnxgate breaks the converter contract" in text
    # the stand-in's synthesize is a plugin error, not a "needs a sample" the caller would work around
    with pytest.raises(PluginError) as err:
        broken.synthesize(None, options={})
    assert not isinstance(err.value, SampleError)


def test_bad_plugin_through_the_cli(tmp_path):
    """`onnxgate converters` lists it as broken; using it is a one-line error; sklearn still runs."""
    plugins = tmp_path / "site"
    _dist(plugins, "old_onnxgate", {"old": "old_plugin:OldConverter"}, "old_plugin", BAD)
    listed = run_onnxgate("converters", env=_env(plugins))
    assert listed.code == 0, listed.err
    line = next(l for l in listed.out.splitlines() if l.startswith("old "))
    assert " broken " in line and "load(self, source, *, trust, options)" in line
    assert "sklearn      ok" in listed.out

    np.save(tmp_path / "m.ident.npy", np.ones((2, 2)))
    used = run_onnxgate("run", tmp_path / "m.ident.npy", "--framework", "old", "--sample", tmp_path / "m.ident.npy", env=_env(plugins))
    assert_user_error(used, "breaks the converter contract", "load(self, source, *, trust)")

    from sklearn.linear_model import LogisticRegression
    import skops.io as sio

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    sio.dump(model, tmp_path / "lr.skops")
    np.save(tmp_path / "x.npy", X[:8].astype(np.float32))
    ran = run_onnxgate("-q", "run", tmp_path / "lr.skops", "--sample", tmp_path / "x.npy", env=_env(plugins))
    assert ran.code == 0, ran.out + ran.err


# -- synthesize -------------------------------------------------------------------------------


def test_synthesize_default_asks_for_a_sample():
    namespace: dict = {}
    exec(GOOD, namespace)
    converter = namespace["IdentityConverter"]()
    with pytest.raises(NeedsSampleError) as err:
        converter.synthesize("identity", options={})
    assert isinstance(err.value, SampleError)
    assert "the ident converter needs a sample" in err.value.message and "--sample" in err.value.hint


def test_pipeline_falls_back_to_the_onnx_signature(site, monkeypatch):
    """A converter without synthesize: validate's ONNX specs stand in; without them, the user is asked."""
    from onnxgate.converters import base
    from onnxgate.inputs.synthesize import InputSpec
    from onnxgate.pipelines.run import load_source

    monkeypatch.setattr(base, "_registry", Registry())  # a fresh process-wide registry that sees the site
    source = site / "m.ident.npy"
    np.save(source, np.ones(3))
    with pytest.raises(NeedsSampleError):
        load_source(str(source), framework="ident")
    loaded = load_source(str(source), framework="ident", specs=[InputSpec("x", np.float32, (None, 4))])
    assert list(loaded.feeds) == ["x"] and loaded.feeds["x"].shape[1] == 4


def test_sklearn_without_feature_count_needs_a_sample():
    from sklearn.preprocessing import FunctionTransformer

    from onnxgate.converters.sklearn import SklearnConverter

    model = FunctionTransformer(np.log1p)  # stateless: records no n_features_in_ unless fitted on data
    with pytest.raises(NeedsSampleError):
        SklearnConverter().synthesize(model, options={"seed": 0})


# -- settings and typed errors ------------------------------------------------------------------


def test_settings_read_their_own_keys_only():
    from onnxgate.converters.sklearn import SklearnSettings
    from onnxgate.converters.tensorflow import TensorflowSettings
    from onnxgate.converters.torch import TorchSettings

    options = {"double": True, "static": None, "upcast_bf16": 1, "signature": "serve", "seed": 3, "dims": {"batch": 2}}
    assert TorchSettings.from_options(options) == TorchSettings(upcast_bf16=True, static=False)
    assert SklearnSettings.from_options(options).dtype is np.float64
    assert SklearnSettings.from_options({}).dtype is np.float32
    assert TensorflowSettings.from_options({}).signature == "serving_default"
    assert TensorflowSettings.from_options(options).signature == "serve"
    with pytest.raises(dataclasses.FrozenInstanceError):
        TorchSettings().static = True  # type: ignore[misc]


def test_unsupported_estimator_is_a_typed_error():
    from sklearn.base import BaseEstimator, RegressorMixin

    from onnxgate.converters.sklearn import SklearnConverter

    class Mean(RegressorMixin, BaseEstimator):  # a real estimator skl2onnx has no converter for
        def fit(self, X, y):
            self.mean_ = float(np.mean(y))
            self.n_features_in_ = X.shape[1]
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    X = np.ones((4, 2))
    with pytest.raises(UnsupportedModelError) as err:
        SklearnConverter().convert(Mean().fit(X, np.arange(4.0)), {"X": X.astype(np.float32)}, opset=None, options={})
    assert "skl2onnx cannot convert Mean" in err.value.message


# -- imports ----------------------------------------------------------------------------------


def test_importing_converter_modules_imports_no_framework():
    code = (
        "import sys, onnxgate.converters.base, onnxgate.converters.sklearn, onnxgate.converters.boosters,"
        " onnxgate.converters.torch, onnxgate.converters.tensorflow, onnxgate.converters.keras;"
        "heavy = [m for m in ('torch', 'tensorflow', 'sklearn', 'keras', 'xgboost', 'lightgbm') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imports(path: Path) -> set[str]:
    """Every onnxgate module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("onnxgate"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("onnxgate")}
    return found


def test_demo_modules_form_no_import_cycle():
    pkg = ROOT / "src" / "onnxgate"
    graph = {f"onnxgate.{p.stem}": _imports(p) for p in pkg.glob("demo*.py")}
    assert "onnxgate.demo_model" in graph
    for module, deps in graph.items():
        for dep in deps & set(graph):
            assert module not in graph[dep], f"{module} and {dep} import each other"
