"""The original model as a runner: load, convert and infer in a framework worker process.

Loading a model file runs the framework's native code on bytes the user was handed: a
scikit-learn tree whose child indices point outside its arrays, an xgboost JSON model or a
lightgbm text model with corrupt indices segfault or hang inside the framework. So the
framework runs in a worker (``python -m onnxgate.runtime.framework``), like ONNX Runtime
does (runtime/isolation.py, whose framing and pool it shares: JSON headers and ``.npy``
frames, never pickle). The parent never imports torch, TensorFlow or scikit-learn on this
path; it receives ONNX bytes and arrays.

:class:`ReferenceRunner` is the parent's handle on one loaded model. Its methods are the
worker's requests:

``open``       pick the converter, load the source (audited trust), build the shared inputs
``convert``    export to ONNX (``opset``) -> bytes, converter name, notes
``infer``      the original's outputs on some feeds (named as the ONNX graph's outputs)
``infer64``    the same computed in float64 where the framework can (``Converter.reference64``), else None
``ties``       the answers of every valid tie-break where the original has several (``Converter.reference_ties``)
``time``       the original's latency per batch, with matched thread pools (--benchmark)

Every request is bounded by ``RuntimeSettings.timeout``. A crash, a hang or a memory blow-up
in the worker becomes :class:`FrameworkCrash` (a user error naming the model and the step,
exit status 2) and the worker is replaced; a user error raised in the worker (a refused
pickle, a sample that does not fit) comes back as the same :class:`OnnxgateError` class.
With ``in_process=True`` (``--in-process``) the same requests run in this process, and an
in-memory source (an estimator object handed to the API) always does.

The worker is reused across models (a gate run imports scikit-learn once); each
:class:`ReferenceRunner` holds its worker until :meth:`ReferenceRunner.close`.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.abc
import json
import os
import re
import sys
import threading
import time
import traceback
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.errors import NeedsSampleError, OnnxgateError, SampleError, SourceError

MODULE = "onnxgate.runtime.framework"
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class FrameworkCrash(SourceError):
    """The original framework crashed, hung or ran out of memory on this model (in its worker)."""

    def __init__(self, message: str, hint: str | None = None, *, kind: str = "crash"):
        super().__init__(message, hint)
        self.kind = kind  # "crash" | "timeout" | "memory"


class FrameworkBug(RuntimeError):
    """A non-user error inside the framework worker: a bug in onnxgate or a library (traceback kept)."""


# -- imports: a worker imports only what its model needs ---------------------------------------

_HEAVY = ("torch", "tensorflow", "keras", "jax")
_NEEDS: dict[str, tuple[str, ...]] = {"torch": _HEAVY, "hf": _HEAVY, "tensorflow": _HEAVY, "keras": _HEAVY}  # the rest need none
_BLOCKED_MARK = "not imported by onnxgate's framework worker"


class _ImportGuard(importlib.abc.MetaPathFinder):
    """Keeps frameworks a model does not use out of the framework worker.

    scikit-learn's array-API shims import torch whenever it is installed (``skops.io`` ->
    ``all_estimators()`` -> ``array_api_compat.torch``): 1.7 s of a 8 s RandomForest run,
    for a model that never touches torch. In the worker (never in-process), a
    scikit-learn, xgboost or lightgbm model is loaded with those imports refused; a model
    that does need one (a skorch step, say) is loaded again with the guard off.
    """

    def __init__(self) -> None:
        self.blocked: frozenset[str] = frozenset()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.partition(".")[0] in self.blocked:
            raise ImportError(f"{name} is {_BLOCKED_MARK} for this model")
        return None

    def configure(self, converter: str | None) -> None:
        """Block the heavy frameworks ``converter`` does not need (None: block nothing)."""
        if converter is None or converter in _NEEDS:
            self.blocked = frozenset()
        else:
            self.blocked = frozenset(m for m in _HEAVY if m not in sys.modules)


_guard: _ImportGuard | None = None  # installed by the worker's main only


def _guarded(converter: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)`` with the guard set for ``converter``; retried unguarded if a blocked import was needed."""
    if _guard is None:
        return fn(*args, **kwargs)
    _guard.configure(converter)
    try:
        return fn(*args, **kwargs)
    except ImportError as exc:
        if _BLOCKED_MARK not in str(exc):
            raise
        _guard.configure(None)
        return fn(*args, **kwargs)


