"""Inputs without a sample: synthesised from a signature, seeded, dtype-correct.

A converter that knows its model's signature (scikit-learn's ``n_features_in_``, a
torch module's embedding size) builds :class:`InputSpec` records and calls
:func:`synthesize_inputs`; with only an ONNX file, :func:`specs_from_onnx` reads the
graph's declared inputs. Values follow the dtype and the input's role:

* floats -- standard normal (the scale most models are trained at), or uniform in
  ``--input-range NAME=LO:HI``; inputs whose spec says ``kind="probability"`` are
  uniform in [0, 1];
* integers -- uniform in ``[low, high)`` (``high`` exclusive, like ``range``): the
  spec's bounds (e.g. ``high`` = the embedding size for token ids), ``--input-range``,
  or [0, 10); ``uint8`` defaults to [0, 256) (pixels);
* names that say what an input is: ``*mask*`` -> ones / True (nothing masked), ``*type_ids``
  -> zeros, ``position_ids`` -> 0..L-1 along the last axis;
* task-aware kinds a converter asks for (the hf converter does): ``kind="padded-mask"`` ->
  an attention mask with real padding (row 0 full, row i shorter by i/B of the length, so a
  batch holds padded and unpadded rows and stays so when a sweep shortens it),
  ``kind="segments"`` -> token type ids, 0 over the first half of each row's tokens and 1
  after (0 on padding), ``kind="ids"`` with ``high`` = the vocabulary size;
* bool -- fair coin; strings -- drawn from the spec's ``choices`` or ``"a".."e"``.

Dynamic dimensions resolve from ``--dim NAME=SIZE`` (``NAME`` is a symbolic dim such
as ``batch``, or ``INPUT:AXIS``), else the first axis gets :data:`DEFAULT_BATCH` and
any other :data:`DEFAULT_DIM`. The same symbolic name gets the same size everywhere.

``edge=True`` makes the batch include edge rows: the first row all zeros and the
last row at large magnitude (floats at +-1e3 x the range, integers at the range's
ends). :func:`edge_cases` builds whole extra cases (zeros, large) for any feeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from onnxgate.errors import SampleError

DEFAULT_SEED = 0
DEFAULT_BATCH = 8  # sweeps then run 8, 1 and 5 rows (pipelines.run.batch_cases)
DEFAULT_DIM = 32  # non-batch dynamic axes: sequences, image sides (>= 32 survives 5 stride-2 stages)
DEFAULT_INT_RANGE = (0, 10)
LARGE = 1e3  # edge rows: floats at +-LARGE x max(1, |range|)

# ONNX TensorProto elem_type -> numpy dtype (bfloat16 has no numpy dtype; float32 is fed)
_ONNX_TO_NUMPY = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    8: np.object_, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}


@dataclass(frozen=True)
class InputSpec:
    """One model input as far as synthesis needs it.

    ``shape`` holds ints (fixed), strings (symbolic, shared by name) or ``None``
    (dynamic, unnamed). ``low``/``high`` bound the values (``high`` exclusive for
    integers); ``kind`` is a hint: "probability", "ids", "mask" or None.
    """

    name: str
    dtype: Any
    shape: tuple[int | str | None, ...]
    low: float | None = None
    high: float | None = None
    kind: str | None = None
    choices: tuple[Any, ...] | None = None  # strings or categories to draw from

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


def specs_from_onnx(model: Any) -> list[InputSpec]:
    """The graph's real inputs (initializers excluded) as specs."""
    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        t = vi.type
        if not t.HasField("tensor_type"):
            raise SampleError(
                f"input {vi.name!r} is a {t.WhichOneof('value')}, not a tensor; onnxgate cannot synthesise it",
                "pass --sample with real inputs",
            )
        tt = t.tensor_type
        dtype = _ONNX_TO_NUMPY.get(tt.elem_type, np.float32)
        dims: list[int | str | None] = []
        for d in tt.shape.dim if tt.HasField("shape") else []:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(None)
        specs.append(InputSpec(vi.name, dtype, tuple(dims)))
    return specs


