"""Every scikit-learn estimator skl2onnx has a converter for, built and fitted in code.

``catalogue()`` yields ``(name, estimator, rows)`` with the estimator fitted with default
parameters (plus the minimum a meta-estimator needs: an inner estimator) on bundled data
(iris, diabetes, digits) and ``rows`` a few of the rows it was fitted on, the shared input.
The estimators whose input is not a feature matrix (:data:`NOT_A_MATRIX`) get documents, labels
or rows of tokens: sentences of the bundled data sets' descriptions (real text nobody here wrote)
and iris' class names; DictVectorizer gets iris' rows as dicts (:func:`iris_dicts`), a list saved as .json.
``SKIPS`` names the estimators that are not run, each with its reason; it only shrinks.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

# name -> why it is not in the catalogue run
SKIPS: dict[str, str] = {}

# estimators whose input is not a (rows, features) matrix: built by _build_not_a_matrix
NOT_A_MATRIX = ("CountVectorizer", "TfidfVectorizer", "FeatureHasher", "LabelEncoder", "LabelBinarizer", "DictVectorizer")

# name -> why it converts but does not pass with no flags yet (strict: a pass is reported, so the entry goes)
KNOWN_FAILURES: dict[str, str] = {}


def _data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_diabetes, load_digits, load_iris

    iris, diabetes, digits = load_iris(), load_diabetes(), load_digits()
    return {
        "iris": (iris.data, iris.target),
        "diabetes": (diabetes.data, diabetes.target),
        "digits": (digits.data[:300], digits.target[:300]),  # non-negative integer counts: naive Bayes, tf-idf, encoders
    }


# data set per estimator when the estimator kind does not decide it
# non-negative integer codes: naive Bayes on counts, tf-idf, and the category encoders, which
# match categories exactly (float32 inputs never equal iris' non-representable float categories)
_NONNEGATIVE = {"MultinomialNB", "ComplementNB", "CategoricalNB", "TfidfTransformer", "BernoulliNB",
                "OneHotEncoder", "OrdinalEncoder", "TargetEncoder"}
# skl2onnx implements these for binary (or continuous) targets only
_BINARY = {"TunedThresholdClassifierCV", "GaussianProcessClassifier", "TargetEncoder"}
_MULTI_TARGET = {"MultiOutputClassifier", "MultiOutputRegressor", "MultiTaskElasticNet",
                 "MultiTaskElasticNetCV", "MultiTaskLasso", "MultiTaskLassoCV"}


def _constructors() -> dict[str, Callable[[type], Any]]:
    """Estimators that cannot be built with no arguments: the minimum they need."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    def lr() -> Any:
        return LogisticRegression(max_iter=500)

    clf_pair = lambda: [("lr", lr()), ("dt", DecisionTreeClassifier(random_state=0))]  # noqa: E731
    reg_pair = lambda: [("lin", LinearRegression()), ("dt", DecisionTreeRegressor(random_state=0))]  # noqa: E731
    return {
        "ColumnTransformer": lambda c: c([("scale", StandardScaler(), [0, 1]), ("pca", PCA(n_components=2), [1, 2, 3])]),
        "FeatureUnion": lambda c: c([("scale", StandardScaler()), ("pca", PCA(n_components=2))]),
        "Pipeline": lambda c: c([("scale", StandardScaler()), ("lr", lr())]),
        "GridSearchCV": lambda c: c(lr(), {"C": [0.5, 1.0]}),
        "MultiOutputClassifier": lambda c: c(lr()),
        "MultiOutputRegressor": lambda c: c(LinearRegression()),
        "OneVsOneClassifier": lambda c: c(lr()),
        "OneVsRestClassifier": lambda c: c(lr()),
        "RFE": lambda c: c(lr()),
        "RFECV": lambda c: c(lr()),
        "SelectFromModel": lambda c: c(lr()),
        "StackingClassifier": lambda c: c(clf_pair()),
        "StackingRegressor": lambda c: c(reg_pair()),
        "VotingClassifier": lambda c: c(clf_pair()),
        "VotingRegressor": lambda c: c(reg_pair()),
        "TunedThresholdClassifierCV": lambda c: c(lr()),
        "LocalOutlierFactor": lambda c: c(novelty=True),
        "GaussianRandomProjection": lambda c: c(n_components=2),
        **{name: make for name, (make, _why) in _INFORMATIVE.items()},
    }


# Estimators whose defaults answer the same value on every row of the bundled data: their verdict
# is (rightly) vacuous, so the catalogue gives them the one parameter that makes the output vary.
# name -> (constructor, why the default proves nothing)
_INFORMATIVE: dict[str, tuple[Callable[[type], Any], str]] = {
    "GaussianMixture": (lambda c: c(n_components=3), "n_components=1: one component, the same label and probability on every row"),
    "BayesianGaussianMixture": (lambda c: c(n_components=3), "n_components=1: one component, the same label and probability on every row"),
    "Binarizer": (lambda c: c(threshold=3.05), "threshold=0 on iris' positive measurements: every value is 1"),
    "QuantileRegressor": (lambda c: c(alpha=0.0), "alpha=1 on diabetes' small features: every coefficient is 0, a constant prediction"),
    "RadiusNeighborsRegressor": (lambda c: c(radius=0.1), "radius=1 on diabetes' features (norms ~0.1): every training row is a neighbour, a constant mean"),
    # the verdict on the default is vacuous, not failed: test_the_defaults_replaced_for_information_are_vacuous
    "KBinsDiscretizer": (lambda c: c(strategy="uniform"), "strategy='quantile' puts iris' bin edges on its measured values (one "
                         "decimal): every row sits on an edge, where a one-ulp move changes the bin and float32 cannot decide"),
}


