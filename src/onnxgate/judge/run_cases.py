"""The one loop: run these cases on this runner and compare each with its reference.

Every path that runs a model and judges it goes through :func:`run_cases`: validate
(references = the original's outputs), evidence replay (the stored outputs), optimised
variants, the gate's drift replay (the published version's test data), localisation's
callers and zoo verify. The runner is anything with ``infer(feeds) -> {name: array}``
(``runtime.ort_runner.OrtRunner``, ``runtime.framework.ReferenceRunner``); a failure is a
``RunError`` whose ``kind`` goes into the case record, never an exception out of the loop.

It lives in judge/ because what it makes is judge records (``Case``, compared with
``compare_outputs``); it runs nothing itself and imports from runtime/ only the error type.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from onnxgate._progress import NullProgress
from onnxgate.judge.compare import compare_outputs
from onnxgate.judge.report import Case
from onnxgate.runtime.runner import RunError

Feeds = dict[str, Any]
# explain(case_name, feeds, error) -> the case's error text (e.g. naming a frozen batch axis)
Explain = Callable[[str, Feeds, RunError], str]
# check(case, feeds, outputs): more problems on a compared case (frozen output axes, signatures)
Check = Callable[[Case, Feeds, dict[str, Any]], None]
# A runner that timed out once is not asked again: the next case would only wait as long.
STOP_KINDS = ("timeout",)


def run_cases(
    runner: Any,
    cases: Iterable[tuple[str, Feeds]],
    references: dict[str, dict[str, Any]],
    *,
    policy: Any,
    output_names: list[str] | None = None,
    provider: str | None = None,
    optimization: str | None = None,
    reference_errors: dict[str, str] | None = None,
    explain: Explain | None = None,
    check: Check | None = None,
    progress: Any = None,
    what: str = "ONNX Runtime",
    ties: dict[str, dict[str, Any]] | None = None,
) -> list[Case]:
    """One :class:`Case` per ``(case_name, feeds)``: ``runner.infer(feeds)`` compared with ``references[case_name]``.

    ``output_names`` are compared in that order (default: the reference's). ``provider`` and
    ``optimization`` label the cases (default: the runner's). A case whose reference failed
    (``reference_errors``) is still run, then carries that error. A ``RunError`` becomes the
    case's ``error`` (``explain`` may reword it) and ``error_kind``; after a timeout the runner's
    remaining cases are not run and say so. ``ties[case_name]``: the original's tie-breaks where its
    answer is not unique (judge/ties.py), passed on to the comparison.
    """
    progress = progress or NullProgress()
    provider = provider if provider is not None else getattr(runner, "provider", "")
    optimization = optimization if optimization is not None else getattr(runner, "optimization", "")
    reference_errors = reference_errors or {}
    stopped: Case | None = None
    out: list[Case] = []
    for name, feeds in cases:
        case = Case(name, provider, optimization, _shapes(feeds))
        out.append(case)
        if stopped is not None:
            case.error = f"not run: {what} was stopped at case {stopped.name!r} ({stopped.error_kind})"
            case.error_kind = stopped.error_kind
            continue
        try:
            with progress.step(f"running {what} ({provider}, {optimization}) at {name}"):
                got = runner.infer(feeds)
        except RunError as exc:
            case.error = explain(name, feeds, exc) if explain is not None else str(exc)
            case.error_kind = exc.kind
            if exc.kind in STOP_KINDS:
                stopped = case
            continue
        case.providers_used = list(getattr(runner, "providers_used", None) or [])
        if name in reference_errors:
            case.error = reference_errors[name]
            continue
        reference = references[name]
        names = list(output_names) if output_names is not None else list(reference)
        case.outputs = compare_outputs(reference, got, policy=policy, output_names=names, ties=(ties or {}).get(name))
        if check is not None:
            check(case, feeds, got)
    return out


def _shapes(feeds: Feeds) -> dict[str, list[int]]:
    return {k: [int(d) for d in v.shape] if hasattr(v, "shape") else [] for k, v in feeds.items()}
