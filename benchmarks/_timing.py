"""The timer the micro-benchmarks share: the median wall time of repeated calls.

Imported as a sibling (``from _timing import median_seconds``): each benchmark runs as
``python benchmarks/bench_X.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_seconds(fn: Callable[[], Any], repeat: int = 1) -> float:
    """Median seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
