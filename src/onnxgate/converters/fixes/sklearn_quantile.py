"""QuantileTransformer as one vectorised graph, in place of skl2onnx's converter.

skl2onnx builds its QuantileTransformer graph as a binary search through its algebra API
(``OnnxGather``/``OnnxWhere`` nested once per halving step); composing the nested expression
takes time that grows about 3x per step: 0.5 s at n_quantiles=10, 13 s at 100 and ~45 s on a
default QuantileTransformer fitted on iris (150 quantiles, 8 steps), for what is a
per-feature piecewise-linear interpolation. It also refuses ``output_distribution='normal'``.

:func:`custom_converters` hands skl2onnx onnxgate's converter for the duration of one
``convert_sklearn`` call (its ``custom_conversion_functions`` argument: skl2onnx's registry is
never touched), for the QuantileTransformer itself and for one inside a Pipeline,
ColumnTransformer or FeatureUnion. The graph computes what ``QuantileTransformer._transform_col``
computes, in float64 whatever the input dtype (Cast in, Cast out), so the float32 graph rounds
only its output:

1. per feature, how many quantiles are <= x and how many are < x (:func:`_count_below`: a
   two-level lookup, blocks of sqrt(n) quantiles, so memory is rows x features x 2 sqrt(n));
2. ``np.interp`` forwards (from the last quantile <= x) and backwards (from the first quantile
   >= x), averaged, which is scikit-learn's answer for repeated quantiles, with np.interp's
   own arithmetic (slope * (x - x_j) + y_j), so the float64 graph matches it bit for bit;
3. the bounds (uniform: x equal to the first or last quantile; normal: within
   ``BOUNDS_THRESHOLD`` of them) and, for ``normal``, the normal quantile function (Wichura's
   AS241, relative error < 1e-15: :func:`_normal_ppf`) clipped where scikit-learn clips it;
4. NaN stays NaN.

The node count does not depend on n_quantiles; only the initializers grow with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from onnxgate.converters.fixes import Applied, Fix, enabled
from onnxgate.converters.fixes.sklearn import walk

QUANTILE_GRAPH = Fix(
    "sklearn.quantile_transformer_graph",
    "skl2onnx's QuantileTransformer converter composes a binary search through its algebra API, one nested "
    "level per halving step: ~45 s for a default QuantileTransformer on iris (13 s at n_quantiles=100), and "
    "it refuses output_distribution='normal'",
    "converted with onnxgate's vectorised float64 graph (bucket counts, np.interp both ways averaged, bounds, "
    "AS241 normal quantile); constant node count",
    "skl2onnx/operator_converters/quantile_transformer.py",
)

MIN_OPSET = 13  # ReduceSum and Unsqueeze take their axes as inputs

# Wichura (1988), Algorithm AS241 PPND16: the normal quantile as a ratio of degree-7 polynomials in
# three regions of p. Columns: central (|p - 0.5| <= 0.425, argument 0.180625 - q^2), intermediate
# (r = sqrt(-log(min(p, 1 - p))) <= 5, argument r - 1.6) and tail (argument r - 5); rows by power.
_PPF_NUMERATOR = np.array([
    [3.3871328727963666080e0, 1.42343711074968357734e0, 6.65790464350110377720e0],
    [1.3314166789178437745e2, 4.63033784615654529590e0, 5.46378491116411436990e0],
    [1.9715909503065514427e3, 5.76949722146069140550e0, 1.78482653991729133580e0],
    [1.3731693765509461125e4, 3.64784832476320460504e0, 2.96560571828504891230e-1],
    [4.5921953931549871457e4, 1.27045825245236838258e0, 2.65321895265761230930e-2],
    [6.7265770927008700853e4, 2.41780725177450611770e-1, 1.24266094738807843860e-3],
    [3.3430575583588128105e4, 2.27238449892691845833e-2, 2.71155556874348757815e-5],
    [2.5090809287301226727e3, 7.74545014278341407640e-4, 2.01033439929228813265e-7],
])
_PPF_DENOMINATOR = np.array([
    [1.0, 1.0, 1.0],
    [4.2313330701600911252e1, 2.05319162663775882187e0, 5.99832206555887937690e-1],
    [6.8718700749205790830e2, 1.67638483018380384940e0, 1.36929880922735805310e-1],
    [5.3941960214247511077e3, 6.89767334985100004550e-1, 1.48753612908506148525e-2],
    [2.1213794301586595867e4, 1.48103976427480074590e-1, 7.86869131145613259100e-4],
    [3.9307895800092710610e4, 1.51986665636164571966e-2, 1.84631831751005468180e-5],
    [2.8729085735721942674e4, 5.47593808499534494600e-4, 1.42151175831644588870e-7],
    [5.2264952788528545610e3, 1.05075007164441684324e-9, 2.04426310338993978564e-15],
])
_PPF_SHIFTS = np.array([0.0, 1.6, 5.0])  # the intermediate and tail arguments are r - 1.6 and r - 5
_PPF_TINY = 1e-300  # min(p, 1 - p) kept above 0 for the log; any p within 1e-7 of 0 or 1 is clipped to scikit-learn's bound


# -- registration, per conversion -------------------------------------------------------------


def custom_converters(model: Any, opset: int, applied: Applied) -> tuple[dict[type, Callable], dict[type, Callable]]:
    """``convert_sklearn``'s ``custom_conversion_functions`` and ``custom_shape_calculators`` for the
    QuantileTransformers in ``model`` (empty where there are none, the fix is off, or the opset is below
    :data:`MIN_OPSET`, where skl2onnx's converter runs)."""
    from sklearn.preprocessing import QuantileTransformer

    found = [m for m in walk(model) if type(m) is QuantileTransformer]
    if not found or not enabled(QUANTILE_GRAPH) or opset < MIN_OPSET or not all(_supported(m) for m in found):
        return {}, {}
    applied.add(QUANTILE_GRAPH, ", ".join(f"n_quantiles={m.quantiles_.shape[0]} {m.output_distribution}" for m in found))
    return {QuantileTransformer: convert_quantile_transformer}, {QuantileTransformer: _output_shape}


def _supported(m: Any) -> bool:
    q = getattr(m, "quantiles_", None)
    return (isinstance(q, np.ndarray) and q.ndim == 2 and q.shape[0] >= 2
            and m.output_distribution in ("uniform", "normal"))


def _output_shape(operator: Any) -> None:
    """(N, features), float64 for a float64 input and float32 otherwise (an int64 input too: the values are floats)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    source = operator.inputs[0].type
    kind = DoubleTensorType if isinstance(source, DoubleTensorType) else FloatTensorType
    operator.outputs[0].type = kind([operator.inputs[0].get_first_dimension(), operator.raw_operator.quantiles_.shape[1]])


# -- the graph ------------------------------------------------------------------------------------


@dataclass
class _Builder:
    """Adds named initializers (each value once) and nodes to skl2onnx's container, names made unique in its scope."""

    scope: Any
    container: Any
    consts: dict[tuple[str, str, bytes], str] = field(default_factory=dict)

    def const(self, seed: str, value: Any) -> str:
        from onnx import helper

        arr = np.asarray(value)
        key = (seed, arr.dtype.str, repr(arr.shape).encode() + arr.tobytes())
        if key not in self.consts:
            name = self.scope.get_unique_variable_name(f"qt_{seed}")
            self.container.add_initializer(name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape), arr.ravel().tolist())
            self.consts[key] = name
        return self.consts[key]

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        output = out or self.scope.get_unique_variable_name(f"qt_{op_type.lower()}")
        self.container.add_node(op_type, list(inputs), [output], name=self.scope.get_unique_operator_name(f"qt_{op_type}"), **attrs)
        return output


