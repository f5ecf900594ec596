"""The engine worker: a long-lived process that applies named onnxgate functions to JSON payloads.

It speaks the isolation protocol (:func:`onnxgate.runtime.isolation.serve`: length-prefixed
JSON frames, never pickle) and dies with its parent. The parent side,
:func:`call_in_worker`, turns a crash or a timeout into :class:`CallFailed` and the pool
replaces the worker on its next use.
"""

from __future__ import annotations

import importlib
import json
from typing import Any, Callable

from onnxgate.engines.calls import Call, CallFailed

MODULE = "onnxgate.engines.worker"
STARTUP_S = 120.0  # a fresh worker that is not ready by then (imports hung) fails its call


def resolve(function: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``"onnxgate.pkg.module:name"`` as the function; only onnxgate's own functions are served."""
    module, _, name = function.partition(":")
    if not module.startswith("onnxgate.") or not name:
        raise ValueError(f"not an onnxgate function: {function!r}")
    return getattr(importlib.import_module(module), name)


def _setup() -> None:
    """Import what every call needs before the first one, so ``--timeout`` measures the model, not start-up."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401


def _handle(header: dict[str, Any], frames: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    if header.get("op") == "ready":
        return {"ok": True}, []
    try:
        result = resolve(header["function"])(json.loads(frames[0]))
    except Exception as exc:  # a bug in the function: the call's failure, the worker lives on
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}, []
    return {"ok": True}, [json.dumps(result).encode()]


def call_in_worker(pool: Any, call: Call, timeout: float | None) -> dict[str, Any]:
    """Run ``call`` in a worker of ``pool`` (runtime.isolation.WorkerPool); its JSON result."""
    from onnxgate.runtime.isolation import WorkerDied

    with pool.worker() as w:
        try:
            if not getattr(w, "ready", False):  # a fresh worker (marked once it answers): start-up is not the call's time
                w.request({"op": "ready"}, [], STARTUP_S)
                w.ready = True
            reply, frames = w.request({"function": call.function}, [json.dumps(call.payload).encode()], timeout)
        except WorkerDied as exc:
            if exc.kind == "timeout" and not getattr(w, "ready", False):
                raise CallFailed(f"its worker did not start within {STARTUP_S:g}s; it was killed", "timeout") from None
            if exc.kind == "timeout":
                raise CallFailed(f"it took longer than --timeout {timeout:g}s; the worker was killed", "timeout") from None
            raise CallFailed(f"the worker process running it {exc.how}", exc.kind) from None
    if not reply.get("ok"):
        raise CallFailed(f"the worker failed: {reply.get('error')}", "error")
    try:
        return json.loads(frames[0])
    except (IndexError, ValueError) as exc:
        raise CallFailed(f"the worker sent a malformed reply: {exc}", "crash") from None


def main() -> None:
    from onnxgate.runtime.isolation import serve

    serve(_handle, _setup)


if __name__ == "__main__":
    main()
