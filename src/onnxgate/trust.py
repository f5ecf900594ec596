"""The one place that decides what may run code.

Loading a model can run code that the file's author wrote: unpickling runs
``__reduce__``, a Keras ``Lambda`` layer holds Python bytecode, a
``module:callable`` source imports a module, a custom-op library is native code
loaded into ONNX Runtime. Each is refused unless the user opted in, with
``--trust-pickle`` / ``--trust-code`` on the command line or the environment
variable ``ONNXGATE_TRUST`` (e.g. ``ONNXGATE_TRUST=pickle,code``) for CI jobs that
build their own models. Loaders never test the flags themselves: they call the
``require_*`` functions here, so every refusal says why and how to allow it, the
same way. The :class:`Trust` record travels into the
report, so a reader can see what was trusted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from onnxgate.errors import OnnxgateError, UntrustedSourceError

TRUST_ENV = "ONNXGATE_TRUST"
ENV_WORDS = {"pickle", "code", "all", "none"}

@dataclass(frozen=True)
class Trust:
    """What the user allows a loader to do that can run code."""

    pickle: bool = False  # unpickle .pkl/.joblib/torch.load of whole modules
    code: bool = False  # import module:callable factories, Keras Lambda layers
    types: tuple[str, ...] = ()  # extra type names a skops file may contain

    def as_dict(self, audited: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """The record for the report; ``audited``: the types trusted after an audit of their
        contents (checks/audits.py), each with its instance count and grounds."""
        record: dict[str, Any] = {"pickle": self.pickle, "code": self.code, "types": list(self.types)}
        if audited is not None:
            record["audited"] = [dict(a) for a in audited]
        return record


__all__ = [
    "TRUST_ENV",
    "Trust",
    "from_flags",
    "from_env",
    "require_pickle",
    "require_code",
    "require_lambda_layers",
    "require_factory",
    "require_custom_ops",
    "require_types",
]


def from_env(environ: Mapping[str, str] | None = None) -> set[str]:
    """The words in ``ONNXGATE_TRUST`` (comma separated); an unknown word is a user error."""
    raw = (environ if environ is not None else os.environ).get(TRUST_ENV, "")
    words = {w.strip().lower() for w in raw.split(",") if w.strip()}
    unknown = sorted(words - ENV_WORDS)
    if unknown:
        raise OnnxgateError(
            f"{TRUST_ENV}={raw!r} has unknown word(s) {unknown}",
            f"use a comma-separated list of {sorted(ENV_WORDS)}, e.g. {TRUST_ENV}=pickle,code",
        )
    if "all" in words:
        words |= {"pickle", "code"}
    return words


def from_flags(
    *,
    pickle: bool | None = None,
    code: bool | None = None,
    types: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Trust:
    """The trust the user granted: command-line flags, or'ed with ``ONNXGATE_TRUST``."""
    env = from_env(environ)
    return Trust(
        pickle=bool(pickle) or "pickle" in env,
        code=bool(code) or "code" in env,
        types=tuple(types or ()),
    )


def _how(flag: str, word: str) -> str:
    return f"pass {flag} (or set {TRUST_ENV}={word}) if you trust this file"


def require_pickle(trust: Trust, what: str, *, alternative: str | None = None) -> None:
    """Refuse to unpickle ``what`` unless pickles are trusted."""
    if trust.pickle:
        return
    hint = _how("--trust-pickle", "pickle")
    raise UntrustedSourceError(
        f"refusing to unpickle {what}: loading a pickle runs arbitrary code",
        f"{alternative}, or {hint}" if alternative else hint,
    )


def require_code(trust: Trust, what: str, *, why: str = "it runs code from the file") -> None:
    """Refuse to load ``what`` if doing so runs code the user has not trusted."""
    if trust.code:
        return
    raise UntrustedSourceError(f"refusing to load {what}: {why}", _how("--trust-code", "code"))


def require_lambda_layers(trust: Trust, what: str, layers: Iterable[str]) -> None:
    """Keras ``Lambda`` layers deserialize Python bytecode: refuse them unless code is trusted."""
    names = list(layers)
    if names and not trust.code:
        raise UntrustedSourceError(
            f"refusing to load {what}: it has Lambda layer(s) {names[:5]}, whose Python code would run",
            _how("--trust-code", "code"),
        )


def require_factory(trust: Trust, ref: str) -> None:
    """A ``module:callable`` source imports and calls user code."""
    if not trust.code:
        raise UntrustedSourceError(
            f"refusing to import {ref!r}: a module:callable source runs its code",
            "pass --trust-code (or set ONNXGATE_TRUST=code) if you trust this module",
        )


def require_types(trust: Trust, what: str, untrusted: Iterable[str]) -> list[str]:
    """Types a skops file holds that skops does not trust by default: each must be named, or code trusted."""
    types = list(untrusted)
    refused = [t for t in types if t not in trust.types]
    if refused and not trust.code:
        raise UntrustedSourceError(
            f"{what} contains types skops does not trust by default: {refused}",
            "check them, then pass --trust-type " + " --trust-type ".join(refused) + " (or --trust-code for all)",
        )
    return types


def require_custom_ops(trust: Trust, libraries: Iterable[str | Path]) -> list[str]:
    """Custom-op libraries are native code loaded into ONNX Runtime: trusted code only, and they must exist."""
    paths = [str(p) for p in libraries]
    if not paths:
        return []
    if not trust.code:
        raise UntrustedSourceError(
            f"refusing to load custom-op librar{'y' if len(paths) == 1 else 'ies'} {paths}: native code runs inside ONNX Runtime",
            _how("--trust-code", "code"),
        )
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise OnnxgateError(f"custom-op library {missing[0]!r} does not exist", "check the path of the .so/.dll/.dylib")
    return [str(Path(p).resolve()) for p in paths]
