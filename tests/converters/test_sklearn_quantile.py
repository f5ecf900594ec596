"""onnxgate's own QuantileTransformer graph (fix sklearn.quantile_transformer_graph).

Real scikit-learn estimators, real skl2onnx conversions, real ONNX Runtime sessions and the
validator with no flags: the graph passes on training rows (which sit on repeated quantiles) and
on held-out rows, in float32 and with --double, for both output distributions, alone and inside
a Pipeline or ColumnTransformer; one quantile x1.01 fails; the float64 graph equals scikit-learn
bit for bit (uniform) or to float64 rounding (normal); its node count does not grow with
n_quantiles, where skl2onnx's does (and its conversion time with it: benchmarks/bench_corpus.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from onnxgate.converters.fixes import DISABLE_ENV

warnings.filterwarnings("ignore")
pytest.importorskip("skl2onnx")

FIX = "sklearn.quantile_transformer_graph"


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """iris, the catalogue's 16 training rows and the same rows moved by 5% of each feature's spread."""
    from sklearn.preprocessing import QuantileTransformer

    from tests.converters import sklearn_catalogue as cat

    X = cat._data()["iris"][0]
    _, rows = cat.build("QuantileTransformer", QuantileTransformer, cat._data())
    held_out = rows + np.random.default_rng(0).normal(scale=0.05, size=rows.shape) * X.std(0)
    return X, rows, held_out


def _fitted(X: np.ndarray, distribution: str, **params):
    from sklearn.preprocessing import QuantileTransformer

    return QuantileTransformer(output_distribution=distribution, random_state=0, **params).fit(X)


def _fixes(notes: list[str]) -> list[str]:
    return [n.split(":")[0].removeprefix("fix ") for n in notes if n.startswith("fix ")]


def _run(est, rows, tmp_path, **options):
    from onnxgate.pipelines.run import run

    np.save(tmp_path / "x.npy", rows)
    return run(est, sample=str(tmp_path / "x.npy"), in_process=True, **options)


def _one_quantile_scaled(model, feature: int, index: int, factor: float = 1.01):
    """A copy of ``model`` whose quantile ``index`` of ``feature`` is multiplied by ``factor``."""
    import onnx
    from onnx import numpy_helper

    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    (table,) = [t for t in broken.graph.initializer if t.name.startswith("qt_quantiles")]
    values = numpy_helper.to_array(table).copy()  # one row per lookup block, a feature's blocks in a run
    flat = values.reshape(-1)
    per_feature = flat.size // 4  # iris: 4 features
    flat[feature * per_feature + index] *= factor
    table.CopyFrom(numpy_helper.from_array(values, table.name))
    return broken


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _convert(est, X: np.ndarray, double: bool = False, opset: int | None = None):
    from onnxgate.converters.sklearn import SklearnConverter

    dtype = np.float64 if double else np.float32
    return SklearnConverter().convert(est, {"X": X[:4].astype(dtype)}, opset=opset, options={"double": double})


@pytest.mark.parametrize("double", [False, True], ids=["float32", "double"])
@pytest.mark.parametrize("sample", ["training", "held_out"])
@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_passes_with_no_flags_and_names_the_fix(distribution, sample, double, iris, tmp_path):
    X, training, held_out = iris
    est = _fitted(X, distribution)  # default n_quantiles: 150 on iris, where skl2onnx takes ~45 s
    report, _ = _run(est, training if sample == "training" else held_out, tmp_path, double=double)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert FIX in _fixes(report.conversion.notes)


@pytest.mark.parametrize("double", [False, True], ids=["float32", "double"])
@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_one_quantile_off_by_one_percent_fails_on_held_out_rows(distribution, double, iris, tmp_path):
    """The quantile that the most held-out values interpolate from, x1.01: the run fails. (On iris' own
    training rows a 1% change goes unseen: every value sits on a repeated quantile, and the report says so.)"""
    from onnxgate.pipelines.run import validate

    X, _, held_out = iris
    est = _fitted(X, distribution)
    report, conv = _run(est, held_out, tmp_path, double=double)
    assert report.status == "passed"
    feature = 2
    index = int(np.median(np.searchsorted(est.quantiles_[:, feature], held_out[:, feature])))
    broken = validate(est, _one_quantile_scaled(conv.model, feature, index), sample=str(tmp_path / "x.npy"),
                      in_process=True, double=double)
    assert broken.status == "failed", broken.to_markdown()[:3000]


def _edge_rows(X: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Rows on every quantile, between them, beyond both ends, within 1e-7 of the ends, and NaN."""
    rng = np.random.default_rng(1)
    lo, hi = quantiles[0], quantiles[-1]
    return np.vstack([X, X + rng.normal(0, 0.01, X.shape), quantiles, lo - 1, hi + 1, lo + 5e-8, hi - 5e-8,
                      np.where(np.arange(X.shape[1]) % 2, np.nan, lo)])


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_graph_equals_scikit_learn(distribution):
    """n_quantiles=1000 on 3000 rows with repeated values and a constant feature: the float64 graph is
    scikit-learn's np.interp arithmetic (uniform: bit for bit; normal: AS241 within 1e-14), and the float32
    graph is that answer rounded to float32, on every kind of row (NaN stays NaN)."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=3000), rng.integers(0, 5, 3000), np.full(3000, 2.5), rng.exponential(size=3000)])
    est = _fitted(X, distribution, n_quantiles=1000)
    rows = _edge_rows(X[:300], est.quantiles_)
    expected = est.transform(rows)
    got64 = _session(_convert(est, X, double=True).model).run(None, {"X": rows})[0]
    got32 = _session(_convert(est, X).model).run(None, {"X": rows.astype(np.float32)})[0]
    expected32 = est.transform(rows.astype(np.float32).astype(np.float64))  # the values the float32 graph sees
    if distribution == "uniform":
        np.testing.assert_array_equal(got64, expected)
        np.testing.assert_array_equal(got32, expected32.astype(np.float32))
    else:
        np.testing.assert_allclose(got64, expected, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(got32, expected32, rtol=2**-23, atol=0)
    assert got64.dtype == np.float64 and got32.dtype == np.float32


def test_node_count_does_not_grow_with_n_quantiles(monkeypatch):
    """A structure skl2onnx's converter lacks: with the fix the graph has as many nodes at n_quantiles=1000 as
    at 8 (only the initializers grow) and the notes name it; without it skl2onnx's binary search adds nodes
    per halving step (its composition time grows ~3x per step: 45 s at iris' 150 quantiles)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4))

    def nodes(n_quantiles: int) -> tuple[int, bool]:
        conv = _convert(_fitted(X, "uniform", n_quantiles=n_quantiles), X)
        return len(conv.model.graph.node), FIX in _fixes(conv.notes)

    (few, named), (many, named_too) = nodes(8), nodes(1000)
    assert few == many and named and named_too
    monkeypatch.setenv(DISABLE_ENV, FIX)
    (few, named), (more, _) = nodes(8), nodes(16)
    assert not named and more > few


def test_normal_output_is_refused_by_skl2onnx_without_the_fix(iris, monkeypatch):
    from onnxgate.errors import UnsupportedModelError

    est = _fitted(iris[0], "normal", n_quantiles=8)
    assert FIX in _fixes(_convert(est, iris[0]).notes)
    monkeypatch.setenv(DISABLE_ENV, FIX)
    with pytest.raises(UnsupportedModelError, match="not supported"):
        _convert(est, iris[0])


def test_skl2onnx_registry_is_left_alone(iris):
    """The converter is handed to one convert_sklearn call; skl2onnx's own stays registered."""
    from skl2onnx.common._registration import get_converter, get_shape_calculator
    from skl2onnx.operator_converters.quantile_transformer import convert_quantile_transformer

    before = get_converter("SklearnQuantileTransformer"), get_shape_calculator("SklearnQuantileTransformer")
    _convert(_fitted(iris[0], "uniform"), iris[0])
    after = get_converter("SklearnQuantileTransformer"), get_shape_calculator("SklearnQuantileTransformer")
    assert after == before and after[0]._fct is convert_quantile_transformer


def test_below_opset_13_skl2onnx_converts_it(iris):
    est = _fitted(iris[0], "uniform", n_quantiles=8)
    conv = _convert(est, iris[0], opset=12)
    assert FIX not in _fixes(conv.notes)


def _pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    return make_pipeline(StandardScaler(), QuantileTransformer(random_state=0), LogisticRegression(max_iter=500))


def _column_transformer():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    return ColumnTransformer([("quantiles", QuantileTransformer(output_distribution="normal", random_state=0), [0, 1]),
                              ("scale", StandardScaler(), [2, 3])])


@pytest.mark.parametrize("build", [_pipeline, _column_transformer], ids=["pipeline", "column_transformer"])
def test_inside_a_pipeline_or_column_transformer(build, iris, tmp_path):
    X, _, held_out = iris
    y = np.repeat([0, 1, 2], 50)
    est = build().fit(X, y)
    report, _ = _run(est, held_out, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert FIX in _fixes(report.conversion.notes)
