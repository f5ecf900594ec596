"""Audited trust: data-only types that onnxgate checks before it trusts them.

skops refuses scikit-learn's own Cython types (trees, KD-trees, distance metrics) and a
few plain ones (optimizers, loss objects, score functions) because a type name says
nothing about contents: a ``Tree`` whose child index points past its node array makes
``predict`` read outside memory, or loop for ever. Rather than asking the user for
``--trust-type`` (which users answer with ``--trust-code``), onnxgate loads these types
and audits every instance *before anything runs on it*: indices in range, paths that
end, shapes that agree. A failed audit is refused (exit 2) naming the array and index.
A type with no audit here still needs ``--trust-type``.

Each audit is a small function ``audit(obj, where, n_features)``: ``where`` names the
object in the estimator (``estimators_[3].tree_``) and ``n_features`` is the feature
count of the nearest estimator above it (None when unknown). :data:`AUDITS` maps the
type names skops reports to ``(audit, grounds)``; ``grounds`` goes into the report.

The xgboost JSON and lightgbm text audits run on the files before their libraries
parse them (:func:`audit_xgboost_json`, :func:`audit_lightgbm_text`). Boosters inside a
``.skops`` file (xgboost, lightgbm and CatBoost estimators) are audited the same way from
the file, before skops hands their payload to the library's parser:
:func:`audit_skops_payloads` reads each booster's serialized model from the archive,
checks that it is what its type claims (xgboost UBJSON/JSON trees, lightgbm model text,
a CatBoost ``CBM1`` model within the size limit) and audits its trees.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from onnxgate.errors import SourceError

__all__ = ["AuditError", "AUDITS", "PAYLOADS", "auditable", "audit_estimator", "recording", "record",
           "audit_xgboost_json", "audit_lightgbm_text", "audit_skops_payloads"]


class AuditError(SourceError):
    """A trusted-by-audit object failed its audit: its contents would crash or loop the framework."""


def _fail(where: str, what: str) -> AuditError:
    return AuditError(
        f"refusing to load: {where}{'' if what.startswith('[') else ' '}{what}",
        "the file is corrupt or hostile; re-export the model from its framework (or pass --trust-code to load it anyway)",
    )


# -- the record of what was trusted by audit (read by the framework worker for the report) -----

_records: list[dict[str, Any]] | None = None


@contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """Collect :func:`record` calls made while loading one model."""
    global _records
    saved, _records = _records, []
    try:
        yield _records
    finally:
        _records = saved


def record(type_name: str, instances: int, grounds: str) -> None:
    if _records is not None:
        _records.append({"type": type_name, "instances": instances, "grounds": grounds})


# -- small checks shared by the audits ------------------------------------------------------


def _ints_in(where: str, array: np.ndarray, lo: int, hi: int, mask: np.ndarray | None = None) -> None:
    """Every (masked) element of ``array`` lies in [lo, hi); else name the first that does not."""
    values = np.asarray(array)
    bad = (values < lo) | (values >= hi)
    if mask is not None:
        bad &= mask
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(where, f"[{i}] = {int(values.flat[i])} is outside [{lo}, {hi})")


def _children_after_parent(where: str, children: np.ndarray, internal: np.ndarray) -> None:
    """Children come after their parent in every builder scikit-learn has: a path can only end."""
    idx = np.arange(len(children))
    bad = internal & (children <= idx)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(where, f"[{i}] = {int(children[i])} points back to an earlier node (a cycle)")


def _shape(where: str, array: Any, expected: tuple[int, ...]) -> None:
    shape = tuple(np.shape(array))
    if shape != expected:
        raise _fail(where, f"has shape {list(shape)}; expected {list(expected)}")


def _finite_number(where: str, value: Any, *, positive: bool = False) -> None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _fail(where, f"is {type(value).__name__}, not a number") from None
    if math.isnan(x) or (positive and x <= 0):
        raise _fail(where, f"= {x!r} is not a {'positive ' if positive else ''}number")


# -- scikit-learn decision trees ---------------------------------------------------------------


def audit_tree(tree: Any, where: str, n_features: int | None) -> None:
    """``sklearn.tree._tree.Tree``: node count within capacity, children ahead and in range,
    split features within the estimator's features, values of the declared shape."""
    count, capacity = int(tree.node_count), int(tree.capacity)
    if not 0 < count <= capacity:
        raise _fail(f"{where}.node_count", f"= {count} is outside [1, {capacity}] (the node array's length)")
    if n_features is not None and int(tree.n_features) != n_features:
        raise _fail(f"{where}.n_features", f"= {int(tree.n_features)}; the estimator has {n_features} features")
    state = tree.__getstate__()
    nodes, values = state["nodes"], state["values"]
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = (left == -1) & (right == -1)
    internal = ~leaf
    _ints_in(f"{where}.nodes['left_child']", left, -1, count)
    _ints_in(f"{where}.nodes['right_child']", right, -1, count)
    lonely = internal & ((left == -1) | (right == -1))
    if lonely.any():
        i = int(np.flatnonzero(lonely)[0])
        raise _fail(f"{where}.nodes", f"[{i}] has one child ({int(left[i])}, {int(right[i])}); a split needs two")
    _children_after_parent(f"{where}.nodes['left_child']", left, internal)
    _children_after_parent(f"{where}.nodes['right_child']", right, internal)
    _ints_in(f"{where}.nodes['feature']", feature, 0, int(tree.n_features), internal)
    _shape(f"{where}.values", values, (count, int(tree.n_outputs), int(tree.max_n_classes)))