def parse_assignments(items: Iterable[str] | None, what: str, flag: str) -> dict[str, str]:
    """``["A=1", "B=2"]`` -> ``{"A": "1", "B": "2"}`` with a one-line error on malformed items."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = str(item).rpartition("=")
        if not sep or not name or not value:
            raise SampleError(f"{flag} {item!r} is not NAME=VALUE", f"write it as {flag} {what}")
        out[name] = value
    return out


def parse_dims(items: Iterable[str] | Mapping[str, int] | None) -> dict[str, int]:
    """``--dim batch=4 --dim input_ids:1=7`` -> ``{"batch": 4, "input_ids:1": 7}``."""
    if isinstance(items, Mapping):
        return {str(k): int(v) for k, v in items.items()}
    out = {}
    for name, value in parse_assignments(items, "NAME=SIZE (e.g. batch=4)", "--dim").items():
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            raise SampleError(f"--dim {name}={value}: the size must be a positive integer", "e.g. --dim batch=4")
        out[name] = size
    return out


def parse_ranges(items: Iterable[str] | Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    """``--input-range input_ids=0:30522`` -> ``{"input_ids": (0.0, 30522.0)}``; LO < HI."""
    if isinstance(items, Mapping):
        return {str(k): (float(v[0]), float(v[1])) for k, v in items.items()}
    out = {}
    for name, value in parse_assignments(items, "NAME=LO:HI (e.g. x=0:1)", "--input-range").items():
        lo_s, sep, hi_s = value.partition(":")
        try:
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            sep = ""
        if not sep or not lo < hi:
            raise SampleError(f"--input-range {name}={value}: expected LO:HI with LO < HI", "e.g. --input-range x=0:1")
        out[name] = (lo, hi)
    return out


def resolve_shape(spec: InputSpec, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
    """Concrete shape: fixed dims as declared, dynamic ones from ``dims`` or the defaults."""
    dims = dims or {}
    shape = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif f"{spec.name}:{axis}" in dims:
            shape.append(int(dims[f"{spec.name}:{axis}"]))
        elif isinstance(d, str) and d in dims:
            shape.append(int(dims[d]))
        elif axis == 0 and "batch" in dims and not isinstance(d, str):
            shape.append(int(dims["batch"]))
        else:
            shape.append(DEFAULT_BATCH if axis == 0 else DEFAULT_DIM)
    return tuple(shape)


def synthesize_inputs(
    specs: Sequence[InputSpec],
    *,
    seed: int | None = None,
    dims: Mapping[str, int] | Iterable[str] | None = None,
    ranges: Mapping[str, Sequence[float]] | Iterable[str] | None = None,
    edge: bool = False,
) -> dict[str, np.ndarray]:
    """Seeded inputs for ``specs``, in spec order. Same seed and specs, same bytes."""
    seed = DEFAULT_SEED if seed is None else int(seed)
    dims = parse_dims(dims)
    ranges = parse_ranges(ranges)
    unknown = sorted(set(ranges) - {s.name for s in specs})
    if unknown:
        raise SampleError(
            f"--input-range names {unknown}, which are not inputs of the model; inputs: {[s.name for s in specs]}",
            "use the ONNX input names (see 'onnxgate inspect MODEL.onnx')",
        )
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = resolve_shape(spec, dims)
        feeds[spec.name] = _values(spec, shape, rng, ranges.get(spec.name))
        if edge and len(shape) and shape[0] >= 2:
            feeds[spec.name] = _with_edge_rows(spec, feeds[spec.name], ranges.get(spec.name))
    return feeds


def _bounds(spec: InputSpec, user: tuple[float, float] | None) -> tuple[float, float] | None:
    if user is not None:
        return user
    if spec.low is not None or spec.high is not None:
        dt = spec.np_dtype
        lo = spec.low if spec.low is not None else (0.0 if dt.kind in "iub" else -1.0)
        hi = spec.high if spec.high is not None else (lo + 10 if dt.kind in "iu" else lo + 1.0)
        return float(lo), float(hi)
    if spec.kind == "probability":
        return 0.0, 1.0
    return None


def _role(spec: InputSpec) -> str | None:
    if spec.kind:
        return spec.kind
    n = spec.name.lower()
    if "mask" in n:
        return "mask"
    if n.endswith("type_ids"):
        return "zeros"
    if n == "position_ids" or n.endswith("position_ids"):
        return "positions"
    return None


STRUCTURAL = ("mask", "padded-mask", "segments", "zeros", "positions")  # roles whose values are structure, not data


def padded_lengths(rows: int, length: int) -> np.ndarray:
    """Tokens per row: row 0 is full, row i is shorter by ``i * length // rows`` (at least 1)."""
    return np.maximum(1, length - (np.arange(rows) * length) // max(rows, 1))


def padding_mask(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """1 on each row's tokens, 0 on its right padding (``padded_lengths``)."""
    rows, length = (shape[0], shape[-1]) if len(shape) >= 2 else (1, shape[-1] if shape else 1)
    mask = np.arange(length)[None, :] < padded_lengths(rows, length)[:, None]
    return np.broadcast_to(mask.reshape((rows,) + (1,) * max(len(shape) - 2, 0) + (length,)), shape).astype(dtype)


def segment_ids(shape: tuple[int, ...], dtype: Any, types: int) -> np.ndarray:
    """Token type ids: 0 on the first half of each row's tokens, then 1 (0 where padded, or if one type)."""
    mask = padding_mask(shape, np.int64)
    if types < 2:
        return np.zeros(shape, dtype=dtype)
    position = np.cumsum(mask, axis=-1)
    second = position > np.maximum(1, mask.sum(axis=-1, keepdims=True) // 2)
    return (second & (mask > 0)).astype(dtype)


def _values(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, user: tuple[float, float] | None) -> np.ndarray:
    dt = spec.np_dtype
    role = _role(spec)
    bounds = _bounds(spec, user)
    if user is None and role == "padded-mask" and len(shape):
        return padding_mask(shape, dt)
    if user is None and role == "segments" and len(shape):
        return segment_ids(shape, dt, int(spec.high or 1))
    if user is None and role == "mask":
        return np.ones(shape, dtype=dt) if dt.kind != "O" else np.full(shape, "1", dtype=object)
    if user is None and role == "zeros" and dt.kind in "iuf":
        return np.zeros(shape, dtype=dt)
    if user is None and role == "positions" and dt.kind in "iu" and len(shape):
        return np.broadcast_to(np.arange(shape[-1], dtype=dt), shape).copy()
    if dt.kind == "f":
        if bounds is None:
            return rng.standard_normal(shape).astype(dt)
        return rng.uniform(bounds[0], bounds[1], shape).astype(dt)
    if dt.kind in "iu":
        lo, hi = bounds or ((0, 256) if dt == np.uint8 else DEFAULT_INT_RANGE)
        info = np.iinfo(dt)
        lo, hi = max(int(np.ceil(lo)), info.min), min(int(np.ceil(hi)), int(info.max) + 1)
        return rng.integers(lo, hi, shape, dtype=np.int64).astype(dt)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind in "OUS":
        choices = list(spec.choices or ("a", "b", "c", "d", "e"))
        idx = rng.integers(0, len(choices), shape)
        return np.asarray(choices, dtype=object)[idx]
    raise SampleError(f"cannot synthesise input {spec.name!r} of dtype {dt}", "pass --sample with real inputs")


def _large(spec: InputSpec, arr: np.ndarray, user: tuple[float, float] | None) -> np.ndarray:
    """The same shape at large magnitude, alternating sign (floats) or at the range ends (ints)."""
    dt = arr.dtype
    bounds = _bounds(spec, user)
    if dt.kind == "f":
        scale = LARGE * max(1.0, *(abs(b) for b in bounds)) if bounds else LARGE
        if bounds and bounds[0] >= 0:  # a non-negative range stays non-negative
            return np.full(arr.shape, bounds[1] if spec.kind == "probability" else scale, dtype=dt)
        signs = np.where(np.arange(arr.size) % 2 == 0, 1.0, -1.0).reshape(arr.shape)
        return (signs * scale).astype(dt)
    if dt.kind in "iu":
        lo, hi = bounds or ((0, 256) if dt == np.uint8 else DEFAULT_INT_RANGE)
        ends = np.where(np.arange(arr.size) % 2 == 0, int(np.ceil(hi)) - 1, int(np.ceil(lo))).reshape(arr.shape)
        return ends.astype(dt)
    if dt.kind == "b":
        return np.ones(arr.shape, dtype=bool)
    return arr.copy()


def _with_edge_rows(spec: InputSpec, arr: np.ndarray, user: tuple[float, float] | None) -> np.ndarray:
    if _role(spec) in STRUCTURAL and user is None:
        return arr
    out = arr.copy()
    if out.dtype.kind in "fiub":
        out[0] = 0
    out[-1] = _large(spec, arr[-1:], user)[0]
    return out


EDGE_PREFIX = "edge:"  # the names of the --edge cases


def edge_cases(
    feeds: Mapping[str, np.ndarray],
    specs: Sequence[InputSpec] | None = None,
    ranges: Mapping[str, Sequence[float]] | Iterable[str] | None = None,
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Extra cases at the feeds' shapes: ``edge:zeros`` and ``edge:large``.

    Inputs that play a structural role (masks, type/position ids) and string inputs
    keep their values; the batch-of-1 edge case is part of every shape sweep already.
    """
    ranges = parse_ranges(ranges)
    by_name = {s.name: s for s in specs or []}
    zeros: dict[str, np.ndarray] = {}
    large: dict[str, np.ndarray] = {}
    for name, value in feeds.items():
        arr = np.asarray(value)
        spec = by_name.get(name) or InputSpec(name, arr.dtype, tuple(arr.shape))
        structural = _role(spec) in STRUCTURAL and name not in ranges
        if structural or arr.dtype.kind not in "fiub":
            zeros[name], large[name] = arr, arr
            continue
        low = ranges.get(name, (spec.low, spec.high))[0]
        zero = 0 if low is None or low <= 0 else low
        zeros[name] = np.full(arr.shape, zero, dtype=arr.dtype)
        large[name] = _large(spec, arr, ranges.get(name))
    return [(f"{EDGE_PREFIX}zeros", zeros), (f"{EDGE_PREFIX}large", large)]


def synthesize_from_options(specs: Sequence[InputSpec], options: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """:func:`synthesize_inputs` with the pipeline's options (``seed``, ``dims``, ``input_ranges``, ``edge``).

    Converters call this from ``synthesize(model, *, options)`` so every framework reads
    the same CLI flags the same way.
    """
    options = options or {}
    return synthesize_inputs(
        specs,
        seed=options.get("seed"),
        dims=options.get("dims"),
        ranges=options.get("input_ranges"),
        edge=bool(options.get("edge")),
    )
