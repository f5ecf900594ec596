"""Run ONNX models in a worker process, so a crash or a hang fails one model, not the tool.

ONNX Runtime is native code; a malformed model, a buggy kernel or a custom-op
library can segfault, abort, exhaust memory or never return. onnxgate runs models
in a small pool of long-lived worker processes (``python -m
onnxgate.runtime.isolation``). The parent talks to a worker over its
stdin/stdout with length-prefixed frames: JSON headers and ``.npy``-format arrays
(never pickle, so a worker whose memory a model corrupted cannot make the parent run
code). When a worker dies, the parent reports how ("ONNX Runtime crashed with
SIGSEGV while loading 'model.onnx'") as a :class:`~onnxgate.runtime.runner.RunError`,
and a fresh worker replaces it on the next request. ``timeout`` bounds each step
(loading, each run); a worker past it is killed and the step reported as a hang.

:func:`create_session` is the drop-in for :func:`onnxgate.runtime.runner.create_session`:
it returns an object with the same ``run(feeds)``, ``providers_used``,
``input_types()`` and ``output_names()``. ``IsolationPolicy(in_process=True)``
gives the plain in-process session (``--in-process``).

Workers keep up to a few ORT sessions by model hash, so validating one model at
several batch sizes sends the model once; the pool grows to as many workers as
threads use it at once (``zoo verify --jobs N``) and they are reused across models.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from onnxgate.runtime.runner import RunError, failure_kind

FAULT_ENV = "ONNXGATE_TEST_WORKER_FAULT"  # test-only fault injection: "MODE:STAGE[:SHA_PREFIX]"
_HEADER = struct.Struct("<Q")
_MAX_FRAME = 1 << 40
_SESSIONS_PER_WORKER = 4


@dataclass(frozen=True)
class IsolationPolicy:
    """How models run: in a worker process (default) or in this process; ``timeout`` per step in seconds."""

    in_process: bool = False
    timeout: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"in_process": self.in_process, "timeout": self.timeout}


# -- framing (both sides) ---------------------------------------------------------------


def _pack_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], list[bytes]]:
    """Arrays as ``.npy`` bytes; object (string) arrays travel as unicode and are restored."""
    names, objects, frames = [], [], []
    extended: dict[str, str] = {}  # ml_dtypes (bfloat16, float8...): sent as same-width unsigned ints
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            arr = arr.astype(str)
            objects.append(name)
        elif type(arr.dtype).__module__.startswith("ml_dtypes") or arr.dtype.__class__.__module__ == "ml_dtypes":
            extended[name] = arr.dtype.name
            arr = arr.view(f"u{arr.dtype.itemsize}")
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
        names.append(name)
        frames.append(buf.getvalue())
    return {"names": names, "objects": objects, "extended": extended}, frames


def _unpack_arrays(meta: dict[str, Any], frames: list[bytes]) -> dict[str, np.ndarray]:
    out = {}
    objects = set(meta.get("objects", ()))
    extended = meta.get("extended") or {}
    for name, raw in zip(meta["names"], frames):
        arr = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
        if name in extended:
            import ml_dtypes

            arr = arr.view(getattr(ml_dtypes, extended[name]))
        out[name] = arr.astype(object) if name in objects else arr
    return out


def _encode(header: dict[str, Any], frames: list[bytes]) -> bytes:
    head = json.dumps(dict(header, frames=len(frames))).encode()
    parts = [_HEADER.pack(len(head)), head]
    for f in frames:
        parts += [_HEADER.pack(len(f)), f]
    return b"".join(parts)


def open_session(
    model: bytes | str,
    *,
    provider: str = "CPUExecutionProvider",
    optimization: str = "all",
    provider_options: dict[str, str] | None = None,
    threads: int | None = None,
    custom_op_libraries: list[str] | None = None,
    record_placement: bool = False,
    ep_plugins: dict[str, str] | None = None,
    optimized_path: str | None = None,
) -> Any:
    """An in-process session: :func:`runner.create_session`, plus custom-op libraries when given.

    Callers check the libraries with :func:`onnxgate.trust.require_custom_ops` first.
    """
    from onnxgate.runtime import runner

    if not custom_op_libraries:
        return runner.create_session(
            model, provider=provider, optimization=optimization, provider_options=provider_options, threads=threads,
            record_placement=record_placement, ep_plugins=ep_plugins, config=_worker_config(),
            optimized_path=optimized_path,
        )
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, runner.OPT_LEVELS[optimization])
    so.log_severity_level = 4  # errors come back as exceptions; ORT printing them too garbles the output
    for key, value in _worker_config().items():
        so.add_session_config_entry(key, value)
    if threads:
        so.intra_op_num_threads = threads
    try:
        for lib in custom_op_libraries:
            so.register_custom_ops_library(lib)
        session = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RunError(f"ONNX Runtime could not load the model: {' '.join(str(exc).split())[:400]}",
                       failure_kind(exc, "load")) from exc
    return runner.Session(session, "CPUExecutionProvider", optimization)


# In the worker, ORT's idle threads must not spin: the parent waits on the same cores,
# and a spinning pool between two requests costs more than the request (results are the same).
_WORKER_CONFIG = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
_in_worker = False


def _worker_config() -> dict[str, str]:
    """Session config entries for sessions opened in the worker (none in this process)."""
    return dict(_WORKER_CONFIG) if _in_worker else {}

# -- the worker (child side) ------------------------------------------------------------


def _read_exact_blocking(stream: Any, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_message_blocking(stream: Any) -> tuple[dict[str, Any], list[bytes]]:
    (n,) = _HEADER.unpack(_read_exact_blocking(stream, _HEADER.size))
    header = json.loads(_read_exact_blocking(stream, n))
    frames = []
    for _ in range(int(header.get("frames", 0))):
        (m,) = _HEADER.unpack(_read_exact_blocking(stream, _HEADER.size))
        frames.append(_read_exact_blocking(stream, m))
    return header, frames


def _fault(stage: str, key: str) -> None:
    """Test-only: crash or hang on purpose, so the tests exercise real process deaths."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    mode, _, rest = spec.partition(":")
    want_stage, _, prefix = rest.partition(":")
    if want_stage != stage or not key.startswith(prefix):
        return
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif mode == "null":  # a real invalid read, as a native bug would do
        import ctypes

        ctypes.string_at(0)
    elif mode == "abort":
        os.abort()
    elif mode == "hang":
        while True:
            time.sleep(1)
    elif mode == "exit":
        os._exit(3)
    elif mode == "sigkill":  # as the kernel's out-of-memory killer ends a process
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "nomem":
        raise MemoryError("test fault: out of memory")


