"""The Ray engine: one Ray task per model, each with its own resource request, results as they finish.

``ray.init(address=...)`` joins an existing cluster (``--ray-address``); without an address
a local runtime starts with ``jobs`` CPUs and is shut down afterwards. A Ray runtime that
is already initialised in this process (a notebook, a test fixture) is used as it is.

Inside a task, an isolated call (:func:`run_calls`) runs in the Ray worker's own onnxgate
worker (:mod:`onnxgate.engines.worker`), kept alive across the tasks that Ray worker runs:
a model that crashes ONNX Runtime kills that worker, not the Ray worker, and fails alone.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Callable, Iterator

from onnxgate.engines.calls import Call, CallFailed, EngineError, EngineSettings, forwarded_env

INSTALL_HINT = "pip install 'onnxgate[ray]'"
_pools: dict[tuple, Any] = {}  # in a Ray worker process: its onnxgate worker, per forwarded environment


def import_ray() -> Any:
    """``ray``, or a user error naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise EngineError(f"--engine ray needs the Python package 'ray', which cannot be imported ({exc})",
                          INSTALL_HINT) from None
    return ray


def check_ray(settings: EngineSettings, connect_timeout: float = 5.0) -> None:
    """Fail fast, before any model runs: Ray importable, and the cluster's HOST:PORT reachable
    (``ray.init`` itself retries an unreachable address for minutes)."""
    import_ray()
    address = settings.ray_address
    if not address or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise EngineError(f"--ray-address {address!r} is not HOST:PORT", "pass the head node's address, e.g. --ray-address 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=connect_timeout).close()
    except OSError as exc:
        raise EngineError(f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}",
                          "pass the head node's address as 'ray status' shows it, or drop --ray-address for a local runtime") from None


@contextlib.contextmanager
def ray_runtime(settings: EngineSettings) -> Iterator[Any]:
    """The ``ray`` module with a runtime up: joined, started locally, or the one already running."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if settings.ray_address:
        kwargs = {"address": settings.ray_address, "log_to_driver": False, "configure_logging": False}
    else:
        kwargs["num_cpus"] = settings.jobs
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"join the Ray cluster at {settings.ray_address!r}" if settings.ray_address else "start a local Ray runtime"
        raise EngineError(f"cannot {where}: {' '.join(str(exc).split())[:300]}",
                          "check --ray-address (the head node's HOST:PORT, see 'ray status'), or drop it") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def map_tasks(
    fn: Callable[..., Any], items: list[tuple[Any, ...]], resources: list[dict[str, float]], settings: EngineSettings,
    *, max_retries: int = 0,
) -> Iterator[tuple[int, Any]]:
    """``fn(*item)`` as one Ray task per item (``resources[i]`` its request); ``(index, value)`` as each
    finishes, where a task Ray could not complete yields a :class:`CallFailed` as its value."""
    if not items:
        return
    with ray_runtime(settings) as ray:
        remote = ray.remote(fn)
        totals = ray.cluster_resources()
        refs = {}
        for i, (item, res) in enumerate(zip(items, resources)):
            missing = _unsatisfiable(res, totals)
            if missing:  # Ray would keep an infeasible task pending for ever
                yield i, CallFailed(f"the Ray cluster has no node with {missing} (it has {_describe(totals)})", "error")
                continue
            refs[remote.options(max_retries=max_retries, **res).remote(*item)] = i
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    yield refs[ref], _value(ray, ref)
        finally:
            for ref in pending:  # an interrupted run: do not leave tasks on the cluster
                ray.cancel(ref, force=True)


_RAY_KEYS = {"num_cpus": "CPU", "num_gpus": "GPU"}


def _unsatisfiable(request: dict[str, float], totals: dict[str, float]) -> str | None:
    """What of ``request`` the whole cluster lacks (a GPU task on a CPU-only cluster), or None.

    Checked against the cluster's totals, not one node's: a cluster that cannot hold the task
    even in sum certainly cannot run it; an autoscaler's future nodes are not counted."""
    for key, amount in request.items():
        name = _RAY_KEYS.get(key, key)
        if amount > totals.get(name, 0):
            return f"{amount:g} {name}"
    return None


def _describe(totals: dict[str, float]) -> str:
    return ", ".join(f"{totals.get(k, 0):g} {k}" for k in ("CPU", "GPU"))


def _value(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        text = " ".join(str(exc).split())
        return CallFailed(f"the Ray task running it failed: {type(exc).__name__}: {text[:300]}", "crash")


def run_calls(calls: list[Call], settings: EngineSettings) -> Iterator[tuple[int, dict | CallFailed]]:
    """Each call as one Ray task that runs it in an isolated onnxgate worker on its node."""
    env = forwarded_env()
    items = [(c, env, settings.timeout) for c in calls]
    # Ray may retry a task whose node or Ray worker died: the calls are idempotent (content-addressed
    # downloads, read-only checks); a crash inside onnxgate's worker is a result, not a retry.
    yield from map_tasks(_isolated_task, items, [c.resources for c in calls], settings, max_retries=2)


def _isolated_task(call: Call, env: dict[str, str], timeout: float | None) -> dict | CallFailed:
    """In a Ray worker: the call in this process's onnxgate worker (started once, replaced after a crash)."""
    from onnxgate.engines.worker import MODULE, call_in_worker
    from onnxgate.runtime.isolation import WorkerPool

    key = tuple(sorted(env.items()))
    pool = _pools.get(key)
    if pool is None:
        for old in _pools.values():
            old.close()
        _pools.clear()
        pool = _pools[key] = WorkerPool(max_workers=1, env=env, module=MODULE)
    try:
        return call_in_worker(pool, call, timeout)
    except CallFailed as exc:
        return exc
