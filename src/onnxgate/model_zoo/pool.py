"""Run verification tasks in N worker processes; a worker that dies fails only its model.

The pipes carry JSON (``send_bytes``/``recv_bytes``), never pickle, like the ORT and framework
workers: a worker whose memory a hostile model corrupted cannot make the parent run code.

``concurrent.futures.ProcessPoolExecutor`` marks the whole pool broken when one worker
segfaults, so this keeps its own small pool: one pipe per worker, the parent waits on
the pipes and the process sentinels together, and a dead worker's model is reported
as an error with its exit signal while a fresh worker takes its place.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable

CRASH_ENV = "ONNXGATE_ZOO_CRASH_MODEL"  # fault injection for the crash test: a worker kills itself on this model
HANG_ENV = "ONNXGATE_ZOO_HANG_MODEL"  # fault injection for the timeout test: a worker hangs on this model


def _worker(conn: Connection) -> None:
    from onnxgate.model_zoo.verify import task_from_dict, verify_task

    while True:
        try:
            item = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if item is None:
            return
        index, task = item[0], task_from_dict(item[1])
        if os.environ.get(CRASH_ENV) and task.entry.get("model") == os.environ[CRASH_ENV]:
            os.kill(os.getpid(), signal.SIGSEGV)
        if os.environ.get(HANG_ENV) and task.entry.get("model") == os.environ[HANG_ENV]:
            signal.pause()
        conn.send_bytes(json.dumps([index, verify_task(task).as_dict(errors=True)]).encode())


@dataclass
class _Slot:
    process: Any
    conn: Connection
    busy: tuple[int, Any] | None = None
    since: float = 0.0  # when the current task was sent


def _start(ctx: Any) -> _Slot:
    parent, child = ctx.Pipe(duplex=True)
    p = ctx.Process(target=_worker, args=(child,), daemon=True)
    p.start()
    child.close()
    return _Slot(p, parent)


def run_pool(
    tasks: list[Any],
    jobs: int,
    on_result: Callable[[int, Any], None],
    crashed: Callable[[Any, str], Any],
    timeout: float | None = None,
) -> None:
    """Run ``verify_task`` over ``tasks`` in ``jobs`` processes; ``on_result(index, result)`` as each ends.

    A task still running after ``timeout`` seconds has its worker killed and is reported
    through ``crashed``; a fresh worker takes the next task.
    """
    ctx = mp.get_context("spawn")  # no fork: the parent may hold ORT threads
    pending: Iterable[tuple[int, Any]] = iter(list(enumerate(tasks)))
    slots = [_start(ctx) for _ in range(min(jobs, len(tasks)))]
    try:
        for slot in slots:
            _feed(slot, pending)
        while any(s.busy for s in slots):
            busy = [s for s in slots if s.busy]
            left = None if timeout is None else max(0.0, min(s.since for s in busy) + timeout - time.monotonic())
            ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=left)
            for i, slot in enumerate(list(slots)):
                if not slot.busy:
                    continue
                if timeout is not None and slot.conn not in ready and time.monotonic() - slot.since > timeout:
                    slot.process.kill()
                    slot.process.join(5)
                    index, task = slot.busy
                    on_result(index, crashed(task, f"verifying it took longer than --timeout {timeout:g}s; the worker was killed"))
                    slot.conn.close()
                    slots[i] = _start(ctx)
                    _feed(slots[i], pending)
                    continue
                if slot.conn in ready or slot.process.sentinel in ready:
                    got = None
                    try:
                        if slot.conn.poll():
                            got = _result(slot.conn.recv_bytes())
                    except (EOFError, OSError, ValueError, KeyError, TypeError):
                        got = None
                    if got is not None:
                        slot.busy = None
                        on_result(*got)
                        _feed(slot, pending)
                        continue
                    if slot.process.is_alive():
                        continue
                    index, task = slot.busy
                    code = slot.process.exitcode
                    why = f"signal {-code} ({signal.Signals(-code).name})" if code and code < 0 else f"exit code {code}"
                    on_result(index, crashed(task, f"the worker process verifying it died: {why}"))
                    slot.conn.close()
                    slots[i] = _start(ctx)
                    _feed(slots[i], pending)
    finally:
        for slot in slots:
            try:
                slot.conn.send_bytes(b"null")
            except (OSError, BrokenPipeError):
                pass
        for slot in slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()


def _feed(slot: _Slot, pending: Any) -> None:
    item = next(pending, None)
    slot.busy = item
    slot.since = time.monotonic()
    if item is not None:
        from onnxgate.model_zoo.verify import task_to_dict

        slot.conn.send_bytes(json.dumps([item[0], task_to_dict(item[1])]).encode())


def _result(raw: bytes) -> tuple[int, Any]:
    """A worker's reply: JSON only (a malformed one is treated like a dead worker)."""
    from onnxgate.model_zoo.verify import ModelResult

    index, result = json.loads(raw)
    return int(index), ModelResult.from_dict(result)