def _die_with_parent() -> None:
    """End this worker when the process that started it is gone (kill -9 included).

    Linux: ``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL at the parent's death; it is
    set only when the parent starts workers from its main thread (the signal follows the
    thread that forked). Everywhere: a daemon thread polls the parent pid and exits when it
    changes, which also covers native code that never returns to Python.
    """
    parent = int(os.environ.get("ONNXGATE_PARENT_PID", "0")) or os.getppid()
    if os.getppid() != parent:
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="onnxgate-parent-watch", daemon=True).start()


def worker_streams() -> tuple[Any, Any]:
    """Set up a worker process: die with the parent; protocol on the original stdout, prints to stderr."""
    _die_with_parent()
    proto_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # native prints must not corrupt the protocol
    return sys.stdin.buffer, proto_out


def _pdeathsig_hook() -> Any:
    """A preexec_fn setting ``PR_SET_PDEATHSIG`` (Linux), prepared in the parent so the child only calls it."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(handle: Callable[[dict[str, Any], list[bytes]], tuple[dict[str, Any], list[bytes]]],
          setup: Callable[[], None] | None = None) -> None:
    """A worker's request loop on stdin/stdout until EOF (the ORT worker's and the framework worker's).

    ``handle`` turns one request into its reply (header, frames) and reports its own failures
    as data; ``setup`` runs once the worker's streams are set up, before the first request.
    """
    proto_in, proto_out = worker_streams()
    if setup is not None:
        setup()
    while True:
        try:
            header, frames = _read_message_blocking(proto_in)
        except EOFError:
            return
        reply, out = handle(header, frames)
        proto_out.write(_encode(reply, out))
        proto_out.flush()


def _worker_main() -> None:
    """Serve load/run requests on stdin/stdout until EOF."""
    global _in_worker
    _in_worker = True
    sessions: OrderedDict[str, Any] = OrderedDict()

    def setup() -> None:
        import onnxruntime  # noqa: F401 - every request needs it: import before the first one arrives

    def handle(header: dict[str, Any], frames: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        op, key = header.get("op"), header.get("key", "")
        try:
            if op == "load":
                _fault("load", key)
                session = open_session(
                    header["path"] if header.get("path") else frames[0],
                    provider=header["provider"],
                    optimization=header["optimization"],
                    provider_options=header.get("provider_options"),
                    threads=header.get("threads"),
                    custom_op_libraries=header.get("custom_ops"),
                    record_placement=bool(header.get("record_placement")),
                    ep_plugins=header.get("ep_plugins"),
                    optimized_path=header.get("optimized_path"),
                )
                sessions[key] = session
                sessions.move_to_end(key)
                while len(sessions) > _SESSIONS_PER_WORKER:
                    sessions.popitem(last=False)
                return {
                    "ok": True,
                    "providers_used": session.providers_used,
                    "input_types": session.input_types(),
                    "output_names": session.output_names(),
                    "input_shapes": session.input_shapes(),
                    "placement": session.placement().as_dict() if header.get("record_placement") else None,
                }, []
            if op == "run":
                session = sessions.get(key)
                if session is None:
                    return {"ok": False, "missing": True}, []
                _fault("run", key)
                outputs = session.run(_unpack_arrays(header, frames))
                meta, out_frames = _pack_arrays(outputs)
                return dict(meta, ok=True), out_frames
            if op == "time":
                session = sessions.get(key)
                if session is None:
                    return {"ok": False, "missing": True}, []
                return {"ok": True, "timing": _time_here(session, _unpack_arrays(header, frames), header)}, []
            if op == "ping":
                return {"ok": True, "pid": os.getpid()}, []
            return {"ok": False, "error": f"unknown request {op!r}"}, []
        except RunError as exc:
            return {"ok": False, "error": str(exc), "kind": exc.kind}, []
        except Exception as exc:  # anything else in the worker is still one model's failure
            kind = failure_kind(exc, "load" if op == "load" else "run")
            return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}", "kind": kind}, []

    serve(handle, setup)


def _time_here(session: Any, feeds: dict[str, np.ndarray], header: dict[str, Any]) -> dict[str, Any]:
    """Latency of ``session`` on ``feeds``, measured here in the worker (runtime.timing.time_calls)."""
    from onnxgate.runtime.timing import ort_call, time_calls

    timing = time_calls(ort_call(session, feeds), batch=int(header["batch"]), budget_s=float(header["budget_s"]))
    return timing.as_dict()


# -- the parent side --------------------------------------------------------------------


class WorkerDied(Exception):
    """A worker died or was killed: ``how`` in words, ``kind`` one of "crash", "timeout", "memory"."""

    def __init__(self, how: str, kind: str = "crash"):
        super().__init__(how)
        self.how = how
        self.kind = kind


def _exit_kind(code: int | None) -> str:
    """SIGKILL that we did not send is the kernel's out-of-memory killer's signal."""
    return "memory" if code == -signal.SIGKILL else "crash"


def _describe_exit(code: int | None, stderr_tail: str) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return f"was killed with {name} (out of memory?)"
        return f"crashed with {name}"
    tail = f": {stderr_tail}" if stderr_tail else ""
    return f"exited with status {code}{tail}"


class Worker:
    """One worker process and the model keys it has loaded."""

    def __init__(self, env: dict[str, str] | None = None, module: str = "onnxgate.runtime.isolation"):
        self._stderr = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", module]
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=dict(os.environ, ONNXGATE_PARENT_PID=str(os.getpid()), **(env or {})),
            start_new_session=True,  # a Ctrl-C in the terminal reaches the parent, which stops us
            preexec_fn=_pdeathsig_hook(),
        )
        self.loaded: OrderedDict[str, None] = OrderedDict()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, header: dict[str, Any], frames: list[bytes], timeout: float | None) -> tuple[dict[str, Any], list[bytes]]:
        """Send one request, wait for its reply; a death or a timeout raises :class:`WorkerDied`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(_encode(header, frames))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        fd = self.process.stdout.fileno()  # type: ignore[union-attr]
        (n,) = _HEADER.unpack(self._read(fd, _HEADER.size, deadline))
        reply = json.loads(self._read(fd, n, deadline))
        out = []
        for _ in range(int(reply.get("frames", 0))):
            (m,) = _HEADER.unpack(self._read(fd, _HEADER.size, deadline))
            if m > _MAX_FRAME:
                self.kill()
                raise WorkerDied("sent a malformed reply", "crash")
            out.append(self._read(fd, m, deadline))
        return reply, out

    def _read(self, fd: int, n: int, deadline: float | None) -> bytes:
        chunks, left = [], n
        while left:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                self.kill()
                raise WorkerDied("timeout", "timeout")
            chunk = os.read(fd, min(left, 1 << 22))
            if not chunk:
                raise self._died()
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _died(self) -> WorkerDied:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        return WorkerDied(_describe_exit(code, self.stderr_tail()), _exit_kind(code))

    def stderr_tail(self) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 2000))
            lines = [l.strip() for l in self._stderr.read().decode(errors="replace").splitlines() if l.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1][:300] if lines else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Ask the worker to finish (EOF on its stdin), then make sure it did."""
        try:
            if self.process.stdin:
                self.process.stdin.close()
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        for stream in (self.process.stdout, self._stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except (OSError, AttributeError):
                pass


class WorkerPool:
    """Long-lived workers, one per concurrent user, replaced after a crash."""

    def __init__(self, *, max_workers: int | None = None, env: dict[str, str] | None = None,
                 module: str = "onnxgate.runtime.isolation"):
        self.max_workers = max_workers or max(1, os.cpu_count() or 1)
        self.env = env
        self.module = module
        self._idle: list[Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self.started = 0  # workers started, respawns included (for tests and figures)

    @contextmanager
    def worker(self) -> Iterator[Worker]:
        with self._cond:
            while not self._idle and self._busy >= self.max_workers:
                self._cond.wait()
            w = self._idle.pop() if self._idle else None
            self._busy += 1
        try:
            if w is None or not w.alive:
                if w is not None:
                    w.close()
                w = Worker(self.env, self.module)
                self.started += 1
            yield w
        finally:
            with self._cond:
                self._busy -= 1
                if w is not None and w.alive:
                    self._idle.append(w)
                elif w is not None:
                    w.close()
                self._cond.notify()

    def prewarm(self) -> None:
        """Start a worker now, without waiting for it, so its start-up overlaps other work."""
        with self._cond:
            if self._idle or self._busy:
                return
            self._idle.append(Worker(self.env, self.module))
            self.started += 1

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for w in idle:
            w.close()


_default_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def default_pool() -> WorkerPool:
    global _default_pool
    with _pool_lock:
        if _default_pool is None:
            _default_pool = WorkerPool()
            atexit.register(_default_pool.close)
        return _default_pool


@dataclass
class IsolatedSession:
    """A model loaded in a worker; the drop-in for :class:`onnxgate.runtime.runner.Session`."""

    model: bytes
    provider: str
    optimization: str
    label: str
    key: str
    load_header: dict[str, Any]
    timeout: float | None
    pool: WorkerPool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def providers_used(self) -> list[str]:
        return list(self.info.get("providers_used", []))

    def input_types(self) -> dict[str, str]:
        return dict(self.info.get("input_types", {}))

    def output_names(self) -> list[str]:
        return list(self.info.get("output_names", []))

    def input_shapes(self) -> dict[str, Any]:
        return dict(self.info.get("input_shapes", {}))

    def placement(self) -> Any:
        """Which provider took which node, as the worker's session recorded it (``record_placement``)."""
        from onnxgate.runtime.placement import Placement

        found = self.info.get("placement")
        if found is None:
            return Placement(self.provider, self.optimization, error="the session was loaded without record_placement")
        return Placement.from_dict(found)

    def _load(self, w: Worker) -> None:
        try:
            reply, _ = w.request(self.load_header, [self.model], self.timeout)
        except WorkerDied as exc:
            raise RunError(self._explain(exc, "loading"), exc.kind) from None
        if not reply.get("ok"):
            raise RunError(reply.get("error") or "ONNX Runtime could not load the model", _reply_kind(reply, "load"))
        self.info = reply
        w.loaded[self.key] = None
        w.loaded.move_to_end(self.key)
        while len(w.loaded) > _SESSIONS_PER_WORKER:
            w.loaded.popitem(last=False)

    def _explain(self, exc: WorkerDied, stage: str) -> str:
        if exc.kind == "timeout":
            return (
                f"ONNX Runtime did not finish {stage} {self.label} within {self.timeout:g}s; "
                "the worker was killed (raise --timeout if the model is just slow)"
            )
        return f"ONNX Runtime {exc.how} while {stage} {self.label}; the worker was restarted"

    def load(self) -> "IsolatedSession":
        with self.pool.worker() as w:
            self._load(w)
        return self

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        meta, frames = _pack_arrays(feeds)
        reply, out = self._request(dict(meta, op="run", key=self.key), frames, "running", self.timeout)
        return _unpack_arrays(reply, out)

    def time(self, feeds: dict[str, np.ndarray], *, batch: int, budget_s: float) -> dict[str, Any]:
        """Latency on ``feeds`` measured in the worker: ``runtime.timing.Timing.as_dict()``.

        The time limit grows by the timing budget (warm-up and the timed calls come on top of one run).
        """
        meta, frames = _pack_arrays(feeds)
        header = dict(meta, op="time", key=self.key, batch=batch, budget_s=budget_s)
        timeout = None if self.timeout is None else self.timeout + 20 * budget_s
        reply, _ = self._request(header, frames, "timing", timeout)
        return dict(reply["timing"])

    def _request(self, header: dict[str, Any], frames: list[bytes], stage: str,
                 timeout: float | None) -> tuple[dict[str, Any], list[bytes]]:
        """Send a request about this session, loading it first where the worker lacks it."""
        with self.pool.worker() as w:
            for _ in range(2):
                if self.key not in w.loaded:
                    self._load(w)
                try:
                    reply, out = w.request(header, frames, timeout)
                except WorkerDied as exc:
                    raise RunError(self._explain(exc, stage), exc.kind) from None
                if reply.get("missing"):
                    w.loaded.pop(self.key, None)
                    continue
                if not reply.get("ok"):
                    raise RunError(reply.get("error") or "ONNX Runtime failed to run the model", _reply_kind(reply, "run"))
                return reply, out
        raise RunError(f"the worker lost the session for {self.label}", "run")