# -- histogram gradient boosting ----------------------------------------------------------------


def audit_hgb_predictor(predictor: Any, where: str, n_features: int | None) -> None:
    """``TreePredictor``: the same tree rules on its record array, categorical bitsets in range."""
    nodes = getattr(predictor, "nodes", None)
    if not isinstance(nodes, np.ndarray) or nodes.ndim != 1 or nodes.dtype.names is None or len(nodes) == 0:
        raise _fail(f"{where}.nodes", "is not a non-empty record array of tree nodes")
    for name in ("left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx"):
        if name not in nodes.dtype.names:
            raise _fail(f"{where}.nodes", f"has no field {name!r}")
    n = len(nodes)
    internal = nodes["is_leaf"] == 0
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    _ints_in(f"{where}.nodes['left']", left, 1, n, internal)
    _ints_in(f"{where}.nodes['right']", right, 1, n, internal)
    _children_after_parent(f"{where}.nodes['left']", left, internal)
    _children_after_parent(f"{where}.nodes['right']", right, internal)
    _ints_in(f"{where}.nodes['feature_idx']", nodes["feature_idx"].astype(np.int64), 0,
             n_features if n_features is not None else np.iinfo(np.int64).max, internal)
    categorical = internal & (nodes["is_categorical"] != 0)
    for attr in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        bitsets = np.asarray(getattr(predictor, attr, np.empty((0, 8))))
        if bitsets.ndim != 2 or bitsets.shape[1] != 8:
            raise _fail(f"{where}.{attr}", f"has shape {list(bitsets.shape)}; expected [n, 8]")
        _ints_in(f"{where}.nodes['bitset_idx']", nodes["bitset_idx"].astype(np.int64), 0, len(bitsets), categorical)


# -- nearest neighbours: KD and ball trees, distance metrics -------------------------------------


