"""The ``zoo`` commands as an API: index a directory, fetch and verify a manifest's models.

Results are data (:class:`ZooReport`); the CLI renders the table and maps the verdict
to the exit code: 0 all passed, 1 any model did not pass.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

from onnxgate._util import json_text
from onnxgate.model_zoo.manifest import MANIFEST_NAME, ManifestError
from onnxgate.model_zoo.verify import LABELS, STATUSES, ModelResult, Task

SCHEMA = "onnxgate.zoo-report/1"


@dataclass
class Zoo:
    """Entries to work on and where their relative paths resolve (None: a local directory, in place)."""

    location: str
    manifest: str | None
    entries: list[dict]


def open_zoo(location: str | Path) -> Zoo:
    """A manifest path/URL, a directory holding ``ONNX_HUB_MANIFEST.json``, or a bare zoo-layout directory."""
    from onnxgate.model_zoo.fetch import is_url, local_path
    from onnxgate.model_zoo.manifest import find_models, model_entry, read_manifest

    loc = str(location)
    if not is_url(loc) or loc.lower().startswith("file://"):
        p = local_path(loc)
        if p.is_dir() and not (p / MANIFEST_NAME).is_file():
            models = find_models(p)
            if not models:
                raise ManifestError(f"no {MANIFEST_NAME} and no */model.onnx under {loc!r}", "pass a manifest or a zoo directory")
            return Zoo(loc, None, [_directory_entry(d, p) for d in models])
        if p.is_dir():
            loc = str(p / MANIFEST_NAME)
    return Zoo(str(location), loc, read_manifest(loc))


def _directory_entry(model_dir: Path, root: Path) -> dict:
    """A model of a zoo directory; one whose file cannot be read still gets an entry, so it fails alone when verified."""
    from onnxgate.errors import OnnxgateError
    from onnxgate.model_zoo.manifest import model_entry

    name = model_dir.relative_to(root).as_posix() if model_dir != root else model_dir.name
    try:
        e = model_entry(model_dir, name=name, root=root, archive=False)
    except OnnxgateError:  # verify_task reads it again and reports why, as this model's result
        e = {"model": name, "metadata": {"tags": []}}
    e["model_path"] = str(model_dir / "model.onnx")
    return e


def select(entries: list[dict], *, models: Sequence[str] | None = None, tags: Sequence[str] | None = None) -> list[dict]:
    """Entries named by ``models`` (each must exist) and carrying one of ``tags``; all when neither is given."""
    chosen = entries
    if models:
        known = {e["model"] for e in entries}
        missing = [m for m in models if m not in known]
        if missing:
            sample = ", ".join(sorted(known)[:8]) + (" …" if len(known) > 8 else "")
            raise ManifestError(f"no model named {missing[0]!r} in the manifest", f"known models: {sample}")
        wanted = set(models)
        chosen = [e for e in chosen if e["model"] in wanted]
    if tags:
        want = set(tags)
        chosen = [e for e in chosen if want & set(e.get("metadata", {}).get("tags", []))]
        if not chosen:
            raise ManifestError(f"no model has tag(s) {sorted(want)}", "check --tag against the manifest's metadata.tags")
    return chosen


@dataclass
class ZooReport:
    location: str
    results: list[ModelResult] = field(default_factory=list)
    seconds: float = 0.0
    jobs: int = 1
    tolerances: dict[str, float] = field(default_factory=dict)
    engine: str = "local"

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def status(self) -> str:
        """The shared verdict of the whole zoo: the worst of its models' (error > failed > vacuous > passed)."""
        if not self.results:
            return "error"
        verdicts = {r.verdict for r in self.results}
        return next((v for v in ("error", "failed", "vacuous") if v in verdicts), "passed")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict[str, Any]:
        from onnxgate.model_zoo.verify import ZOO_ATOL, ZOO_RTOL

        return {
            "schema": SCHEMA,
            "status": self.status,
            "manifest": self.location,
            "seconds": round(self.seconds, 3),
            "jobs": self.jobs,
            "engine": self.engine,
            "default_tolerances": {"atol": ZOO_ATOL, "rtol": ZOO_RTOL, "source": "ONNX backend test runner"},
            "counts": self.counts,
            "models": [r.as_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json_text(self.as_dict()) + "\n"

    def table(self) -> str:
        """Per-model lines for what did not pass, then the counts."""
        width = max([len(r.name) for r in self.results] + [5])
        lines = [f"{'model':<{width}}  status          seconds  reason"]
        for r in self.results:
            reason = (r.reason or "")[:160]
            lines.append(f"{r.name:<{width}}  {LABELS[r.status]:<14}  {r.seconds:7.2f}  {reason}".rstrip())
        counts = self.counts
        shown = [s for s in STATUSES if s in ("passed", "mismatch", "load_failed", "unsupported") or counts[s]]
        lines.append("")
        lines.append("  ".join(f"{LABELS[s]}: {counts[s]}" for s in shown) + f"  (total {len(self.results)}, {self.seconds:.1f}s)")
        return "\n".join(lines) + "\n"

    def to_junit(self) -> str:
        """One <testsuite>, one <testcase> per model (failure: mismatch; error: anything else not passed)."""
        cases, failures, errors, skipped = [], 0, 0, 0
        for r in self.results:
            body = ""
            detail = escape(json_text(r.as_dict(), indent=1))
            if r.status in ("mismatch", "tampered"):
                failures += 1
                body = f"<failure message={quoteattr(r.reason or r.status)} type={quoteattr(r.status)}>{detail}</failure>"
            elif r.status != "passed":
                errors += 1
                body = f"<error message={quoteattr(r.reason or r.status)} type={quoteattr(r.status)}>{detail}</error>"
            cases.append(
                f"    <testcase classname=\"onnxgate.zoo\" name={quoteattr(r.name)} time=\"{r.seconds:.3f}\">{body}</testcase>"
            )
        head = (
            f"  <testsuite name={quoteattr('onnxgate.zoo ' + self.location)} tests=\"{len(cases)}\" "
            f"failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{self.seconds:.3f}\">"
        )
        return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>", head, *cases, "  </testsuite>", "</testsuites>"]) + "\n"


def _crashed(task: Task, why: str) -> ModelResult:
    from onnxgate.model_zoo.verify import ZOO_ATOL, ZOO_RTOL

    tol = {"atol": ZOO_ATOL, "rtol": ZOO_RTOL, **(task.entry.get("metadata", {}).get("tolerances") or {})}
    return ModelResult(task.entry["model"], task.entry["model_path"], "error", why, tolerances=tol)


def verify_zoo(
    location: str | Path,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    jobs: int | None = None,
    cache: str | Path | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    in_process: bool = False,
    timeout: float | None = None,
    on_result: Callable[[ModelResult, int, int], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> ZooReport:
    """Fetch (through the cache) and verify the selected models in ``jobs`` worker processes,
    or with ``engine="ray"`` as one Ray task per model (``ray_address``: join that cluster;
    otherwise a local runtime with ``jobs`` CPUs).

    Workers isolate the caller from crashes in native code (a model that segfaults ONNX
    Runtime fails alone) and ``timeout`` bounds each model; ``in_process`` trades that
    isolation for the worker start-up time.
    """
    from onnxgate.engines import EngineSettings, check_engine
    from onnxgate.model_zoo.verify import verify_task

    jobs = 1 if jobs is None else jobs
    if jobs < 1:
        raise ManifestError(f"--jobs must be at least 1, got {jobs}", "pass --jobs 1 or more")
    settings = EngineSettings(engine, jobs, ray_address, timeout)
    if in_process and engine != "local":
        raise ManifestError("--in-process and --engine ray exclude each other", "drop one of them")
    check_engine(settings)
    start = time.perf_counter()
    zoo = open_zoo(location)
    entries = select(zoo.entries, models=models, tags=tags)
    tasks = [Task(e, zoo.manifest, _task_cache(cache, engine), _task_threads(jobs, engine), retries, backoff, timeout)
             for e in entries]
    results: list[ModelResult | None] = [None] * len(tasks)
    done = 0

    def record(index: int, result: ModelResult) -> None:
        nonlocal done
        results[index] = result
        done += 1
        if on_result:
            on_result(result, done, len(tasks))

    if in_process:
        for i, t in enumerate(tasks):
            record(i, verify_task(t))
    elif tasks:
        from onnxgate.model_zoo.pool import run_pool

        run_pool(tasks, jobs, record, _crashed, timeout=timeout, engine=settings)
    return ZooReport(zoo.location, [r for r in results if r is not None], time.perf_counter() - start, jobs, engine=engine)


def _task_cache(cache: str | Path | None, engine: str) -> str | None:
    """The download cache a task uses: the one given; else this machine's default, or on Ray the
    default of the node that runs the task (None: resolved there)."""
    from onnxgate.model_zoo.fetch import default_cache_dir

    if cache is not None:
        return str(cache)
    return None if engine == "ray" else str(default_cache_dir())


def _task_threads(jobs: int, engine: str) -> int | None:
    """ORT threads per model: a share of this machine's cores; on Ray, the task's one CPU."""
    if engine == "ray":
        return 1
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


@dataclass
class FetchResult:
    name: str
    path: str | None
    cache_hit: bool | None
    error: str | None = None


def fetch_zoo(
    location: str | Path,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    cache: str | Path | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    timeout: float | None = None,
    on_result: Callable[[FetchResult, int, int], None] | None = None,
) -> list[FetchResult]:
    """Download (and unpack) the selected models into the cache; each result names the local model file."""
    from onnxgate.errors import OnnxgateError
    from onnxgate.model_zoo.fetch import Cache, default_cache_dir, resolve
    from onnxgate.model_zoo.verify import find_model_file

    zoo = open_zoo(location)
    if zoo.manifest is None:
        raise ManifestError(f"{str(location)!r} is a local directory, there is nothing to fetch", f"pass an {MANIFEST_NAME} path or URL")
    entries = select(zoo.entries, models=models, tags=tags)
    kwargs = {k: v for k, v in (("retries", retries), ("backoff", backoff), ("deadline", timeout)) if v is not None}
    c = Cache(Path(cache) if cache is not None else default_cache_dir(), **kwargs)  # type: ignore[arg-type]
    out: list[FetchResult] = []
    for e in entries:
        meta = e["metadata"]
        try:
            if meta.get("model_with_data_path") and meta.get("model_with_data_sha"):
                got = c.fetch(resolve(zoo.manifest, meta["model_with_data_path"]), sha256=meta["model_with_data_sha"], size=meta.get("model_with_data_bytes"))
                path = find_model_file(c.extract(got.path, got.sha256), meta.get("model_sha"))
            elif meta.get("model_sha"):
                got = c.fetch(resolve(zoo.manifest, e["model_path"]), sha256=meta["model_sha"], size=meta.get("model_bytes"))
                path = got.path
            else:
                raise ManifestError("the manifest gives no sha256 for it: the download cannot be checked", "add metadata.model_sha")
            r = FetchResult(e["model"], str(path), got.hit)
        except OnnxgateError as exc:
            r = FetchResult(e["model"], None, None, str(exc))
        out.append(r)
        if on_result:
            on_result(r, len(out), len(entries))
    return out


def index_zoo(directory: str | Path, output: str | Path, *, progress: Any = None) -> list[dict]:
    """Write ``output`` (an ONNX hub manifest) for every zoo-layout model under ``directory``.

    On a registry onnxgate published, the entries are kept without loss (indexing it into its
    own manifest rewrites the same bytes); ``directory`` is written only when ``output`` is
    its own manifest.
    """
    from onnxgate._io import check_output_path, locked, write_atomic
    from onnxgate.model_zoo.manifest import dumps, index_directory, lock_path

    out = check_output_path(output, "manifest")
    assert out is not None
    try:
        Path(directory).resolve().relative_to(out.parent.resolve())
    except ValueError:
        raise ManifestError(
            f"the manifest {str(out)!r} must sit at or above {str(directory)!r}", "model_path entries are relative to the manifest"
        ) from None
    own = out.resolve() == (Path(directory) / MANIFEST_NAME).resolve()
    with locked(lock_path(out)) if own else contextlib.nullcontext():  # the lock publish takes
        entries = index_directory(Path(directory), output=out, progress=progress)
        write_atomic(out, dumps(entries))
    return entries