def _reply_kind(reply: dict[str, Any], default: str) -> str:
    """The kind the worker gave its error (an unknown one from a damaged worker falls back to ``default``)."""
    from onnxgate.runtime.runner import KINDS

    kind = reply.get("kind")
    return kind if kind in KINDS else default


def create_session(
    model: bytes | str | os.PathLike,
    *,
    provider: str = "CPUExecutionProvider",
    optimization: str = "all",
    provider_options: dict[str, str] | None = None,
    threads: int | None = None,
    custom_op_libraries: list[str] | None = None,
    policy: IsolationPolicy | None = None,
    label: str | None = None,
    pool: WorkerPool | None = None,
    record_placement: bool = False,
    ep_plugins: dict[str, str] | None = None,
    optimized_path: str | None = None,
) -> Any:
    """A session for ``model`` (bytes, or a path) in a worker, or in this process with ``policy.in_process``.

    ``optimized_path``: ONNX Runtime saves the graph as optimised at ``optimization`` there.

    Raises :class:`RunError` when the model cannot be loaded, including when loading
    crashes or hangs the worker.
    """
    policy = policy or IsolationPolicy()
    path = None
    if isinstance(model, (str, os.PathLike)):  # by path, so ORT finds external data next to the file
        path = os.path.abspath(model)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    else:
        digest = hashlib.sha256(model).hexdigest()
    if policy.in_process:
        return open_session(
            path or model, provider=provider, optimization=optimization, provider_options=provider_options,
            threads=threads, custom_op_libraries=custom_op_libraries,
            record_placement=record_placement, ep_plugins=ep_plugins, optimized_path=optimized_path,
        )
    options = {"provider": provider, "optimization": optimization, "provider_options": provider_options,
               "threads": threads, "custom_ops": list(custom_op_libraries or [])}
    if record_placement or ep_plugins:  # only then, so other callers' session keys stay as they were
        options.update(record_placement=record_placement, ep_plugins=dict(ep_plugins or {}))
    if optimized_path:
        options.update(optimized_path=optimized_path)
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode() + digest.encode()).hexdigest()
    key = digest[:16] + key[:16]  # the model's hash first: the test fault hook matches on it
    session = IsolatedSession(
        model=b"" if path else model,
        provider=provider,
        optimization=optimization,
        label=label or (repr(path) if path else f"model sha256:{digest[:12]}"),
        key=key,
        load_header=dict(options, op="load", key=key, path=path),
        timeout=policy.timeout,
        pool=pool or default_pool(),
    )
    return session.load()


def run_model(
    model: bytes,
    feeds_list: list[dict[str, np.ndarray]],
    **kwargs: Any,
) -> list[dict[str, np.ndarray]]:
    """Load ``model`` once and run it on each of ``feeds_list``; same keywords as :func:`create_session`."""
    session = create_session(model, **kwargs)
    return [session.run(feeds) for feeds in feeds_list]


if __name__ == "__main__":
    _worker_main()