def audit_binary_tree(tree: Any, where: str, n_features: int | None) -> None:
    """``KDTree``/``BallTree``: point indices in range, node ranges inside them, every split
    node's children present, bounds shaped for the data; then its distance metric."""
    state = tree.__getstate__()
    data, idx_array, node_data, node_bounds = (np.asarray(a) for a in state[:4])
    leaf_size, n_levels, n_nodes, metric, weights = state[4], state[5], state[6], state[11], state[12]
    if data.ndim != 2:
        raise _fail(f"{where}.data", f"has {data.ndim} dimensions; expected 2")
    n_samples, dims = data.shape
    if n_features is not None and dims != n_features:
        raise _fail(f"{where}.data", f"has {dims} columns; the estimator has {n_features} features")
    if leaf_size < 1 or n_nodes < 1 or n_nodes != 2 ** n_levels - 1:
        raise _fail(where, f"declares {n_nodes} nodes in {n_levels} levels (leaf size {leaf_size})")
    _shape(f"{where}.idx_array", idx_array, (n_samples,))
    _ints_in(f"{where}.idx_array", idx_array, 0, n_samples)
    _shape(f"{where}.node_data", node_data, (n_nodes,))
    start, end = node_data["idx_start"].astype(np.int64), node_data["idx_end"].astype(np.int64)
    _ints_in(f"{where}.node_data['idx_start']", start, 0, n_samples + 1)
    _ints_in(f"{where}.node_data['idx_end']", end, 0, n_samples + 1)
    inverted = start > end
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise _fail(f"{where}.node_data", f"[{i}] has idx_start {int(start[i])} after idx_end {int(end[i])}")
    internal = node_data["is_leaf"] == 0
    childless = internal & (2 * np.arange(n_nodes) + 2 >= n_nodes)
    if childless.any():
        i = int(np.flatnonzero(childless)[0])
        raise _fail(f"{where}.node_data['is_leaf']", f"[{i}] = 0 but node {i} has no children in {n_nodes} nodes")
    bounds_rows = 2 if type(tree).__name__.startswith("KDTree") else 1
    _shape(f"{where}.node_bounds", node_bounds, (bounds_rows, n_nodes, dims))
    if weights is not None:
        _shape(f"{where}.sample_weight", weights, (n_samples,))
    audit_metric(metric, f"{where}.dist_metric", dims)


_METRICS = ("Euclidean", "SEuclidean", "Manhattan", "Chebyshev", "Minkowski", "Mahalanobis", "Hamming",
            "Canberra", "BrayCurtis", "Jaccard", "Matching", "Dice", "Kulsinski", "RogersTanimoto",
            "RussellRao", "SokalMichener", "SokalSneath", "Haversine")


def audit_metric(metric: Any, where: str, n_features: int | None) -> None:
    """A built-in ``DistanceMetric``: a real ``p``, and weight vectors or matrices sized to the data."""
    name = type(metric).__name__
    kind = name.removesuffix("64").removesuffix("32").removesuffix("Distance")
    if kind not in _METRICS:
        raise _fail(where, f"is a {name}, not a built-in distance metric")
    p, vec, mat = metric.__getstate__()[:3]
    _finite_number(f"{where}.p", p if not math.isinf(float(p)) else 1.0, positive=True)
    vec, mat = np.asarray(vec), np.asarray(mat)
    if kind == "Mahalanobis":
        size = mat.shape[0] if mat.ndim == 2 else -1
        _shape(f"{where}.mat", mat, (size, size) if n_features is None else (n_features, n_features))
    elif kind == "SEuclidean" or (kind == "Minkowski" and vec.size > 1):
        if n_features is not None:
            _shape(f"{where}.vec", vec, (n_features,))


# -- plain Python objects that hold only numbers and arrays --------------------------------------


def _data_only(value: Any, where: str, depth: int = 0) -> None:
    if isinstance(value, (bool, int, float, str, type(None), np.generic)):
        return
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return
        raise _fail(where, f"holds a {value.dtype} array; only numbers are expected")
    if isinstance(value, (list, tuple)) and depth < 3:
        for i, v in enumerate(value):
            _data_only(v, f"{where}[{i}]", depth + 1)
        return
    raise _fail(where, f"holds a {type(value).__name__}; only numbers and numeric arrays are expected")


def audit_optimizer(optimizer: Any, where: str, n_features: int | None) -> None:
    """MLP's Adam/SGD optimizer (used by ``fit`` only): numbers and numeric arrays."""
    for key, value in vars(optimizer).items():
        _data_only(value, f"{where}.{key}")


def audit_loss(loss: Any, where: str, n_features: int | None) -> None:
    """A ``sklearn._loss`` object: its Cython loss and link are scikit-learn's, its parameters real."""
    closs, link = getattr(loss, "closs", None), getattr(loss, "link", None)
    if type(closs).__module__ != "sklearn._loss._loss":
        raise _fail(f"{where}.closs", f"is a {type(closs).__module__}.{type(closs).__name__}, not a scikit-learn loss")
    if type(link).__module__ != "sklearn._loss.link":
        raise _fail(f"{where}.link", f"is a {type(link).__module__}.{type(link).__name__}, not a scikit-learn link")
    for param in ("power", "quantile", "delta"):
        if hasattr(closs, param):
            _finite_number(f"{where}.closs.{param}", getattr(closs, param))


