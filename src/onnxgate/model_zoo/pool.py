"""Zoo verification on an engine: each model is one call of :func:`verify_job` in an isolated worker.

The engines (onnxgate.engines: local worker processes for ``--jobs N``, or Ray tasks for
``--engine ray``) run the call and stream results back as they finish; a worker that dies or
passes ``--timeout`` fails only its model, reported through ``crashed``. Tasks and results
cross the process boundary as JSON (:func:`~onnxgate.model_zoo.verify.task_to_dict`,
:meth:`~onnxgate.model_zoo.verify.ModelResult.as_dict`), never pickle.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from onnxgate.engines import Call, CallFailed, EngineSettings, run_calls

CRASH_ENV = "ONNXGATE_ZOO_CRASH_MODEL"  # fault injection for the crash test: a worker kills itself on this model
HANG_ENV = "ONNXGATE_ZOO_HANG_MODEL"  # fault injection for the timeout test: a worker hangs on this model
JOB = "onnxgate.model_zoo.pool:verify_job"


def verify_job(payload: dict[str, Any]) -> dict[str, Any]:
    """In a worker: one task (``task_to_dict``) verified, as ``ModelResult.as_dict``.

    A task without a cache directory uses this node's default cache (``$ONNXGATE_CACHE`` or
    ``~/.cache/onnxgate``): content-addressed, one lock per blob, so tasks on one node share
    downloads and never fetch into one directory at once.
    """
    from onnxgate.model_zoo.fetch import default_cache_dir
    from onnxgate.model_zoo.verify import task_from_dict, verify_task

    task = task_from_dict(payload)
    if task.cache is None:
        task = task_from_dict({**payload, "cache": str(default_cache_dir())})
    model = task.entry.get("model")
    if os.environ.get(CRASH_ENV) and model == os.environ[CRASH_ENV]:
        os.kill(os.getpid(), signal.SIGSEGV)
    if os.environ.get(HANG_ENV) and model == os.environ[HANG_ENV]:
        signal.pause()
    return verify_task(task).as_dict(errors=True)  # error summaries cross the pipe


def run_pool(
    tasks: list[Any],
    jobs: int,
    on_result: Callable[[int, Any], None],
    crashed: Callable[[Any, str], Any],
    timeout: float | None = None,
    engine: EngineSettings | None = None,
) -> None:
    """Verify ``tasks`` on ``engine`` (default: ``jobs`` local workers); ``on_result(index, result)`` as each ends."""
    from onnxgate.model_zoo.verify import ModelResult, task_to_dict

    engine = engine or EngineSettings(jobs=jobs, timeout=timeout)
    calls = [Call(JOB, task_to_dict(t), label=t.entry.get("model", "")) for t in tasks]
    for index, got in run_calls(calls, engine):
        if isinstance(got, CallFailed):
            on_result(index, crashed(tasks[index], got.reason))
            continue
        try:
            on_result(index, ModelResult.from_dict(got))
        except (KeyError, TypeError, ValueError) as exc:  # a malformed reply counts as a dead worker
            on_result(index, crashed(tasks[index], f"the worker sent a malformed result: {exc}"))

