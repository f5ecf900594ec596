"""Tolerance policy: defaults by output dtype, global and per-output overrides.

The defaults live here as data, never inside the comparison code. A float output
passes where ``|onnx - reference| <= atol + rtol * |reference|`` element-wise.

Where the defaults come from:

* float64 -- ``torch.testing.assert_close`` uses rtol=1e-7, atol=1e-7 for float64.
* float32 -- Polygraphy's default is rtol=atol=1e-5 and the ONNX backend test runner
  uses rtol=1e-3, atol=1e-7. A converted model computes in float32 what the framework
  often computed in float64 (scikit-learn), so we take Polygraphy's atol with a
  10x looser rtol (1e-4); still 10x tighter than the backend runner.
* float16 -- ``torch.testing``: rtol=1e-3, atol=1e-5; the ONNX backend runner's
  rtol=1e-3. We use atol=1e-3 because fp16 outputs near zero have ~6e-8 spacing only
  down to 6e-5 and accumulate error in absolute terms.
* bfloat16 -- ``torch.testing``: rtol=1.6e-2, atol=1e-5; we keep rtol and use
  atol=1e-2 for the same reason as float16 (8 mantissa bits).
* integers, bool, strings -- exact (the ONNX backend runner compares these exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# dtype name -> (atol, rtol, source of the numbers)
DEFAULTS: dict[str, tuple[float, float, str]] = {
    "float64": (1e-7, 1e-7, "torch.testing float64 defaults"),
    "float32": (1e-5, 1e-4, "Polygraphy atol, 10x its rtol for float32-vs-float64 references"),
    "float16": (1e-3, 1e-3, "torch.testing / ONNX backend rtol for float16"),
    "bfloat16": (1e-2, 1.6e-2, "torch.testing rtol for bfloat16"),
}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    rule: str  # where the numbers came from, for the report

    def as_dict(self) -> dict[str, object]:
        return {"atol": self.atol, "rtol": self.rtol, "rule": self.rule}


@dataclass(frozen=True)
class TolerancePolicy:
    """Resolves the tolerance for one output: per-output override, then global, then dtype default."""

    atol: float | None = None
    rtol: float | None = None
    per_output: dict[str, tuple[float, float]] = field(default_factory=dict)

    def for_output(self, name: str, dtype: np.dtype) -> Tolerance:
        if name in self.per_output:
            atol, rtol = self.per_output[name]
            return Tolerance(atol, rtol, f"per-output override for {name!r}")
        key = dtype_name(dtype)
        d_atol, d_rtol, source = DEFAULTS.get(key, DEFAULTS["float32"])
        if self.atol is None and self.rtol is None:
            return Tolerance(d_atol, d_rtol, f"default for {key} ({source})")
        return Tolerance(
            d_atol if self.atol is None else self.atol,
            d_rtol if self.rtol is None else self.rtol,
            "user --atol/--rtol" + (f" with {key} default for the other" if None in (self.atol, self.rtol) else ""),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "per_output": {k: {"atol": a, "rtol": r} for k, (a, r) in self.per_output.items()},
            "defaults": {k: {"atol": a, "rtol": r, "source": s} for k, (a, r, s) in DEFAULTS.items()},
        }


def dtype_name(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    return "bfloat16" if name in ("bfloat16", "V2") else name