def audit_function(function: Any, where: str, n_features: int | None) -> None:
    """A scikit-learn function referenced by name (a score function): no state to check."""


# -- the registry: skops type name -> (audit, grounds) ------------------------------------------

Audit = Callable[[Any, str, "int | None"], None]


@dataclass(frozen=True)
class Registered:
    audit: Audit
    grounds: str


_TREE = "audited: node count within capacity, child indices in [-1, node_count) and after their parent (no cycles), split features < n_features, value shape"
_HGB = "audited: child indices in range and after their parent (no cycles), features < n_features, categorical bitsets in range"
_BINARY = "audited: idx_array in [0, n_samples), node ranges inside it, every split node has children, bounds shaped (nodes, features), metric checked"
_METRIC = "audited: a built-in metric, p a positive number, weight vector/matrix sized to the data"
_OPT = "audited: holds only numbers and numeric arrays (used by fit, never by predict)"
_LOSS = "audited: scikit-learn's own Cython loss and link, finite parameters"
_FUNC = "by name: a scikit-learn score function, imported, holding no data"


def _registry() -> dict[str, Registered]:
    reg = {"sklearn.tree._tree.Tree": Registered(audit_tree, _TREE),
           "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": Registered(audit_hgb_predictor, _HGB),
           "sklearn.neighbors._kd_tree.KDTree": Registered(audit_binary_tree, _BINARY),
           "sklearn.neighbors._ball_tree.BallTree": Registered(audit_binary_tree, _BINARY)}
    for kind in _METRICS:
        for bits in ("64", "32"):
            reg[f"sklearn.metrics._dist_metrics.{kind}Distance{bits}"] = Registered(audit_metric, _METRIC)
    for name in ("AdamOptimizer", "SGDOptimizer"):
        reg[f"sklearn.neural_network._stochastic_optimizers.{name}"] = Registered(audit_optimizer, _OPT)
    for name in ("HalfSquaredError", "AbsoluteError", "PinballLoss", "HuberLoss", "HalfPoissonLoss", "HalfGammaLoss",
                 "HalfTweedieLoss", "HalfTweedieLossIdentity", "HalfBinomialLoss", "HalfMultinomialLoss",
                 "ExponentialLoss"):
        reg[f"sklearn._loss.loss.{name}"] = Registered(audit_loss, _LOSS)
    for name in ("f_classif", "f_regression", "chi2", "r_regression", "f_oneway"):
        reg[f"sklearn.feature_selection._univariate_selection.{name}"] = Registered(audit_function, _FUNC)
    for name in ("mutual_info_classif", "mutual_info_regression"):
        reg[f"sklearn.feature_selection._mutual_info.{name}"] = Registered(audit_function, _FUNC)
    return reg


AUDITS: dict[str, Registered] = _registry()


def auditable(types: list[str]) -> tuple[list[str], list[str]]:
    """``types`` split into (those onnxgate audits, the rest)."""
    known = AUDITS.keys() | PAYLOADS.keys() | WRAPPERS.keys()
    return [t for t in types if t in known], [t for t in types if t not in known]


# -- walking a loaded estimator --------------------------------------------------------------------


def _type_name(obj: Any) -> str:
    if callable(obj) and hasattr(obj, "__qualname__") and not isinstance(obj, type) and hasattr(obj, "__module__"):
        return f"{obj.__module__}.{obj.__qualname__}"  # a function: skops names the function itself
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _children(obj: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{where}[{k!r}]", v
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield f"{where}[{i}]", v
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for i, v in enumerate(obj.flat):
                yield f"{where}.flat[{i}]", v
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj):
        for k, v in vars(obj).items():
            yield f"{where}.{k}" if where else k, v


