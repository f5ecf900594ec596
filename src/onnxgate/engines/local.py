"""The single-machine engine: ``concurrent.futures`` threads, each driving one isolated worker.

Why not ``ProcessPoolExecutor``: it pickles, and one segfaulting worker marks the whole
pool broken. Here the processes are onnxgate's own workers (:mod:`onnxgate.engines.worker`,
a :class:`~onnxgate.runtime.isolation.WorkerPool`): a dead worker fails its call and is
replaced, and the threads only wait on pipes, so N threads keep N processes busy.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Iterator

from onnxgate.engines.calls import Call, CallFailed
from onnxgate.engines.worker import MODULE, call_in_worker


def run_local(calls: list[Call], jobs: int, timeout: float | None) -> Iterator[tuple[int, dict | CallFailed]]:
    """``(index, result or CallFailed)`` for each call, in the order they finish."""
    from onnxgate.runtime.isolation import WorkerPool

    if not calls:
        return
    pool = WorkerPool(max_workers=min(jobs, len(calls)), module=MODULE)
    ex = ThreadPoolExecutor(max_workers=pool.max_workers, thread_name_prefix="onnxgate-engine")
    try:
        futures: dict[Future, int] = {ex.submit(_one, pool, c, timeout): i for i, c in enumerate(calls)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=futures.__getitem__):
                yield futures[f], f.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)  # an interrupted run: the calls not started are dropped
        pool.close()


def _one(pool: Any, call: Call, timeout: float | None) -> dict | CallFailed:
    try:
        return call_in_worker(pool, call, timeout)
    except CallFailed as exc:
        return exc

