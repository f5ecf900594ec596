"""The float64 reference: the original's own float32 error sets the floor where the framework
can compute in float64, ONNX is compared with the float64 run, and the perturbation floor
remains where it cannot (or where the original computes in float64 already)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxgate.judge.calibration import DTYPE_DEFAULT, FLOAT64, PERTURBATION, Floor, combined, noise_floors, perturbed


def _perturbation(elements: np.ndarray) -> Floor:
    return Floor(float(np.median(elements)), "perturbation", elements, 1.0, PERTURBATION)


def test_the_floor_is_the_larger_of_the_own_float32_error_and_the_perturbation_floor():
    narrow = {"y": np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)}
    wide = {"y": np.array([[1.0 + 1e-7, 2.0 - 3e-7, 3.0 + 2e-7, 4.0]], np.float64)}
    pert = {"y": _perturbation(np.array([[1e-8, 1e-8, 5e-7, 1e-8]]))}
    (floor,) = combined(pert, narrow, wide).values()
    assert floor.source == FLOAT64
    own = np.abs(narrow["y"].astype(np.float64) - wide["y"])
    typical = np.median(own)  # a value the float32 run rounded exactly still gets the typical error
    np.testing.assert_allclose(floor.elements, np.maximum(np.maximum(own, typical), pert["y"].elements))
    assert floor.value == pytest.approx(max(typical, pert["y"].value))


def test_an_original_that_computes_in_float64_keeps_the_perturbation_floor_and_says_so():
    narrow = {"y": np.array([[1.5, 2.5]])}
    pert = {"y": _perturbation(np.array([[1e-7, 2e-7]]))}
    (floor,) = combined(pert, narrow, {"y": narrow["y"].copy()}).values()
    assert floor.source == PERTURBATION and "computes in float64" in floor.method
    assert combined(pert, narrow, None) == pert  # no float64 reference: unchanged


def test_perturbation_moves_every_value_up_then_down_by_one_ulp():
    x = {"x": np.array([1.0, -2.0, 3.5], np.float32), "ids": np.array([1, 2])}
    up, down = perturbed(x, 0, 1)["x"], perturbed(x, 0, -1)["x"]
    np.testing.assert_array_equal(up, np.nextafter(x["x"], np.float32(np.inf)))
    np.testing.assert_array_equal(down, np.nextafter(x["x"], np.float32(-np.inf)))
    np.testing.assert_array_equal(perturbed(x, 0, 1)["ids"], x["ids"])


def test_a_step_within_one_ulp_is_measured_both_ways():
    """A threshold (a tree's, a repeated quantile's) half an ulp away: one direction crosses it."""
    x = np.array([[1.0], [2.0]], np.float32)
    edge = float(np.nextafter(np.float32(1.0), np.float32(0.0)))  # just below row 0

    def step(feeds):
        return {"y": (feeds["x"] > edge).astype(np.float32)}

    floors = noise_floors(step, {"x": x}, step({"x": x}))
    assert floors["y"].elements[0, 0] == 1.0 and floors["y"].source == PERTURBATION
    no_floats = noise_floors(lambda f: {"y": np.ones((2, 1))}, {"ids": np.array([1, 2])}, {"y": np.ones((2, 1))})
    assert no_floats["y"].source == DTYPE_DEFAULT


def _torch_net(refuse_float64: bool = False):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                                            torch.nn.Linear(64, 4))

        def forward(self, x):
            return self.body(x.float() if refuse_float64 else x)

    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture(scope="module")
def torch_sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("f64")
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32))
    return str(d / "x.npy")


def _floats(report):
    return [o for c in report.cases for o in c.outputs if o.kind == "float"]


def test_torch_reference_runs_in_float64_and_a_one_percent_weight_change_still_fails(torch_sample):
    from onnxgate.pipelines.run import convert, validate
    from tests.judge.verdict_corpus import scaled

    net = _torch_net()
    conv = convert(net, None, sample=torch_sample, in_process=True)
    try:
        wide = conv.reference.infer64(conv.reference.feeds, ["output"])
        assert wide is not None and wide["output"].dtype == np.float64
        narrow = conv.reference.infer(conv.reference.feeds, ["output"])["output"]
        assert 0 < np.abs(narrow - wide["output"]).max() < 1e-5  # the original's own float32 error
        ok = validate(net, conv.model, sample=torch_sample, reference=conv.reference)
        broken = validate(net, scaled(conv.model), sample=torch_sample, reference=conv.reference)
    finally:
        conv.reference.close()
    assert ok.passed, ok.failures()
    nominal = [o for o in _floats(ok) if o.reference_dtype == "float64"]
    assert nominal and all(o.floor_method == FLOAT64 and "float64 reference" in o.rule for o in nominal)
    assert ok.tolerances["calibration"]["floors"]["output"]["source"] == FLOAT64
    assert broken.status == "failed"


def test_a_module_that_refuses_float64_falls_back_to_the_perturbation_floor(torch_sample):
    from onnxgate.pipelines.run import convert, validate

    net = _torch_net(refuse_float64=True)  # casts its input to float32: its "float64 run" is not one
    conv = convert(net, None, sample=torch_sample, in_process=True)
    try:
        assert conv.reference.infer64(conv.reference.feeds, ["output"]) is None
        ok = validate(net, conv.model, sample=torch_sample, reference=conv.reference)
    finally:
        conv.reference.close()
    assert ok.passed, ok.failures()
    assert {o.floor_method for o in _floats(ok)} == {PERTURBATION}


def test_keras_reference_is_rebuilt_under_a_float64_policy():
    keras = pytest.importorskip("keras")
    from onnxgate.converters.keras import KerasConverter, describe_model

    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="x")
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="p")(keras.layers.Dense(32, activation="gelu")(inp)))
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    described = describe_model(model, "test model")
    names = described.outputs
    narrow = KerasConverter().reference(described, {"x": x}, names)
    wide = KerasConverter().reference64(described, {"x": x}, names)
    assert wide is not None and all(v.dtype == np.float64 for v in wide.values())
    assert all(np.abs(narrow[n] - wide[n]).max() < 1e-6 for n in names)
    assert model.dtype_policy.name == "float32"  # the original is untouched


def test_scikit_learn_is_its_own_float64_reference_through_the_worker(tmp_path):
    """In the framework worker (the ``infer64`` request): KMeans computes in float64 already."""
    import skops.io as sio
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_diabetes

    from onnxgate.runtime.framework import open_reference

    X, _ = load_diabetes(return_X_y=True)
    sio.dump(KMeans(n_clusters=3, n_init=1, random_state=0).fit(X * 100), tmp_path / "k.skops")
    np.save(tmp_path / "x.npy", (X[:8] * 100).astype(np.float32))
    with open_reference(str(tmp_path / "k.skops"), sample=str(tmp_path / "x.npy")) as ref:
        narrow = ref.infer(ref.feeds, ["scores"])
        wide = ref.infer64(ref.feeds, ["scores"])
    assert wide is not None
    np.testing.assert_array_equal(wide["scores"], narrow["scores"])


def test_quantile_transformer_on_its_training_rows_passes_and_says_which_values_sit_on_a_quantile(tmp_path, monkeypatch):
    """Training rows sit on repeated quantiles: the output jumps within one float32 ulp of the input
    (over 0.1 here), which a fixed tolerance calls a failure. The up/down perturbation measures those
    jumps and allows each once, where it happens, so the correct conversion passes, and the report
    says how many values a small error would go unseen on. Unseen rows keep their power: a 1% change fails."""
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import QuantileTransformer

    from onnxgate.converters.fixes import DISABLE_ENV
    from onnxgate.converters.fixes.sklearn_quantile import QUANTILE_GRAPH
    from onnxgate.pipelines.run import convert, validate
    from tests.judge.verdict_corpus import _unseen, scaled

    # skl2onnx's float32 graph, whose rounded quantiles jump where the original does not (onnxgate's own
    # graph computes in float64 and matches on these rows: tests/converters/test_sklearn_quantile.py)
    monkeypatch.setenv(DISABLE_ENV, QUANTILE_GRAPH.name)
    X, _ = load_diabetes(return_X_y=True)
    X = X * 100
    model = QuantileTransformer(n_quantiles=50, random_state=0).fit(X[32:])  # skl2onnx takes minutes at 1000
    np.save(tmp_path / "seen.npy", X[32:64].astype(np.float32))
    np.save(tmp_path / "unseen.npy", _unseen(X[:32], X.std(0)).astype(np.float32))
    seen = str(tmp_path / "seen.npy")
    conv = convert(model, None, sample=seen, in_process=True)
    try:
        fixed = validate(model, conv.model, sample=seen, reference=conv.reference, no_calibration=True)
        ok = validate(model, conv.model, sample=seen, reference=conv.reference)
    finally:
        conv.reference.close()
    assert fixed.status == "failed" and max(o.max_abs_error for o in _floats(fixed)) > 0.1
    assert ok.passed, ok.to_markdown()
    assert any(f.check == "noise-floor" and "values sit on a threshold" in f.message for f in ok.findings)
    unseen = str(tmp_path / "unseen.npy")
    broken = validate(model, scaled(conv.model), sample=unseen)
    assert broken.status == "failed"
    assert not any(f.check == "noise-floor" for f in broken.findings)