def audit_estimator(model: Any, types: list[str]) -> dict[str, int]:
    """Audit every instance of ``types`` reachable from ``model``; returns instances per type.

    Raises :class:`AuditError` on the first instance that fails, before anything runs on it.
    """
    wanted = {t: AUDITS[t] for t in types if t in AUDITS}
    counts = dict.fromkeys(wanted, 0)
    seen: set[int] = set()
    stack: list[tuple[str, Any, int | None]] = [("", model, None)]
    while stack:
        where, obj, n_features = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        name = _type_name(obj)
        if name in wanted:
            wanted[name].audit(obj, where or "the model", n_features)
            counts[name] += 1
            if wanted[name].audit is audit_binary_tree:  # its metric was audited with it: counted too
                stack.append((f"{where}.dist_metric", obj.__getstate__()[11], n_features))
            continue
        own = getattr(obj, "n_features_in_", None) if hasattr(obj, "get_params") else None
        features = int(own) if isinstance(own, (int, np.integer)) else n_features
        stack.extend((w, child, features) for w, child in _children(obj, where))
    return counts


def record_audits(counts: dict[str, int]) -> None:
    for name, n in counts.items():
        record(name, n, AUDITS[name].grounds)


# -- native booster files ------------------------------------------------------------------------------


def audit_xgboost_json(model: Any, what: str) -> None:
    """An xgboost JSON model: per tree, children in range and after their parent, split
    indices within the declared features, per-node arrays of one length."""
    try:
        learner = model["learner"]
        n_features = int(learner["learner_model_param"]["num_feature"])
        trees = learner["gradient_booster"]["model"]["trees"]
    except (KeyError, TypeError, ValueError):
        return  # not the layout audited here (e.g. gblinear, dart): xgboost's own parser decides
    for t, tree in enumerate(trees):
        where = f"{what} trees[{t}]"
        if not isinstance(tree, dict):
            raise _fail(where, "is not a JSON object")
        left = _int_array(f"{where}.left_children", tree.get("left_children", []))
        right = _int_array(f"{where}.right_children", tree.get("right_children", []))
        split = _int_array(f"{where}.split_indices", tree.get("split_indices", []))
        n = len(left)
        for key in ("right_children", "split_indices", "split_conditions", "parents", "default_left"):
            if key in tree and len(tree[key]) != n:
                raise _fail(f"{where}.{key}", f"has {len(tree[key])} entries; left_children has {n}")
        declared = int(tree.get("tree_param", {}).get("num_nodes", n))
        if declared != n:
            raise _fail(f"{where}.tree_param.num_nodes", f"= {declared}; the tree has {n} nodes")
        internal = left != -1
        _ints_in(f"{where}.left_children", left, -1, n)
        _ints_in(f"{where}.right_children", right, -1, n)
        _ints_in(f"{where}.right_children", right, 0, n, internal)
        _children_after_parent(f"{where}.left_children", left, internal)
        _children_after_parent(f"{where}.right_children", right, internal)
        _ints_in(f"{where}.split_indices", split, 0, max(n_features, 1), internal)


def _int_array(where: str, value: Any) -> np.ndarray:
    """A JSON list of integers, or a refusal naming the field (a string or a float is not an index)."""
    try:
        arr = np.asarray(value)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError
        return arr.astype(np.int64)
    except (ValueError, TypeError, OverflowError):
        raise _fail(where, "is not a list of integers") from None


def audit_lightgbm_text(text: str, what: str) -> None:
    """A lightgbm text model: per tree, child indices in range (leaves are ~index) and
    split features within ``max_feature_idx``; a field that does not parse is refused."""
    try:
        _audit_lightgbm_lines(text, what)
    except (ValueError, OverflowError) as exc:
        raise _fail(what, f"has a field that does not parse ({' '.join(str(exc).split())[:120]})") from None


def _audit_lightgbm_lines(text: str, what: str) -> None:
    max_feature = None
    tree, fields = None, {}
    for line in text.splitlines() + ["Tree=end"]:
        if line.startswith("max_feature_idx="):
            max_feature = int(line.split("=", 1)[1])
        elif line.startswith("Tree="):
            if tree is not None:
                _audit_lightgbm_tree(fields, f"{what} Tree={tree}", max_feature)
            tree, fields = line.split("=", 1)[1], {}
        elif tree is not None and "=" in line:
            key, value = line.split("=", 1)
            fields[key] = value
        if line.startswith("end of trees") and tree is not None:
            _audit_lightgbm_tree(fields, f"{what} Tree={tree}", max_feature)
            tree = None


