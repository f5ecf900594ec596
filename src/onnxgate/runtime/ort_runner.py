"""ONNX Runtime as a runner: one :class:`SessionSpec` -> a session opened lazily in the worker pool.

:class:`OrtRunner` is the ONNX Runtime side of the two symmetric runners (the original model's
is :class:`onnxgate.runtime.framework.ReferenceRunner`): ``input_metadata()`` and
``infer(feeds) -> {name: array}``; a load failure, crash, hang or memory blow-up is a
:class:`~onnxgate.runtime.runner.RunError` with its ``kind``. The session opens on first use,
in a worker of the shared pool unless the spec's isolation policy says ``in_process``. A
model that came from a file is opened by its absolute path, so ONNX Runtime resolves external
data next to the file, never in the current directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.runtime.isolation import IsolationPolicy, WorkerPool, create_session
from onnxgate.runtime.runner import RunError


@dataclass(frozen=True)
class SessionSpec:
    """What one session is: the model (bytes, or an absolute path), provider, level, options, isolation.

    ``options`` are :func:`onnxgate.runtime.isolation.create_session` keywords
    (``provider_options``, ``threads``, ``custom_op_libraries``, ``record_placement``, ``ep_plugins``).
    """

    model: bytes | str = field(repr=False)
    provider: str = "CPUExecutionProvider"
    optimization: str = "all"
    options: dict[str, Any] = field(default_factory=dict)
    isolation: IsolationPolicy = field(default_factory=IsolationPolicy)
    label: str | None = None

    @classmethod
    def of(cls, model: bytes | str | os.PathLike, **kwargs: Any) -> "SessionSpec":
        """A spec for ``model``; a path is made absolute (external data resolves next to the file)."""
        if isinstance(model, (str, os.PathLike)):
            model = str(Path(model).resolve())
        return cls(model, **kwargs)

    @property
    def path(self) -> str | None:
        return self.model if isinstance(self.model, str) else None


class OrtRunner:
    """ONNX Runtime on one :class:`SessionSpec`; the session opens on the first request.

    A failed load is remembered: every later request raises the same :class:`RunError`
    instead of loading (and maybe crashing a worker) again.
    """

    def __init__(self, spec: SessionSpec, pool: WorkerPool | None = None):
        self.spec = spec
        self.pool = pool
        self._session: Any = None
        self._failed: RunError | None = None

    @property
    def provider(self) -> str:
        return self.spec.provider

    @property
    def optimization(self) -> str:
        return self.spec.optimization

    def session(self) -> Any:
        """The open session (an in-process ``runner.Session`` or a worker's ``IsolatedSession``)."""
        if self._failed is not None:
            raise self._failed
        if self._session is None:
            try:
                self._session = create_session(
                    self.spec.model, provider=self.spec.provider, optimization=self.spec.optimization,
                    policy=self.spec.isolation, label=self.spec.label, pool=self.pool, **self.spec.options,
                )
            except RunError as exc:
                self._failed = exc
                raise
        return self._session

    def open(self) -> "OrtRunner":
        self.session()
        return self

    @property
    def providers_used(self) -> list[str]:
        return self._session.providers_used if self._session is not None else []

    def output_names(self) -> list[str]:
        return self.session().output_names()

    def input_metadata(self) -> dict[str, tuple[str, list[Any] | None]]:
        """Per input: its ONNX type (``tensor(float)``) and declared shape (symbolic dims as names)."""
        session = self.session()
        shapes = session.input_shapes()
        return {name: (kind, shapes.get(name)) for name, kind in session.input_types().items()}

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.session().run(feeds)

    def infer_values(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Outputs as ONNX Runtime returns them (lists and dicts for sequences and maps) in this process;
        a worker sends tensors only, so there this is :meth:`infer`."""
        session = self.session()
        if hasattr(session, "run_values"):
            return session.run_values(feeds)
        return session.run(feeds)

    def time(self, feeds: dict[str, np.ndarray], *, batch: int, budget_s: float) -> Any:
        """Latency on ``feeds`` (``runtime.timing.Timing``), measured where the session lives."""
        from onnxgate.runtime.timing import Timing, ort_call, time_calls

        session = self.session()
        if hasattr(session, "time"):  # a worker's session: timed there, the parent only waits
            return Timing(**session.time(feeds, batch=batch, budget_s=budget_s))
        return time_calls(ort_call(session, feeds), batch=batch, budget_s=budget_s)