# -- the worker's state: the same code serves the worker and --in-process -------------------


@dataclass
class _Model:
    converter: Any
    model: Any
    sample: Any
    options: dict[str, Any]
    feeds: dict[str, np.ndarray] = field(default_factory=dict)


class _Host:
    """Loaded models by handle, and the requests on them (runs in the worker, or in-process)."""

    def __init__(self) -> None:
        self.models: dict[str, _Model] = {}
        self.counter = 0

    def open(self, source: Any, sample: Any, load: dict[str, Any], options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Load the model; its feeds from the sample, or synthesised by the converter.

        A converter that cannot synthesise leaves ``info["feeds_error"]`` (a SampleError
        record) and no feeds: the caller may synthesise from the ONNX file's signature and
        send them with :meth:`set_feeds`.
        """
        from onnxgate.converters.base import registry
        from onnxgate.inputs.samples import Sample, load_sample
        from onnxgate.trust import Trust

        trust = Trust(**load["trust"]) if isinstance(load["trust"], dict) else load["trust"]
        obj = source
        hub = isinstance(source, str) and source.startswith("hf:")  # a Hugging Face hub name, resolved by the hf converter
        if not hub and isinstance(source, str) and _FACTORY.match(source) and not Path(source).exists():
            obj = _guarded(None, _call_factory, source, trust)
        elif not hub and isinstance(source, (str, Path)) and not Path(source).exists():
            raise SourceError(f"source {str(source)!r} does not exist", "check the path")
        converter = registry().select(obj, load.get("framework"))
        from onnxgate.checks.audits import recording

        with recording() as audited:
            model = _guarded(converter.name, converter.load, obj, trust=trust, options=options)
        smp = sample if isinstance(sample, Sample) or sample is None else load_sample(sample)
        self.counter += 1
        handle = f"m{self.counter}"
        entry = self.models[handle] = _Model(converter, model, smp, options)
        info: dict[str, Any] = {
            "handle": handle,
            "converter": converter.name,
            "versions": _versions(converter, model),
            "sample": None if smp is None else {"path": smp.path, "kind": smp.kind},
            "audited": list(audited),
            "topk": converter.default_topk(model),
            "independent_rows": bool(converter.independent_rows),
            "may_tie": bool(getattr(converter, "may_tie", lambda _m: False)(model)),  # optional, like reference_ties
        }
        try:
            if smp is None:
                entry.feeds = dict(_guarded(converter.name, converter.synthesize, model, options=options))
            else:
                entry.feeds = dict(_guarded(converter.name, converter.feeds, model, smp, options=options))
        except NeedsSampleError as exc:  # the caller may synthesise from the ONNX file's signature
            if smp is not None:
                raise
            info["feeds_error"] = _error_record(exc)
        return info, entry.feeds

    def convert(self, handle: str, opset: int | None) -> tuple[dict[str, Any], bytes]:
        m = self.models[handle]
        start = time.perf_counter()
        conversion = _guarded(m.converter.name, m.converter.convert, m.model, m.feeds, opset=opset, options=m.options)
        seconds = time.perf_counter() - start
        return {"converter": conversion.converter, "notes": list(conversion.notes), "seconds": seconds}, conversion.model.SerializeToString()

    def set_feeds(self, handle: str, feeds: dict[str, np.ndarray]) -> None:
        """The inputs conversion traces with (a converter reads names, dtypes and shapes from them)."""
        self.models[handle].feeds = dict(feeds)

    def infer(self, handle: str, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        m = self.models[handle]
        try:
            with m.converter.reference_context(feeds):
                out = _guarded(m.converter.name, m.converter.reference, m.model, feeds, output_names)
        except OnnxgateError:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise SampleError(
                f"the original {m.converter.name} model failed on the sample: {type(exc).__name__}: {text}",
                "pass a sample the model accepts (same columns, categories and dtypes it was fitted on)",
            ) from exc
        return {k: np.asarray(v) for k, v in out.items()}

    def infer64(self, handle: str, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """The original computing in float64 on the same values; None where its framework cannot."""
        m = self.models[handle]
        reference64 = getattr(m.converter, "reference64", None)
        if reference64 is None:
            return None
        try:
            out = _guarded(m.converter.name, reference64, m.model, feeds, output_names)
        except NameError:  # a bug in onnxgate, not a framework that cannot compute in float64
            raise
        except Exception as exc:  # noqa: BLE001 - no float64 reference is a fallback, never an error
            warnings.warn(f"no float64 reference ({type(exc).__name__}: {exc}); the floor comes from input perturbation",
                          RuntimeWarning, stacklevel=1)
            return None
        return None if out is None else {k: np.asarray(v) for k, v in out.items()}

    def ties(self, handle: str, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, Any]:
        """``{output: judge.ties.TieSet}`` where the original's answer on ``feeds`` is not unique."""
        m = self.models[handle]
        reference_ties = getattr(m.converter, "reference_ties", None)  # optional, like reference64
        if reference_ties is None:
            return {}
        with m.converter.reference_context(feeds):
            return dict(_guarded(m.converter.name, reference_ties, m.model, feeds, output_names))

    def time(self, handle: str, batches: list[tuple[int, dict[str, np.ndarray]]], output_names: list[str],
             threads: int, budget_s: float) -> list[dict[str, Any]]:
        from onnxgate.runtime.timing import matched_threads, time_calls

        m = self.models[handle]
        rows = []
        for batch, feeds in batches:
            with matched_threads(threads, m.model, m.converter.name) as applied:
                timing = time_calls(lambda: m.converter.reference(m.model, feeds, output_names), batch=batch, budget_s=budget_s)
                alternatives, unavailable = time_alternatives(m, feeds, batch, budget_s)
                rows.append({"timing": timing.as_dict(), "controls": dict(applied), "call": m.converter.reference_call,
                             "alternatives": alternatives, "unavailable": unavailable})
        return rows

    def close(self, handle: str) -> None:
        self.models.pop(handle, None)


def time_alternatives(m: _Model, feeds: dict[str, np.ndarray], batch: int, budget_s: float) -> tuple[dict[str, Any], dict[str, str]]:
    """The converter's other call paths (``speed_calls``) timed: ``({label: timing}, {label: why not})``.
    A path that fails is reported beside the others, never fatal: the reference call was timed."""
    from onnxgate._util import one_line
    from onnxgate.runtime.timing import time_calls

    try:
        calls = _guarded(m.converter.name, m.converter.speed_calls, m.model, feeds)
    except Exception as exc:  # noqa: BLE001 - a plugin's failure is a line in the speed report
        return {}, {"speed_calls()": f"{type(exc).__name__}: {one_line(exc)}"}
    timed, failed = {}, {}
    for label, call in calls.items():
        try:
            timed[label] = time_calls(call, batch=batch, budget_s=budget_s).as_dict()
        except Exception as exc:  # noqa: BLE001
            failed[label] = f"{type(exc).__name__}: {one_line(exc)}"
    return timed, failed


def _call_factory(ref: str, trust: Any) -> Any:
    from onnxgate.trust import require_factory

    require_factory(trust, ref)
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        fn = module
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as exc:
        raise SourceError(f"cannot import {ref!r}: {exc}", "check the module path and PYTHONPATH") from None
    if not callable(fn):
        return fn
    try:
        return fn()
    except OnnxgateError:
        raise
    except Exception as exc:  # the user's factory failed: their bug, reported in one line
        text = " ".join(str(exc).split())[:300]
        raise SourceError(f"factory {ref!r} raised {type(exc).__name__}: {text}", "fix the factory (run it in Python to see the traceback, or pass --debug)") from exc


def _versions(converter: Any, model: Any) -> dict[str, str]:
    try:
        return dict(converter.model_versions(model))
    except OnnxgateError:
        return {}


# -- errors across the process boundary -----------------------------------------------------


def _error_record(exc: BaseException) -> dict[str, Any]:
    record = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()[-4000:]}
    if isinstance(exc, OnnxgateError):
        record.update(user=True, message=exc.message, hint=exc.hint)
    if isinstance(exc, ModuleNotFoundError):
        record["module"] = exc.name
    return record