def _ints(fields: dict[str, str], key: str, where: str) -> np.ndarray:
    try:
        return np.array([int(x) for x in fields.get(key, "").split()], dtype=np.int64)
    except ValueError:
        raise _fail(f"{where} {key}", "holds a value that is not an integer") from None


def _audit_lightgbm_tree(fields: dict[str, str], where: str, max_feature: int | None) -> None:
    try:
        leaves = int(fields.get("num_leaves", "1"))
    except ValueError:
        raise _fail(f"{where} num_leaves", "is not an integer") from None
    if leaves <= 1:
        return
    internal = leaves - 1
    left, right = _ints(fields, "left_child", where), _ints(fields, "right_child", where)
    feature = _ints(fields, "split_feature", where)
    for key, arr in (("left_child", left), ("right_child", right), ("split_feature", feature)):
        if len(arr) != internal:
            raise _fail(f"{where} {key}", f"has {len(arr)} entries; num_leaves={leaves} needs {internal}")
    for key, arr in (("left_child", left), ("right_child", right)):
        _ints_in(f"{where} {key}", arr, -leaves, internal)
        _children_after_parent(f"{where} {key}", arr, arr >= 0)
    if max_feature is not None:
        _ints_in(f"{where} split_feature", feature, 0, max_feature + 1)


# -- boosters inside .skops files -------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """Where a booster type keeps its serialized model in its skops state, and its audit."""

    key: str  # the state key skops stores it under
    audit: Callable[[Any, str], int]  # (payload, where) -> trees audited
    grounds: str


def audit_xgboost_raw(payload: Any, where: str) -> int:
    """``Booster.__getstate__``'s bytes: UBJSON (or JSON) ``{Config, Model}`` or a bare model, trees audited."""
    from onnxgate.checks import ubjson

    if not isinstance(payload, (bytes, bytearray)):
        raise _fail(where, f"is a {type(payload).__name__}, not the bytes of an xgboost model")
    try:
        data = json.loads(payload) if payload[:2] == b'{"' else ubjson.loads(bytes(payload))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(where, f"is not an xgboost model ({' '.join(str(exc).split())[:120]})") from None
    model = data.get("Model", data) if isinstance(data, dict) else None
    trees = _get(model, "learner", "gradient_booster", "model", "trees")
    if not isinstance(trees, list):
        raise _fail(where, "holds no tree booster (only gbtree models are audited; pass --trust-code for others)")
    audit_xgboost_json(model, where)
    return len(trees)


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def audit_lightgbm_payload(payload: Any, where: str) -> int:
    """``Booster.__getstate__``'s model text, trees audited."""
    if not isinstance(payload, str) or not payload.startswith("tree\n"):
        raise _fail(where, "is not a lightgbm model text (it does not start with 'tree')")
    audit_lightgbm_text(payload, where)
    return payload.count("\nTree=")


CBM_MAGIC = b"CBM1"


def audit_catboost_payload(payload: Any, where: str) -> int:
    """CatBoost's ``__model`` bytes: the same ``.cbm`` binary a native file holds, size-bounded."""
    from onnxgate.checks.limits import check_model_size

    if not isinstance(payload, (bytes, bytearray)) or not bytes(payload[:4]) == CBM_MAGIC:
        raise _fail(where, "is not a CatBoost binary model (no CBM1 header)")
    check_model_size(len(payload) * 4, where)
    return 1


