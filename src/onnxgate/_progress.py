"""Progress on stderr for steps that take longer than a second.

The core never prints: pipelines take a ``Progress`` and call ``step()``; the CLI
passes a :class:`StderrProgress`, library users get :class:`NullProgress`.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, TextIO


class NullProgress:
    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        yield


class LabelledProgress:
    """Names the model in every step: ``[iris.skops] converting with sklearn``."""

    def __init__(self, inner: "NullProgress | StderrProgress | LabelledProgress", label: str):
        self.inner, self.label = inner, label

    def step(self, text: str) -> Any:
        return self.inner.step(f"[{self.label}] {text}")


def labelled(progress: Any, label: str) -> Any:
    """``progress`` with ``label`` in front of each step (a progress already labelled keeps its label)."""
    if progress is None or isinstance(progress, (NullProgress, LabelledProgress)):
        return progress
    return LabelledProgress(progress, label)


class StderrProgress:
    """Announces a step once it has run for ``delay`` seconds, then says when it ends."""

    def __init__(self, stream: TextIO | None = None, delay: float = 1.0):
        self.stream = stream or sys.stderr
        self.delay = delay
        self._lock = threading.Lock()

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        shown = threading.Event()
        start = time.perf_counter()

        def announce() -> None:
            with self._lock:
                if not shown.is_set():
                    shown.set()
                    print(f"onnxgate: {text} ...", file=self.stream, flush=True)

        timer = threading.Timer(self.delay, announce)
        timer.daemon = True
        timer.start()
        ok = False
        try:
            yield
            ok = True
        finally:
            timer.cancel()
            if ok and time.perf_counter() - start >= self.delay:
                announce()  # a step that held the GIL (TensorFlow, Keras) past the delay keeps its start line
            if shown.is_set() and ok:  # a failure is reported once, by whoever catches it
                with self._lock:
                    print(f"onnxgate: {text} done in {time.perf_counter() - start:.1f}s", file=self.stream, flush=True)
