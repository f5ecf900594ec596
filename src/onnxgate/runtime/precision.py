"""Execution providers that compute in reduced precision by default, and the option that stops it.

OpenVINO's CPU device sets ``INFERENCE_PRECISION_HINT`` to bf16 by default on CPUs
that report ``BF16`` in ``OPTIMIZATION_CAPABILITIES`` (avx512_bf16 / AMX), and its
GPU device to f16. float32 models then differ from the original by bf16 rounding
(~3 significant digits). Measured with onnxruntime-ep-openvino 1.8.1 on an AMD EPYC
with avx512_bf16: the EP option ``precision=FP32`` does *not* change the CPU device's
hint (max abs error on a 64x8 MatMul stays 0.057); ``load_config`` with
``{"CPU":{"INFERENCE_PRECISION_HINT":"f32"}}`` does (error 0). The report says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from onnxgate.runtime.providers import device_capabilities, short_name

F32_CPU_CONFIG = '{"CPU":{"INFERENCE_PRECISION_HINT":"f32"}}'


@dataclass
class PrecisionNote:
    """A provider computes in ``computes_in`` rather than the model's float32, and how to stop it."""

    provider: str
    computes_in: str
    because: str
    restore: dict[str, str]  # provider options that restore full precision
    confirmed: str | None = None  # set after a rerun with ``restore`` (what it changed)

    @property
    def restore_flag(self) -> str:
        return " ".join(f"--provider-option '{short_name(self.provider)}:{k}={v}'" for k, v in self.restore.items())

    def message(self) -> str:
        text = (
            f"{short_name(self.provider)} computes float32 models in {self.computes_in} by default here ({self.because}); "
            f"if parity fails on it, restore full precision with {self.restore_flag}"
        )
        return text + (f". {self.confirmed}" if self.confirmed else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "computes_in": self.computes_in,
            "because": self.because,
            "restore": self.restore,
            "restore_flag": self.restore_flag,
            "confirmed": self.confirmed,
        }


def reduced_precision(provider: str, options: dict[str, str] | None) -> PrecisionNote | None:
    """A note when ``provider`` with ``options`` will not compute float32 in float32 on this machine."""
    if provider != "OpenVINOExecutionProvider":
        return None
    caps = device_capabilities(provider)
    options = options or {}
    device = caps.get("ov_device", "")
    abilities = caps.get("OPTIMIZATION_CAPABILITIES", "").split()
    hint = _cpu_hint(options.get("load_config"))
    if device.startswith("CPU") and "BF16" in abilities and hint not in ("f32", "F32"):
        ignored = " (precision=FP32 is set, but this plugin does not apply it to the CPU device)" if options.get("precision", "").upper() == "FP32" else ""
        return PrecisionNote(
            provider,
            "bf16",
            f"OpenVINO CPU INFERENCE_PRECISION_HINT defaults to bf16 where the CPU reports "
            f"OPTIMIZATION_CAPABILITIES={' '.join(abilities)}{ignored}",
            {"load_config": F32_CPU_CONFIG},
        )
    if device.startswith("GPU") and "FP16" in abilities and options.get("precision", "").upper() not in ("FP32", "ACCURACY"):
        return PrecisionNote(provider, "f16", "OpenVINO GPU devices default to FP16 inference", {"precision": "FP32"})
    return None


def _cpu_hint(load_config: str | None) -> str | None:
    if not load_config:
        return None
    try:
        return json.loads(load_config).get("CPU", {}).get("INFERENCE_PRECISION_HINT")
    except (ValueError, AttributeError):
        return None
