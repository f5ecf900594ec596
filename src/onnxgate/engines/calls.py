"""The unit of work both engines run, and how an engine is chosen: plain data only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from onnxgate.errors import OnnxgateError

ENGINES = ("local", "ray")
_FORWARDED_PREFIX = "ONNXGATE_"  # the driver's onnxgate environment travels with each remote call
_NOT_FORWARDED = ("ONNXGATE_PARENT_PID",)


class EngineError(OnnxgateError):
    """The engine cannot start: an unknown name, Ray missing, a cluster that cannot be joined."""


@dataclass(frozen=True)
class EngineSettings:
    """``engine``: "local" (worker processes on this machine) or "ray"; ``jobs``: local workers, or the
    CPUs of a local Ray runtime; ``ray_address``: join this cluster instead of starting one."""

    engine: str = "local"
    jobs: int = 1
    ray_address: str | None = None
    timeout: float | None = None  # seconds per call; the worker is killed past it

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise EngineError(f"unknown engine {self.engine!r}", f"choose one of {list(ENGINES)}")
        if self.jobs < 1:
            raise EngineError(f"--jobs must be at least 1, got {self.jobs}", "pass --jobs 1 or more")
        if self.ray_address and self.engine != "ray":
            raise EngineError("--ray-address only applies with --engine ray", "add --engine ray or drop --ray-address")


@dataclass(frozen=True)
class Call:
    """One model's work: ``function`` ("onnxgate.module:name") applied to a JSON ``payload`` in a worker.

    ``resources`` is the Ray resource request (``num_cpus``, ``num_gpus``); ``label`` names the
    model in failure messages.
    """

    function: str
    payload: dict[str, Any]
    label: str = ""
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1})


class CallFailed(Exception):
    """A call produced no result: its worker crashed, hung past the timeout, or replied nonsense."""

    def __init__(self, reason: str, kind: str = "crash"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:  # crosses Ray's boundary with its kind
        return (CallFailed, (self.reason, self.kind))


def forwarded_env() -> dict[str, str]:
    """The ``ONNXGATE_*`` variables of this process (cache location, trust, test fault injection)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_PREFIX) and k not in _NOT_FORWARDED}