def _user_error_class(name: str) -> type:
    stack, seen = [OnnxgateError], {}
    while stack:
        cls = stack.pop()
        seen.setdefault(cls.__name__, cls)
        stack.extend(cls.__subclasses__())
    return seen.get(name, OnnxgateError)


def _raise_remote(record: dict[str, Any]) -> None:
    if record.get("user"):
        cls = _user_error_class(record["type"])
        try:
            exc = cls(record["message"], record.get("hint"))
        except TypeError:
            exc = OnnxgateError(record["message"], record.get("hint"))
        raise exc
    if record["type"] == "ModuleNotFoundError" and record.get("module"):
        raise ModuleNotFoundError(record["message"], name=record["module"])
    raise FrameworkBug(f"{record['type']} in the framework worker: {record['message']}\n{record['traceback']}")


# -- the worker ---------------------------------------------------------------------------------


def _worker_main() -> None:
    from onnxgate.runtime.isolation import _pack_arrays, _unpack_arrays, serve

    host = _Host()

    def setup() -> None:
        global _guard
        _guard = _ImportGuard()
        sys.meta_path.insert(0, _guard)

    def handle(header: dict[str, Any], frames: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        """One request, with the warnings the framework raised on it sent back (the report keeps them)."""
        from onnxgate._util import warning_line

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            reply, out = answer(header, frames)
        if caught:
            reply["warnings"] = list(dict.fromkeys(warning_line(w) for w in caught))
        return reply, out

    def answer(header: dict[str, Any], frames: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        op = header.get("op")
        try:
            if op == "open":
                _extend_sys_path(header.get("sys_path") or [])
                info, feeds = host.open(header["source"], _sample_of(header.get("sample"), frames), header["load"], header["options"])
                meta, out = _pack_arrays(feeds)
                return dict(meta, ok=True, info=info), out
            if op == "feeds":
                host.set_feeds(header["handle"], _unpack_arrays(header, frames))
                return {"ok": True}, []
            if op == "convert":
                info, data = host.convert(header["handle"], header.get("opset"))
                return {"ok": True, "info": info}, [data]
            if op == "infer":
                outputs = host.infer(header["handle"], _unpack_arrays(header, frames), header["output_names"])
                meta, out = _pack_arrays(outputs)
                return dict(meta, ok=True), out
            if op == "infer64":
                wide = host.infer64(header["handle"], _unpack_arrays(header, frames), header["output_names"])
                if wide is None:
                    return {"ok": True, "none": True}, []
                meta, out = _pack_arrays(wide)
                return dict(meta, ok=True), out
            if op == "ties":
                from onnxgate.judge.ties import pack_ties

                tie_meta, arrays = pack_ties(host.ties(header["handle"], _unpack_arrays(header, frames), header["output_names"]))
                meta, out = _pack_arrays(arrays)
                return dict(meta, ok=True, ties=tie_meta), out
            if op == "time":
                batches = []
                for (batch, meta), frame_slice in zip(header["batches"], _split(frames, header["counts"])):
                    batches.append((batch, _unpack_arrays(meta, frame_slice)))
                rows = host.time(header["handle"], batches, header["output_names"], header["threads"], header["budget_s"])
                return {"ok": True, "rows": rows}, []
            if op == "close":
                host.close(header["handle"])
                return {"ok": True}, []
            if op == "ping":
                return {"ok": True}, []
            return {"ok": False, "error": {"type": "ValueError", "message": f"unknown request {op!r}", "traceback": ""}}, []
        except MemoryError:
            return {"ok": False, "error": {"type": "MemoryError", "message": "out of memory", "traceback": "", "memory": True}}, []
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as data
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return {"ok": False, "error": _error_record(exc)}, []

    serve(handle, setup)
    _exit_now()


def _exit_now() -> None:
    """Leave without the interpreter's teardown: after a torch export it takes 2-4 s, which the parent
    waits for at exit (the worker holds no state worth finalising; its streams are flushed here)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def _sample_of(meta: dict[str, Any] | None, frames: list[bytes]) -> Any:
    """The Sample the parent read (its arrays came as frames)."""
    if meta is None:
        return None
    from onnxgate.inputs.samples import Sample
    from onnxgate.runtime.isolation import _unpack_arrays

    return Sample(meta["kind"], _unpack_arrays(meta, frames), meta.get("path"))


def _extend_sys_path(entries: list[str]) -> None:
    """The parent's import path (a ``module:callable`` source imports as it would in the parent)."""
    import sys

    missing = [e for e in entries if e not in sys.path]
    if missing:
        sys.path[:0] = missing
        from onnxgate.converters import base

        base._registry = None  # a new path entry may carry converter entry points: discover again


def _split(frames: list[bytes], counts: list[int]) -> list[list[bytes]]:
    out, i = [], 0
    for n in counts:
        out.append(frames[i:i + n])
        i += n
    return out


# -- the parent side ----------------------------------------------------------------------------

_pool: Any = None
_pool_lock = threading.Lock()


def framework_pool() -> Any:
    """The framework workers, shared by every model of this process (imports stay warm)."""
    global _pool
    from onnxgate.runtime.isolation import WorkerPool

    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(module=MODULE)
            atexit.register(_pool.close)
        return _pool


@dataclass
class ReferenceRunner:
    """One original model, loaded in a framework worker (or in this process), with its shared inputs.

    ``feeds`` are the shared inputs on the ONNX input names, ``converter`` the converter's
    name, ``sample`` the sample's path and kind (None when synthesised), ``options`` the
    converter options (with the seed that was used).
    """

    source: Any
    converter: str
    feeds: dict[str, np.ndarray]
    options: dict[str, Any]
    trust: Any
    sample: dict[str, Any] | None
    versions: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    label: str = ""
    feeds_error: dict[str, Any] | None = None  # the converter could not synthesise inputs (SampleError record)
    audited: list[dict[str, Any]] = field(default_factory=list)  # types trusted by audit: type, instances, grounds
    topk: int | None = None  # the converter's top-k agreement for this model when --topk is not given (LM logits)
    independent_rows: bool = False  # the converter's Converter.independent_rows: rows may be stacked into one call
    may_tie: bool = False  # the converter's Converter.may_tie(model): whether ties() can find anything
    warnings: list[str] = field(default_factory=list)  # what the framework warned in its worker, one line each
    _handle: str = ""
    _host: _Host | None = None  # in-process
    _worker: Any = None
    _lease: Any = None
    _dead: FrameworkCrash | None = None

    # -- requests ---------------------------------------------------------------------------

    def _request(self, header: dict[str, Any], frames: list[bytes], step: str) -> tuple[dict[str, Any], list[bytes]]:
        from onnxgate.runtime.isolation import WorkerDied

        if self._dead is not None:
            raise self._dead
        try:
            reply, out = self._worker.request(dict(header, handle=self._handle), frames, self.timeout)
        except WorkerDied as exc:
            self._dead = _crash(exc, step, self.label, self.converter, self.timeout)
            self.close()
            raise self._dead from None
        self.warnings += [w for w in reply.get("warnings") or [] if w not in self.warnings]
        if not reply.get("ok"):
            error = reply.get("error") or {}
            if error.get("memory"):
                raise FrameworkCrash(f"the original {self.converter} model ran out of memory while {step} {self.label}",
                                     "check the model file; it may declare sizes far beyond its contents", kind="memory")
            _raise_remote(error)
        return reply, out

    def input_metadata(self) -> dict[str, tuple[str, list[int]]]:
        return {k: (str(v.dtype), list(v.shape)) for k, v in self.feeds.items()}

    def infer(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        """The original's outputs on ``feeds``, named and shaped as the ONNX graph's."""
        if self._host is not None:
            return self._host.infer(self._handle, feeds, output_names)
        from onnxgate.runtime.isolation import _pack_arrays, _unpack_arrays

        meta, frames = _pack_arrays(feeds)
        reply, out = self._request(dict(meta, op="infer", output_names=list(output_names)), frames, "running")
        return _unpack_arrays(reply, out)

    def infer64(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """The original's outputs computed in float64 on the same input values (the best reference);
        None where its framework cannot compute this model in float64."""
        if self._host is not None:
            return self._host.infer64(self._handle, feeds, output_names)
        from onnxgate.runtime.isolation import _pack_arrays, _unpack_arrays

        meta, frames = _pack_arrays(feeds)
        reply, out = self._request(dict(meta, op="infer64", output_names=list(output_names)), frames, "running in float64")
        return None if reply.get("none") else _unpack_arrays(reply, out)

    def ties(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, Any]:
        """``{output: judge.ties.TieSet}``: every valid tie-break's answers where the original's
        output on ``feeds`` is not unique (nearest-neighbour ties); empty for most models, which
        the converter said at load (``may_tie``): not asked."""
        if not self.may_tie:
            return {}
        if self._host is not None:
            return self._host.ties(self._handle, feeds, output_names)
        from onnxgate.judge.ties import unpack_ties
        from onnxgate.runtime.isolation import _pack_arrays, _unpack_arrays

        meta, frames = _pack_arrays(feeds)
        reply, out = self._request(dict(meta, op="ties", output_names=list(output_names)), frames, "finding ties of")
        return unpack_ties(reply.get("ties") or {}, _unpack_arrays(reply, out))

    def convert(self, opset: int | None = None) -> tuple[Any, dict[str, Any]]:
        """``(onnx.ModelProto, {"converter", "notes", "seconds"})`` of a conversion of this model."""
        import onnx

        if self._host is not None:
            info, data = self._host.convert(self._handle, opset)
        else:
            reply, out = self._request({"op": "convert", "opset": opset}, [], "converting")
            info, data = reply["info"], out[0]
        return onnx.load_from_string(data), info

    def time(self, batches: list[tuple[int, dict[str, np.ndarray]]], output_names: list[str], *,
             threads: int, budget_s: float) -> list[dict[str, Any]]:
        """Latency of the original per batch, with its thread pools matched (runtime.timing)."""
        if self._host is not None:
            return self._host.time(self._handle, batches, output_names, threads, budget_s)
        from onnxgate.runtime.isolation import _pack_arrays

        metas, counts, frames = [], [], []
        for batch, feeds in batches:
            meta, fr = _pack_arrays(feeds)
            metas.append((batch, meta))
            counts.append(len(fr))
            frames += fr
        header = {"op": "time", "batches": metas, "counts": counts, "output_names": list(output_names),
                  "threads": threads, "budget_s": budget_s}
        timeout, self.timeout = self.timeout, None if self.timeout is None else self.timeout + 20 * budget_s * len(batches)
        try:
            reply, _ = self._request(header, frames, "timing")
        finally:
            self.timeout = timeout
        return reply["rows"]

    def close(self) -> None:
        """Forget the model in the worker and give the worker back to the pool."""
        if self._host is not None:
            self._host.close(self._handle)
            return
        lease, self._lease = self._lease, None
        if lease is None:
            return
        if self._dead is None:
            try:
                self._worker.request({"op": "close", "handle": self._handle}, [], 10)
            except Exception:  # noqa: BLE001 - a worker that died on close is replaced next time
                pass
        lease.__exit__(None, None, None)

    def __enter__(self) -> "ReferenceRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _crash(died: Any, step: str, label: str, converter: str, timeout: float | None) -> FrameworkCrash:
    what = f"the original model {label}" if label else "the original model"
    who = "the framework worker" if converter == "framework" else converter
    how, kind = died.how, getattr(died, "kind", "crash")
    if kind == "timeout":
        return FrameworkCrash(
            f"{who} did not finish {step} {what} within {timeout:g}s; its worker was killed",
            "raise --timeout if the model is just slow; a model file whose trees loop never finishes", kind="timeout",
        )
    return FrameworkCrash(
        f"{who} {how} while {step} {what}; onnxgate is unharmed and the worker was replaced",
        "the model file is corrupt or hostile, e.g. tree indices out of range: re-export it from the framework",
        kind=kind,
    )


def open_reference(
    source: Any,
    *,
    sample: Any = None,
    framework: str | None = None,
    trust: Any = None,
    options: dict[str, Any] | None = None,
    in_process: bool = False,
    timeout: float | None = None,
) -> ReferenceRunner:
    """Load ``source`` with its converter and build the shared inputs; see :class:`ReferenceRunner`.

    ``framework`` names the converter (default: the one that accepts ``source``); ``trust``
    is a trust.Trust; ``options`` the converter options (``Settings.converter_options()``,
    with the seed resolved). A converter that cannot synthesise inputs without a sample
    leaves ``runner.feeds_error`` (the caller may fall back to the ONNX file's signature).
    """
    from onnxgate.inputs.samples import Sample, load_sample
    from onnxgate.trust import Trust

    trust = trust or Trust()
    options = dict(options or {})
    label = repr(str(source)) if isinstance(source, (str, Path)) else ""
    load_record = {"framework": framework, "trust": trust.as_dict() | {"types": list(trust.types)}}
    if sample is not None and not isinstance(sample, Sample):
        sample = load_sample(sample)  # data only (no pickle): read here, so a bad sample fails before any model loads
    local = in_process or not isinstance(source, (str, Path))
    if local:
        host = _Host()
        info, feeds = host.open(str(source) if isinstance(source, Path) else source, sample, {"framework": framework, "trust": trust}, options)
        return ReferenceRunner(source, info["converter"], feeds, options, trust, info["sample"], info["versions"],
                               timeout=timeout, label=label, feeds_error=info.get("feeds_error"), audited=info.get("audited", []),
                               topk=info.get("topk"), independent_rows=info.get("independent_rows", False),
                               may_tie=info.get("may_tie", False),
                               _handle=info["handle"], _host=host)
    from onnxgate.runtime.isolation import _pack_arrays, _unpack_arrays

    pool = framework_pool()
    lease = pool.worker()
    worker = lease.__enter__()
    _import_while_waiting("onnx")  # read the worker's ONNX bytes: 1-1.5 s of import (ml_dtypes) off the critical path
    runner = ReferenceRunner(source, "framework", {}, options, trust, None, timeout=timeout, label=label, _worker=worker, _lease=lease)
    import sys

    header = {"op": "open", "source": str(source), "load": load_record, "options": _jsonable(options),
              "sys_path": [os.path.abspath(p or ".") for p in sys.path]}
    frames: list[bytes] = []
    if sample is not None:
        meta, frames = _pack_arrays(sample.arrays)
        header["sample"] = dict(meta, kind=sample.kind, path=sample.path)
    try:
        reply, out = runner._request(header, frames, "loading")
    except BaseException:
        runner.close()
        raise
    info = reply["info"]
    runner._handle, runner.converter, runner.versions, runner.sample = info["handle"], info["converter"], info["versions"], info["sample"]
    runner.audited = list(info.get("audited", []))
    runner.topk = info.get("topk")
    runner.independent_rows = bool(info.get("independent_rows", False))
    runner.may_tie = bool(info.get("may_tie", False))
    runner.feeds = _unpack_arrays(reply, out)
    runner.feeds_error = info.get("feeds_error")
    return runner


def _import_while_waiting(module: str) -> None:
    """Import ``module`` in a thread while this process waits on its worker (the wait releases the GIL).

    Not a daemon thread: an interpreter that exits mid-import would tear the module down half-built.
    """
    if module in sys.modules:
        return

    def run() -> None:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the import that needs it raises again, in the caller's thread
            pass

    threading.Thread(target=run, name=f"onnxgate-import-{module}").start()


def raise_feeds_error(runner: ReferenceRunner) -> None:
    """The converter's reason for not synthesising inputs, as the SampleError it raised."""
    if runner.feeds_error is not None:
        _raise_remote(runner.feeds_error)


def send_feeds(runner: ReferenceRunner, feeds: dict[str, np.ndarray]) -> None:
    """Tell the worker the inputs a conversion should trace with (when the parent built them)."""
    runner.feeds = feeds
    if runner._host is not None:
        runner._host.set_feeds(runner._handle, feeds)
        return
    from onnxgate.runtime.isolation import _pack_arrays

    meta, frames = _pack_arrays(feeds)
    runner._request(dict(meta, op="feeds"), frames, "sending inputs to")


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in options.items() if not k.startswith("_")}, default=list))


if __name__ == "__main__":
    _worker_main()
