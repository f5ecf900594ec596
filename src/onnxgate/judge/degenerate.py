"""References that prove nothing: a comparison against them is "vacuous", never "passed".

A conversion can only be shown wrong on inputs where the original's answer carries
information. When every output of the original is NaN or infinite, equal on every row,
or vanishingly small, any ONNX model that returns the same degenerate thing -- a wrong
one included -- would match. Such a run is reported as vacuous (exit 1) unless the user
accepts it (``--accept-vacuous``). A sample with NaN that turns every output into NaN
is a bad sample (exit 2): the model does not treat NaN as missing.
"""

from __future__ import annotations

import numpy as np

from onnxgate.errors import SampleError

NEAR_ZERO = 1e-6  # every |value| below this, on every row: activations of a dead network


def _output_reason(name: str, value: np.ndarray) -> str | None:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub" and arr.dtype.name != "bfloat16":
        return None  # strings: nothing to say
    x = arr.astype(np.float64)
    if x.size == 0:
        return f"{name!r} is empty"
    finite = np.isfinite(x)
    if not finite.any():
        return f"{name!r} is NaN or infinite everywhere"
    if arr.dtype.kind == "f" and np.abs(x[finite]).max() < NEAR_ZERO:
        return f"{name!r} is below {NEAR_ZERO:g} everywhere"
    if x.ndim >= 1 and x.shape[0] > 1:
        rows = x.reshape(x.shape[0], -1)
        spread = np.nanmax(rows, axis=0) - np.nanmin(rows, axis=0)
        scale = max(float(np.nanmax(np.abs(rows))), 1.0)
        if np.all(np.nan_to_num(spread, nan=0.0) <= 1e-7 * scale):
            return f"{name!r} is the same on all {x.shape[0]} rows"
    return None


def degenerate_reason(outputs: dict[str, np.ndarray]) -> str | None:
    """Why the original's outputs cannot tell a right conversion from a wrong one; None when they can.

    Every output must be degenerate: one informative output is enough for a real check.
    """
    reasons = [_output_reason(name, value) for name, value in outputs.items()]
    if not reasons or any(r is None for r in reasons):
        return None
    return (
        "the original's outputs cannot tell a right conversion from a wrong one: " + "; ".join(reasons)
        + " (pass a sample whose rows differ, or recalibrate a randomly initialised network)"
    )


def threshold_reason(outputs: dict[str, np.ndarray], on_threshold: dict[str, tuple[int, int, str]], most: float) -> str | None:
    """Why a sample that mostly sits on thresholds proves nothing; None when it can.

    ``on_threshold``: outputs -> (rows of a stepwise output, or values of a smooth one, that jumped
    under a one-ulp move of their own inputs, of how many, unit) (judge/calibration.py). Those are
    allowed their jump, so an error smaller than it goes unseen there; when more than ``most`` of
    them are such on every output that could tell (the others degenerate), a pass would speak for
    a minority of the sample.
    """
    blind = {n: c for n, c in on_threshold.items() if c[1] and c[0] > most * c[1]}
    if not blind or any(n not in blind and _output_reason(n, v) is None for n, v in outputs.items()):
        return None
    said = "; ".join(f"{n!r} on {on} of {total} {unit}" for n, (on, total, unit) in blind.items())
    return (
        f"most of the sample sits on a threshold (an input within one float32 ulp of a split or a repeated "
        f"quantile), where the original itself jumps: {said}; an error smaller than those jumps goes unseen there "
        "(pass rows the model was not fitted on: training rows are split points)"
    )


def nan_sample_error(feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """A sample with NaN on which every float output is NaN: refused as a bad sample (exit 2)."""
    has_nan = [n for n, v in feeds.items() if np.asarray(v).dtype.kind == "f" and np.isnan(np.asarray(v)).any()]
    floats = [np.asarray(v) for v in outputs.values() if np.asarray(v).dtype.kind == "f"]
    if has_nan and floats and all(np.isnan(v).all() for v in floats):
        raise SampleError(
            f"the sample holds NaN (input {has_nan[0]!r}) and the original returns NaN for every value: "
            "this model does not treat NaN as missing",
            "pass a sample without NaN (impute it first), so the comparison can show anything",
        )


_ONNX_TO_NUMPY = {"float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16",
                  "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8",
                  "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "bool": "bool", "string": "object"}


def declared_mismatches(declared: list[dict], outputs: dict[str, np.ndarray]) -> list[str]:
    """Outputs whose actual shape or dtype contradicts what the graph declares (what gets published)."""
    problems = []
    for d in declared:
        got = outputs.get(d["name"])
        if got is None or d.get("shape") is None:
            continue
        got = np.asarray(got)
        shape = d["shape"]
        if len(shape) != got.ndim or any(isinstance(s, int) and s > 0 and s != g for s, g in zip(shape, got.shape)):
            problems.append(f"output {d['name']!r} is declared {shape} but ONNX Runtime returns {list(got.shape)}")
        want = _ONNX_TO_NUMPY.get(str(d.get("type")))
        have = "object" if got.dtype.kind in "OUS" else got.dtype.name
        if want is not None and want != have:
            problems.append(f"output {d['name']!r} is declared {d['type']} but ONNX Runtime returns {have}")
    return problems
