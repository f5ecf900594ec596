"""Small helpers shared by converters, runners and reports."""

from __future__ import annotations

from importlib import metadata


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """An error message on one line (whitespace collapsed), cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return text[:limit] + ("…" if len(text) > limit else "")


def installed_versions(*packages: str) -> dict[str, str]:
    """{distribution: version} for those of ``packages`` that are installed, for reports."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