_XGB = "audited before parsing: UBJSON read with bounded lengths, per tree children in range and after their parent, split indices < num_feature"
_LGB = "audited before parsing: model text, child indices in range and after their parent, split features <= max_feature_idx"
_CBM = "checked before parsing: a CatBoost CBM1 binary model within the memory limit (what a native .cbm file holds)"
PAYLOADS: dict[str, Payload] = {
    "xgboost.core.Booster": Payload("handle", audit_xgboost_raw, _XGB),
    "lightgbm.basic.Booster": Payload("_handle", audit_lightgbm_payload, _LGB),
    **{f"catboost.core.{name}": Payload("__model", audit_catboost_payload, _CBM)
       for name in ("CatBoost", "CatBoostClassifier", "CatBoostRegressor")},
}
# Types whose state is parameters plus an audited booster (or a plain container of data).
WRAPPERS: dict[str, str] = {
    **{f"xgboost.sklearn.{n}": "parameters and an audited xgboost Booster" for n in ("XGBClassifier", "XGBRegressor")},
    **{f"lightgbm.sklearn.{n}": "parameters and an audited lightgbm Booster" for n in ("LGBMClassifier", "LGBMRegressor")},
    "collections.OrderedDict": "a dict (lightgbm's parameters)",
}


def audit_skops_payloads(path: Any, types: list[str]) -> dict[str, int]:
    """Audit, from the archive, each booster payload of ``types`` in a ``.skops`` file before it is loaded.

    Returns booster instances per type (recorded for the report). A booster whose state lacks its
    payload, or whose payload is not what its type claims, is refused (:class:`AuditError`).
    """
    import zipfile

    wanted = {t: PAYLOADS[t] for t in types if t in PAYLOADS}
    counts = dict.fromkeys(wanted, 0)
    if not wanted:
        return counts
    with zipfile.ZipFile(path) as z:
        schema = json.loads(z.read("schema.json"))
        for name, loader, where, state in _skops_nodes(schema, "the model"):
            if name not in wanted:
                continue
            if loader != "ObjectNode":  # e.g. a ReduceNode would call the constructor with unaudited arguments
                raise _fail(where, f"is a {name} stored as a {loader}; only its object state is audited")
            key = wanted[name].key
            wanted[name].audit(_skops_value(z, state.get(key), f"{where}.{key}"), f"{where}.{key}")
            counts[name] += 1
    for name, n in counts.items():
        record(name, n, wanted[name].grounds)
    for name in (t for t in types if t in WRAPPERS):
        record(name, 0, WRAPPERS[name])
    return counts


def _skops_nodes(node: Any, where: str, depth: int = 0) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(type name, loader, where, state by key) for every typed node of a skops schema; the state is an
    object node's attributes (empty for other nodes)."""
    if depth > 200:
        raise _fail(where, "nests deeper than 200 levels")
    if isinstance(node, list):
        for i, child in enumerate(node):
            yield from _skops_nodes(child, f"{where}[{i}]", depth + 1)
        return
    if not isinstance(node, dict):
        return
    content = node.get("content")
    loader = str(node.get("__loader__"))
    state = content.get("content") if loader == "ObjectNode" and isinstance(content, dict) else None
    if "__class__" in node:
        yield f"{node.get('__module__')}.{node.get('__class__')}", loader, where, state if isinstance(state, dict) else {}
    if isinstance(state, dict):
        for key, child in state.items():
            yield from _skops_nodes(child, f"{where}.{key}", depth + 1)
        return
    for key in ("content", "args", "attrs"):
        child = node.get(key)
        if isinstance(child, dict) and "__class__" not in child:
            for value in child.values():
                yield from _skops_nodes(value, where, depth + 1)
        elif child is not None:
            yield from _skops_nodes(child, where, depth + 1)


def _skops_value(z: Any, node: Any, where: str) -> Any:
    """The bytes or string a skops node stores (a file in the archive, or JSON in the schema)."""
    if not isinstance(node, dict):
        raise _fail(where, "is missing: the object is not what its type claims")
    loader = node.get("__loader__")
    if loader in ("BytesNode", "BytearrayNode") and isinstance(node.get("file"), str):
        try:
            return z.read(node["file"])
        except KeyError:
            raise _fail(where, f"names a member {node['file']!r} the archive lacks") from None
    if loader == "JsonNode" and isinstance(node.get("content"), str):
        try:
            return json.loads(node["content"])
        except ValueError:
            raise _fail(where, "is not valid JSON") from None
    raise _fail(where, f"is a {loader}, not the serialized model its type stores")
