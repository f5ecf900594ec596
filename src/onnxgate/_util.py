"""Small helpers shared by converters, runners and reports."""

from __future__ import annotations

from importlib import metadata
from typing import Any


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """An error message on one line (whitespace collapsed), cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return text[:limit] + ("…" if len(text) > limit else "")


def warning_line(w: Any) -> str:
    """A caught ``warnings.WarningMessage`` on one line: ``Category: message (file.py:line)``."""
    import os

    return f"{w.category.__name__}: {' '.join(str(w.message).split())} ({os.path.basename(w.filename)}:{w.lineno})"


def installed_versions(*packages: str) -> dict[str, str]:
    """{distribution: version} for those of ``packages`` that are installed, for reports."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def json_text(obj: object, *, indent: int | None = 2) -> str:
    """Strict JSON (no bare NaN/Infinity, which many parsers reject): non-finite floats become
    the strings "NaN", "Infinity" and "-Infinity"; numpy scalars and arrays become numbers and lists."""
    import json
    import math

    def clean(o: object) -> object:
        if isinstance(o, float):
            return o if math.isfinite(o) else ("NaN" if o != o else ("Infinity" if o > 0 else "-Infinity"))
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if hasattr(o, "tolist"):  # numpy scalars and arrays
            return clean(o.tolist())
        if isinstance(o, bytes):
            return o.decode("utf-8", "replace")
        if isinstance(o, (str, int, bool)) or o is None:
            return o
        return str(o)

    return json.dumps(clean(obj), indent=indent, allow_nan=False)
