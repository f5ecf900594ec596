"""Where per-model work runs: a local pool of isolated workers, or a Ray cluster.

Both engines run the same unit of work, a :class:`~onnxgate.engines.calls.Call` (a named
onnxgate function and its JSON payload), inside onnxgate's worker isolation
(:mod:`onnxgate.engines.worker`, served by :func:`onnxgate.runtime.isolation.serve`), and
stream results back as they finish:

* ``local`` (default, ``--jobs N``): ``concurrent.futures.ThreadPoolExecutor`` with N
  threads, each driving one long-lived worker process from a shared
  :class:`~onnxgate.runtime.isolation.WorkerPool`;
* ``ray`` (``--engine ray [--ray-address ADDR]``): one Ray task per model with its own
  resource request; inside the task the same worker runs the call.

A worker that crashes or passes the timeout fails its call alone, in either engine.
"""

from __future__ import annotations

from typing import Iterator

from onnxgate.engines.calls import Call, CallFailed, EngineError, EngineSettings


def check_engine(settings: EngineSettings) -> None:
    """Raise :class:`EngineError` (exit 2) now, before any model runs, when the engine cannot start."""
    if settings.engine == "ray":
        from onnxgate.engines.ray_engine import check_ray

        check_ray(settings)


def run_calls(calls: list[Call], settings: EngineSettings) -> Iterator[tuple[int, dict | CallFailed]]:
    """``(index, JSON result or CallFailed)`` for every call, in the order they finish, on ``settings.engine``."""
    if settings.engine == "ray":
        from onnxgate.engines.ray_engine import run_calls as run_on_ray

        return run_on_ray(calls, settings)
    from onnxgate.engines.local import run_local

    return run_local(calls, settings.jobs, settings.timeout)


__all__ = ["Call", "CallFailed", "EngineError", "EngineSettings", "check_engine", "run_calls"]