def supported() -> list[tuple[str, type]]:
    """(name, class) of every estimator in all_estimators() that skl2onnx has a converter for."""
    from skl2onnx._supported_operators import build_sklearn_operator_name_map
    from sklearn.utils import all_estimators

    known = build_sklearn_operator_name_map()
    return [(name, cls) for name, cls in all_estimators() if cls in known]


NO_CONVERTER = "no converter"


def no_converter() -> dict[str, str]:
    """name -> "no converter" for every estimator of all_estimators() skl2onnx has no converter for:
    the rest of the catalogue, each with its reason (onnxgate refuses them with exit 2, one line)."""
    from skl2onnx._supported_operators import build_sklearn_operator_name_map
    from sklearn.utils import all_estimators

    known = build_sklearn_operator_name_map()
    return {name: NO_CONVERTER for name, cls in all_estimators() if cls not in known}


def sentences() -> list[str]:
    """The sentences of the bundled data sets' descriptions (no download), whitespace collapsed."""
    import re

    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_linnerud, load_wine

    text = " ".join(load().DESCR for load in (load_iris, load_diabetes, load_digits, load_wine, load_breast_cancer,
                                               load_linnerud))
    return [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6]


def iris_dicts() -> list[dict[str, Any]]:
    """Iris' rows as {feature name: measurement, "species": class name}: numbers and a string value."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    return [{**dict(zip(iris.feature_names, map(float, x))), "species": str(iris.target_names[t])}
            for x, t in zip(iris.data, iris.target)]


def _build_not_a_matrix(name: str, cls: type) -> tuple[Any, Any]:
    """Vectorizers fitted on sentences (rows: 16 of them), label transformers on iris' class names (rows: 16
    labels), FeatureHasher on rows of six words: the only setting skl2onnx converts is input_type="string";
    n_features=1024 since the default 2**20 columns make the dense comparison 14 s for no more evidence."""
    from sklearn.datasets import load_iris

    if name == "DictVectorizer":  # rows: 16 of the dicts, a list (saved as .json)
        dicts = iris_dicts()
        return cls().fit(dicts), [dicts[i] for i in np.random.default_rng(0).permutation(len(dicts))[:16]]
    docs = sentences()
    rows = np.random.default_rng(0).permutation(len(docs))[:16]
    if name == "FeatureHasher":
        tokens = np.array([d.split()[:6] for d in docs])
        return cls(input_type="string", n_features=1024).fit(tokens), tokens[rows]
    if name in ("LabelEncoder", "LabelBinarizer"):
        iris = load_iris()
        labels = np.asarray(iris.target_names)[iris.target]
        return cls().fit(labels), labels[np.random.default_rng(0).permutation(len(labels))[:16]]
    return cls().fit(docs), np.array(docs)[rows]


def build(name: str, cls: type, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Any, Any]:
    """The fitted estimator and the rows (float64; strings, labels or a list of dicts for :data:`NOT_A_MATRIX`) to run it on."""
    from sklearn.base import is_classifier, is_regressor
    from threadpoolctl import threadpool_limits

    if name in NOT_A_MATRIX:
        return _build_not_a_matrix(name, cls)
    make = _constructors().get(name, lambda c: c())
    est = make(cls)
    _seed(est)
    key = "digits" if name in _NONNEGATIVE else "diabetes" if is_regressor(est) else "iris"
    X, y = data[key]
    if name in _BINARY:
        X, y = X[y < 2], y[y < 2]
    if name in _MULTI_TARGET:
        y = np.column_stack([y, (y > np.median(y)).astype(int) if is_classifier(est) or "Classifier" in name else y * 0.5 + X[:, 0]])
    if name == "KernelCenterer":
        X = X[:40] @ X[:40].T
    with warnings.catch_warnings(), threadpool_limits(1):  # one thread: OpenMP on a shared, busy machine is 10x slower
        warnings.simplefilter("ignore")
        est.fit(X, y)
    rows = np.random.default_rng(0).permutation(len(X))[:16]
    return est, np.ascontiguousarray(X[rows])


def _seed(est: Any) -> None:
    params = est.get_params()
    fixed = {k: 0 for k in params if k == "random_state" or k.endswith("__random_state")}
    if fixed:
        est.set_params(**fixed)


def catalogue(only: list[str] | None = None) -> list[tuple[str, Any, np.ndarray]]:
    data = _data()
    out = []
    for name, cls in supported():
        if name in SKIPS or (only and name not in only):
            continue
        est, rows = build(name, cls, data)
        out.append((name, est, rows))
    return out
