"""Dependency drift: the packages a published model was validated with against those installed now.

An upgrade of scikit-learn, xgboost, lightgbm, torch, tf2onnx or ONNX Runtime can change
what a model computes (xgboost's base_score, lightgbm, HistGradientBoosting) although no
file of it changed. The published ``report.json`` records every package involved
(``versions``: the converter's ``model_versions(model)``, onnx, onnxruntime, numpy, python, onnxgate);
:func:`dependency_drift` compares them with this interpreter's. The gate selects a drifted
model (``onnxgate.toml``: ``drift = false`` turns it off) and :func:`replay_published` runs
the published ``model.onnx`` on its own published test data under the installed ONNX
Runtime, beside the usual full check of the model.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class VersionChange:
    package: str
    recorded: str
    installed: str

    def __str__(self) -> str:
        return f"{self.package} {self.recorded} → {self.installed}"


def installed_version(package: str) -> str:
    """This interpreter's version of ``package`` (``python`` is the interpreter itself)."""
    if package == "python":
        return platform.python_version()
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED
    except ValueError:  # not a distribution name at all
        return NOT_INSTALLED


def recorded_versions(entry: dict[str, Any], registry: Path) -> dict[str, str]:
    """The versions in the published ``report.json`` (else the manifest's copy in ``metadata.onnxgate``)."""
    meta = entry.get("metadata", {}).get("onnxgate") or {}
    report = registry / Path(entry["model_path"]).parent / "report.json"
    try:
        versions = json.loads(report.read_text(encoding="utf-8")).get("versions")
    except (OSError, ValueError, AttributeError):
        versions = None
    if not isinstance(versions, dict):
        versions = meta.get("versions")
    if not isinstance(versions, dict):
        return {}
    return {str(k): str(v) for k, v in versions.items() if isinstance(v, (str, int, float))}


def dependency_drift(entry: dict[str, Any], registry: Path) -> list[VersionChange]:
    """Every recorded package whose installed version differs, sorted by name."""
    changes = []
    for package, recorded in sorted(recorded_versions(entry, registry).items()):
        if recorded == NOT_INSTALLED:
            continue
        now = installed_version(package)
        if now != recorded:
            changes.append(VersionChange(package, recorded, now))
    return changes


def drift_reason(changes: list[VersionChange], version: str) -> str:
    """``dependencies changed since published 1.0.0: xgboost 2.1.0 → 3.2.0, ...``"""
    return f"dependencies changed since published {version}: " + ", ".join(str(c) for c in changes)


def replay_published(entry: dict[str, Any], registry: Path, *, isolation: Any = None) -> Any:
    """The published ``model.onnx`` on its own published test data with the installed ONNX Runtime.

    The tolerances are the published ones (``metadata.tolerances``, as ``zoo verify`` reads them).
    Returns the :class:`~onnxgate.judge.report.Report` of :func:`onnxgate.pipelines.replay.validate_evidence`.
    """
    from onnxgate.errors import ModelFileError
    from onnxgate.judge.tolerances import TolerancePolicy
    from onnxgate.pipelines.replay import validate_evidence

    model = (registry / entry["model_path"]).resolve()
    if not model.is_relative_to(registry.resolve()):
        raise ModelFileError(f"model_path {entry['model_path']!r} leaves the registry", "fix the registry's manifest")
    directory = model.parent
    tolerances = entry.get("metadata", {}).get("tolerances") or {}
    policy = TolerancePolicy(atol=tolerances.get("atol"), rtol=tolerances.get("rtol"))
    return validate_evidence(
        model, directory, policy=policy, provider_names=["CPUExecutionProvider"],
        isolation=isolation,
    )