def convert_quantile_transformer(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx converter: ``operator.raw_operator.transform`` as described in the module docstring."""
    from onnx import TensorProto

    qt = operator.raw_operator
    g = _Builder(scope, container)
    quantiles = np.asarray(qt.quantiles_, dtype=np.float64)
    references = np.asarray(qt.references_, dtype=np.float64)
    x = g.op("Cast", operator.inputs[0].full_name, to=TensorProto.DOUBLE)
    y = _interpolate(g, x, quantiles, references)
    if qt.output_distribution == "normal":
        y = _normal(g, x, y, quantiles)
    else:
        y = _uniform_bounds(g, x, y, quantiles)
    y = g.op("Where", g.op("IsNaN", x), x, y)
    out = operator.outputs[0]
    g.op("Cast", y, out=out.full_name, to=out.type.to_onnx_type().tensor_type.elem_type)


@dataclass(frozen=True)
class _Tables:
    """The fitted arrays as initializers: the quantiles once, per feature padded with NaN to whole lookup
    blocks (:func:`_count_below`) and stored one block per row, np.interp's slopes per segment, the references."""

    blocks: str  # (F * blocks, block) float64: feature f's block k is row f * blocks + k
    quantiles: str  # the same values flat: feature f's quantile i is at stride[f] + i
    stride: str  # (F,) int64
    block_stride: str  # (F,) int64: feature f's first block row
    slopes: str  # (F * (n - 1),)
    slope_stride: str  # (F,) int64
    references: str  # (n,)
    block: int
    per_feature: int  # blocks per feature

    @classmethod
    def of(cls, g: _Builder, quantiles: np.ndarray, references: np.ndarray) -> "_Tables":
        n, features = quantiles.shape
        block = int(np.ceil(np.sqrt(n)))
        per_feature = -(-n // block)
        padded = np.full((features, per_feature * block), np.nan)
        padded[:, :n] = quantiles.T
        with np.errstate(divide="ignore", invalid="ignore"):  # np.interp's slopes; those of repeats are never used
            slopes = np.diff(references)[None, :] / np.diff(quantiles.T, axis=1)
        slopes = np.where(np.isfinite(slopes), slopes, 0.0)
        table = g.const("quantiles", padded.reshape(features * per_feature, block))
        offsets = np.arange(features, dtype=np.int64)
        return cls(table, g.op("Reshape", table, g.const("flat", np.array([-1], dtype=np.int64))),
                   g.const("stride", offsets * padded.shape[1]), g.const("block_stride", offsets * per_feature),
                   g.const("slopes", slopes.ravel()), g.const("slope_stride", offsets * (n - 1)),
                   g.const("references", references), block, per_feature)

    def block_starts(self, features: int) -> np.ndarray:
        """(F, blocks): the flat position of each block's first quantile."""
        return (np.arange(features, dtype=np.int64)[:, None] * self.per_feature + np.arange(self.per_feature)) * self.block


def _index(g: _Builder, value: int) -> str:
    return g.const("index", np.array(value, dtype=np.int64))


def _interpolate(g: _Builder, x: str, quantiles: np.ndarray, references: np.ndarray) -> str:
    """0.5 * (np.interp(x, q, r) - np.interp(-x, -q[::-1], -r[::-1])) per feature, as scikit-learn computes it."""
    n = quantiles.shape[0]
    t = _Tables.of(g, quantiles, references)
    first, last = g.const("first_reference", references[0]), g.const("last_reference", references[-1])

    def quantile(i: str) -> str:
        return g.op("Gather", t.quantiles, g.op("Add", i, t.stride), axis=0)

    def slope(i: str) -> str:
        return g.op("Gather", t.slopes, g.op("Add", i, t.slope_stride), axis=0)

    def reference(i: str) -> str:
        return g.op("Gather", t.references, i, axis=0)

    def clip(i: str, low: int, high: int) -> str:
        return g.op("Clip", i, _index(g, low), _index(g, high))

    def outside(count: str, value: str) -> str:  # x before every quantile or after every one: np.interp's end values
        before = g.op("Where", g.op("Equal", count, _index(g, 0)), first, value)
        return g.op("Where", g.op("Equal", count, _index(g, n)), last, before)

    at_or_below = _count_below(g, x, t, "GreaterOrEqual", quantiles.shape[1])  # quantiles <= x
    below = _count_below(g, x, t, "Greater", quantiles.shape[1])  # quantiles < x
    lo = clip(g.op("Sub", at_or_below, _index(g, 1)), 0, n - 2)  # x in [q[lo], q[lo + 1])
    forward = g.op("Add", g.op("Mul", slope(lo), g.op("Sub", x, quantile(lo))), reference(lo))
    hi = clip(below, 1, n - 1)  # x in (q[hi - 1], q[hi]]
    back = g.op("Sub", hi, _index(g, 1))
    backward = g.op("Sub", reference(hi), g.op("Mul", slope(back), g.op("Sub", quantile(hi), x)))
    total = g.op("Add", outside(at_or_below, forward), outside(below, backward))
    return g.op("Mul", total, g.const("half", np.array(0.5)))


def _count_below(g: _Builder, x: str, t: _Tables, compare: str, features: int) -> str:
    """Per row and feature, how many quantiles q satisfy ``compare(x, q)`` (x >= q or x > q): int64 (N, F).

    A feature's quantiles are sorted; in blocks of b = ceil(sqrt(n)), the blocks whose first quantile
    passes are counted first, then the quantiles of the last such block (one row of the block table),
    so memory is rows x features x 2b. The padding is NaN, which passes no comparison."""
    from onnx import TensorProto

    last = g.const("last_axis", np.array([-1], dtype=np.int64))
    x3 = g.op("Unsqueeze", x, last)

    def passed(thresholds: str) -> str:  # summed as float32 (exact to 2^24), ONNX Runtime's fastest reduction
        hits = g.op("Cast", g.op(compare, x3, thresholds), to=TensorProto.FLOAT)
        return g.op("Cast", g.op("ReduceSum", hits, last, keepdims=0), to=TensorProto.INT64)

    heads = passed(g.op("Gather", t.quantiles, g.const("block_starts", t.block_starts(features)), axis=0))  # (N, F)
    block = g.op("Max", g.op("Sub", heads, _index(g, 1)), _index(g, 0))  # the last block whose first quantile passes
    within = passed(g.op("Gather", t.blocks, g.op("Add", block, t.block_stride), axis=0))  # (N, F, b) -> (N, F)
    return g.op("Add", g.op("Mul", block, _index(g, t.block)), within)


def _uniform_bounds(g: _Builder, x: str, y: str, quantiles: np.ndarray) -> str:
    """x equal to the last quantile gives 1, to the first 0 (which wins when they are equal), as in scikit-learn."""
    y = g.op("Where", g.op("Equal", x, g.const("upper_x", quantiles[-1])), g.const("one_f", np.array(1.0)), y)
    return g.op("Where", g.op("Equal", x, g.const("lower_x", quantiles[0])), g.const("zero_f", np.array(0.0)), y)


def _normal(g: _Builder, x: str, y: str, quantiles: np.ndarray) -> str:
    """scikit-learn's bounds for the normal output (x within BOUNDS_THRESHOLD of the first or last quantile),
    then the normal quantile of y clipped as scikit-learn clips it."""
    from scipy import stats
    from sklearn.preprocessing._data import BOUNDS_THRESHOLD

    eps = g.const("bounds_threshold", np.array(BOUNDS_THRESHOLD))
    upper = g.op("Greater", g.op("Add", x, eps), g.const("upper_x", quantiles[-1]))
    lower = g.op("Less", g.op("Sub", x, eps), g.const("lower_x", quantiles[0]))
    y = g.op("Where", upper, g.const("one_f", np.array(1.0)), y)
    y = g.op("Where", lower, g.const("zero_f", np.array(0.0)), y)
    edge = BOUNDS_THRESHOLD - np.spacing(1)
    z = _normal_ppf(g, y)
    z = g.op("Max", z, g.const("clip_min", np.array(stats.norm.ppf(edge))))
    return g.op("Min", z, g.const("clip_max", np.array(stats.norm.ppf(1 - edge))))


def _normal_ppf(g: _Builder, p: str) -> str:
    """The standard normal quantile of p in [0, 1] (float64), AS241: every region evaluated, one selected."""
    f = lambda seed, v: g.const(seed, np.asarray(v, dtype=np.float64))  # noqa: E731
    q = g.op("Sub", p, f("half", 0.5))
    tail = g.op("Max", g.op("Min", p, g.op("Sub", f("one_f", 1.0), p)), f("tiny", _PPF_TINY))
    r = g.op("Sqrt", g.op("Neg", g.op("Log", tail)))
    central = g.op("Sub", f("central_offset", 0.180625), g.op("Mul", q, q))
    last = g.const("last_axis", np.array([-1], dtype=np.int64))
    args = g.op("Concat", g.op("Unsqueeze", central, last), *(g.op("Unsqueeze", r, last),) * 2, axis=-1)
    args = g.op("Sub", args, f("shifts", _PPF_SHIFTS))  # (N, F, 3): one argument per region
    ratio = g.op("Div", _horner(g, args, _PPF_NUMERATOR), _horner(g, args, _PPF_DENOMINATOR))

    def region(i: int) -> str:
        return g.op("Gather", ratio, g.const("region", np.array(i, dtype=np.int64)), axis=-1)

    far = g.op("Where", g.op("LessOrEqual", r, f("tail_from", 5.0)), region(1), region(2))
    far = g.op("Where", g.op("Less", q, f("zero_f", 0.0)), g.op("Neg", far), far)
    near = g.op("LessOrEqual", g.op("Abs", q), f("central_to", 0.425))
    return g.op("Where", near, g.op("Mul", q, region(0)), far)


def _horner(g: _Builder, x: str, coefficients: np.ndarray) -> str:
    """sum_k coefficients[k] * x^k by Horner's rule (as np.polyval), column j of ``coefficients`` on x[..., j]."""
    acc = g.const("coefficient", coefficients[-1])
    for row in coefficients[-2::-1]:
        acc = g.op("Add", g.op("Mul", acc, x), g.const("coefficient", row))
    return acc
