"""Verify zoo models: checksum, ``onnx.checker``, then every ``test_data_set_N`` under ONNX Runtime.

Per model the verdict is one of:

* ``passed`` -- every data set's outputs match the stored ones within tolerance;
* ``mismatch`` -- ONNX Runtime ran the model but some output differs;
* ``unsupported`` -- ONNX Runtime cannot load or run it (unknown op, opset, IR version);
  ORT's reason is kept, and this is not a numeric mismatch;
* ``tampered`` -- a file the manifest names (``model_path``, the archive, the model in
  the archive, or loose test data beside ``model_path``) is not what its checksum says;
  the reason names the file, and nothing is run;
* ``load_failed`` -- it could not be fetched, ``onnx.checker`` refuses it, or ORT fails
  to load it for another reason;
* ``error`` -- a data set could not be read or run, or a worker process crashed;
* ``untested`` -- the manifest has no test data for it: nothing was verified.

Tolerances default to the ONNX backend tests' (rtol 1e-3, atol 1e-7) and are
overridden per model by ``metadata.tolerances`` in the manifest.
"""

from __future__ import annotations

import dataclasses

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._util import one_line
from onnxgate._io import sha256_file
from onnxgate.errors import OnnxgateError
from onnxgate.judge.compare import OutputComparison
from onnxgate.judge.run_cases import run_cases
from onnxgate.runtime.isolation import IsolationPolicy
from onnxgate.runtime.ort_runner import OrtRunner, SessionSpec
from onnxgate.runtime.runner import RunError

ZOO_ATOL = 1e-7  # onnx/backend/test/runner: np.testing.assert_allclose(rtol=1e-3, atol=1e-7)
ZOO_RTOL = 1e-3
STATUSES = ("passed", "mismatch", "tampered", "unsupported", "load_failed", "error", "untested")
LABELS = {
    "passed": "passed",
    "mismatch": "mismatch",
    "tampered": "tampered",
    "unsupported": "unsupported",
    "load_failed": "failed to load",
    "error": "error",
    "untested": "no test data",
}

# The zoo's detailed statuses on the shared verdicts (judge.report.VERDICTS).
VERDICT_OF = {"passed": "passed", "mismatch": "failed", "tampered": "failed", "unsupported": "error", "load_failed": "error",
              "error": "error", "untested": "vacuous"}

# ORT's wording when the model is valid but this runtime lacks what it needs.
_UNSUPPORTED = re.compile(
    r"NOT_IMPLEMENTED|Could not find an implementation|is not a registered function/op|"
    r"opset .*(not supported|under development)|Unsupported model IR version|"
    r"No opset import for domain|is not supported|Unrecognized attribute|"
    r"domain_version of \d+ is not supported|only \*guarantees\* support",
    re.IGNORECASE,
)


@dataclass
class DataSetResult:
    name: str
    outputs: list[OutputComparison] = field(default_factory=list)
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "passed" if self.outputs and all(o.passed for o in self.outputs) else "mismatch"

    def as_dict(self, *, errors: bool = False) -> dict[str, Any]:
        """``errors``: keep each output's bounded error summary (for the HTML report across the pool's pipe)."""
        return {"name": self.name, "status": self.status, "error": self.error,
                "outputs": [o.as_dict(errors=errors) for o in self.outputs]}


@dataclass
class ModelResult:
    name: str
    model_path: str
    status: str
    reason: str | None = None
    sha256: str | None = None
    tolerances: dict[str, float] = field(default_factory=dict)
    data_sets: list[DataSetResult] = field(default_factory=list)
    cache_hit: bool | None = None
    local_path: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def verdict(self) -> str:
        """The shared verdict (judge.report.VERDICTS); ``status`` keeps the zoo's finer reason."""
        return VERDICT_OF[self.status]

    def as_dict(self, *, errors: bool = False) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_path": self.model_path,
            "verdict": self.verdict,
            "status": self.status,
            "reason": self.reason,
            "sha256": self.sha256,
            "tolerances": self.tolerances,
            "cache_hit": self.cache_hit,
            "local_path": self.local_path,
            "seconds": round(self.seconds, 4),
            "data_sets": [d.as_dict(errors=errors) for d in self.data_sets],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelResult":
        """The inverse of :meth:`as_dict` (how a result crosses the zoo pool's pickle-free pipe)."""
        sets = [DataSetResult(s["name"], [OutputComparison(**o) for o in s.get("outputs", [])], s.get("error"))
                for s in d.get("data_sets", [])]
        return cls(d["name"], d["model_path"], d["status"], d.get("reason"), d.get("sha256"), d.get("tolerances") or {},
                   sets, d.get("cache_hit"), d.get("local_path"), float(d.get("seconds") or 0.0))



# -- reading test data by the graph's declared types -----------------------------------


def load_value(path: Path, type_proto: Any | None) -> Any:
    """A ``.pb`` file as the graph's type says: TensorProto, SequenceProto, OptionalProto or MapProto
    (as the ONNX backend test runner reads them)."""
    import onnx
    from onnx import numpy_helper

    data = path.read_bytes()
    which = type_proto.WhichOneof("value") if type_proto is not None else "tensor_type"
    if which == "sequence_type":
        proto = onnx.SequenceProto()
        proto.ParseFromString(data)
        return numpy_helper.to_list(proto)
    if which == "optional_type":
        proto = onnx.OptionalProto()
        proto.ParseFromString(data)
        return numpy_helper.to_optional(proto)
    if which == "map_type":
        proto = onnx.MapProto()
        proto.ParseFromString(data)
        return numpy_helper.to_dict(proto)
    proto = onnx.TensorProto()
    proto.ParseFromString(data)
    return numpy_helper.to_array(proto)


def _pb_files(directory: Path, prefix: str) -> list[Path]:
    def index(p: Path) -> int:
        m = re.search(r"_(\d+)\.pb$", p.name)
        return int(m.group(1)) if m else 0

    return sorted(directory.glob(f"{prefix}_*.pb"), key=index)


def read_data_set(directory: Path, inputs: list[Any], outputs: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Feeds and expected outputs, matched to the graph's inputs/outputs by position."""
    in_files, out_files = _pb_files(directory, "input"), _pb_files(directory, "output")
    if len(in_files) > len(inputs):
        raise ValueError(f"{len(in_files)} input files but the graph has {len(inputs)} inputs")
    feeds = {vi.name: load_value(f, vi.type) for vi, f in zip(inputs, in_files)}
    if len(out_files) != len(outputs):
        raise ValueError(f"{len(out_files)} output files but the graph has {len(outputs)} outputs")
    expected = {vi.name: load_value(f, vi.type) for vi, f in zip(outputs, out_files)}
    return feeds, expected


def _flatten(values: dict[str, Any]) -> dict[str, np.ndarray]:
    """Sequences and optionals as ``name[i]`` arrays, so the validator's comparison applies."""
    out: dict[str, np.ndarray] = {}
    for name, v in values.items():
        if isinstance(v, list):
            out[f"{name}.length"] = np.asarray(len(v), dtype=np.int64)
            for i, item in enumerate(v):
                out.update(_flatten({f"{name}[{i}]": item}))
        elif isinstance(v, dict):
            out[f"{name}.keys"] = np.asarray(sorted(v))
            for k in sorted(v):
                out.update(_flatten({f"{name}[{k!r}]": v[k]}))
        elif v is None:
            out[f"{name}.is_none"] = np.asarray(True)
        else:
            out[name] = np.asarray(v)
    return out


# -- one model -------------------------------------------------------------------------


class _FlatOutputs:
    """A runner whose outputs are flattened (sequences, maps, optionals -> ``name[i]`` arrays),
    so stored and computed values compare output by output."""

    def __init__(self, runner: Any):
        self.runner = runner
        self.provider, self.optimization = runner.provider, runner.optimization

    @property
    def providers_used(self) -> list[str]:
        return self.runner.providers_used

    def infer(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        return _flatten(self.runner.infer_values(feeds))


def _unsupported(error: str) -> bool:
    """ONNX Runtime's own wording for a valid model this runtime lacks an op, opset or IR version for."""
    return bool(_UNSUPPORTED.search(error))


def verify_model_file(
    model_file: Path,
    data_dirs: list[Path],
    *,
    name: str,
    model_path: str = "",
    expected_sha: str | None = None,
    tolerances: dict[str, float] | None = None,
    threads: int | None = None,
    isolation: IsolationPolicy | None = None,
    pool: Any = None,
) -> ModelResult:
    """Checksum, external-data paths, ``onnx.checker`` (full), one ORT session, every data set.

    ONNX Runtime opens the model by its path (external data resolves next to it) and runs
    through :func:`onnxgate.judge.run_cases.run_cases`, in a worker of ``pool`` unless
    ``isolation`` says ``in_process`` (``verify_task`` does: its zoo worker is the boundary).
    """
    import onnx

    from onnxgate.model_zoo.manifest import external_data_files
    from onnxgate.judge.tolerances import TolerancePolicy

    start = time.perf_counter()
    tol = {"atol": ZOO_ATOL, "rtol": ZOO_RTOL, **(tolerances or {})}
    result = ModelResult(name, model_path, "passed", tolerances=tol, local_path=str(model_file))

    def done(status: str, reason: str | None = None) -> ModelResult:
        result.status, result.reason = status, reason
        result.seconds = time.perf_counter() - start
        return result

    result.sha256 = sha256_file(model_file)
    if expected_sha and result.sha256 != expected_sha:
        return done("load_failed", f"sha256 mismatch: the manifest says {expected_sha}, the model is {result.sha256}")
    try:
        external_data_files(model_file)
        onnx.checker.check_model(str(model_file), full_check=True)
        model = onnx.load(str(model_file), load_external_data=False)
    except OnnxgateError as exc:
        return done("load_failed", str(exc))
    except Exception as exc:
        return done("load_failed", f"onnx.checker: {one_line(exc, 500)}")
    spec = SessionSpec.of(model_file, options={"threads": threads} if threads else {},
                          isolation=isolation or IsolationPolicy(), label=repr(name))
    runner = OrtRunner(spec, pool=pool)
    try:
        runner.open()
    except RunError as exc:
        reason = str(exc).replace(f"Load model from {spec.model} failed:", "")
        if exc.kind == "load":
            return done("unsupported" if _unsupported(reason) else "load_failed", reason)
        return done("error", reason)
    if not data_dirs:
        return done("untested", "no test_data_set_N/ directories: nothing to compare against")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    cases, references, unreadable = [], {}, {}
    for d in data_dirs:
        try:
            feeds, expected = read_data_set(d, inputs, list(model.graph.output))
        except Exception as exc:
            unreadable[d.name] = f"cannot read {d.name}: {one_line(exc, 500)}"
            continue
        cases.append((d.name, feeds))
        references[d.name] = _flatten(expected)
    ran = {c.name: c for c in run_cases(
        _FlatOutputs(runner), cases, references, policy=TolerancePolicy(atol=tol["atol"], rtol=tol["rtol"]),
        explain=lambda case_name, feeds, exc: f"ONNX Runtime failed to run {case_name}: {exc}",
    )}
    for d in data_dirs:
        case = ran.get(d.name)
        ds = DataSetResult(d.name, error=unreadable.get(d.name))
        result.data_sets.append(ds)
        if case is None:
            continue
        ds.outputs, ds.error = case.outputs, case.error
        if case.error_kind == "run" and _unsupported(case.error or ""):
            return done("unsupported", ds.error)
    statuses = {ds.status for ds in result.data_sets}
    if "error" in statuses:
        return done("error", next(ds.error for ds in result.data_sets if ds.error))
    if "mismatch" in statuses:
        bad = next(ds for ds in result.data_sets if ds.status == "mismatch")
        problems = "; ".join(f"{o.name}: {'; '.join(o.problems)}" for o in bad.outputs if not o.passed)
        return done("mismatch", f"{bad.name}: {problems}")
    return done("passed")


def find_model_file(directory: Path, expected_sha: str | None) -> Path:
    """The ``.onnx`` file in an extracted archive: the one with the manifest's sha256, else model.onnx, else the only one."""
    candidates = sorted(p for p in directory.rglob("*.onnx") if p.is_file())
    if not candidates:
        raise OnnxgateError("the archive holds no .onnx file", "the archive is incomplete")
    if expected_sha:
        for p in candidates:
            if sha256_file(p) == expected_sha:
                return p
    named = [p for p in candidates if p.name == "model.onnx"]
    if len(named) == 1 or len(candidates) == 1:
        return (named or candidates)[0]
    raise OnnxgateError(f"the archive holds {len(candidates)} .onnx files and none has the manifest's sha256", "fix the archive")


def data_dirs_of(model_file: Path) -> list[Path]:
    def index(p: Path) -> int:
        m = re.search(r"(\d+)$", p.name)
        return int(m.group(1)) if m else 0

    return sorted((p for p in model_file.parent.glob("test_data_set_*") if p.is_dir()), key=index)


@dataclass(frozen=True)
class Task:
    """Everything a worker needs for one model: plain data, sent as JSON (:meth:`as_dict`)."""

    entry: dict
    manifest: str | None  # location the entry's paths resolve against; None for a local directory
    cache: str | None
    threads: int | None = None
    retries: int | None = None
    backoff: float | None = None
    fetch_timeout: float | None = None  # the download deadline (fetch.DEADLINE_S when None)
    isolation: IsolationPolicy | None = None  # where ONNX Runtime runs; None: in the process running the task


def task_to_dict(task: Task) -> dict[str, Any]:
    d = dataclasses.asdict(task)
    d["isolation"] = task.isolation.as_dict() if task.isolation is not None else None
    return d


def task_from_dict(d: dict[str, Any]) -> Task:
    iso = d.get("isolation")
    return Task(**{**d, "isolation": IsolationPolicy(**iso) if iso else None})


def verify_task(task: Task) -> ModelResult:
    """Fetch (through the cache) and verify one manifest entry; never raises for a model's own problems.

    Without ``task.isolation`` ONNX Runtime runs in the process running the task: a zoo
    worker (model_zoo/pool.py), which already fails alone and is bounded by ``--timeout``
    as a whole (fetch and checker included), or this process with ``--in-process``.
    """
    from onnxgate.model_zoo.fetch import Cache, ChecksumError, FetchError, resolve

    isolation = task.isolation or IsolationPolicy(in_process=True)
    entry, meta = task.entry, task.entry.get("metadata", {})
    name, model_path = entry["model"], entry["model_path"]
    tolerances = meta.get("tolerances") or {}
    start = time.perf_counter()

    def failed(status: str, reason: str, hit: bool | None = None) -> ModelResult:
        r = ModelResult(name, model_path, status, reason, tolerances={"atol": ZOO_ATOL, "rtol": ZOO_RTOL, **tolerances})
        r.cache_hit, r.seconds = hit, time.perf_counter() - start
        return r

    if task.manifest is None:  # a local zoo directory: verify in place
        model_file = Path(model_path)
        result = verify_model_file(
            model_file, data_dirs_of(model_file), name=name, model_path=model_path,
            expected_sha=meta.get("model_sha"), tolerances=tolerances, threads=task.threads, isolation=isolation,
        )
        return result
    kwargs = {k: v for k, v in (("retries", task.retries), ("backoff", task.backoff), ("deadline", task.fetch_timeout)) if v is not None}
    cache = Cache(Path(task.cache), **kwargs)  # type: ignore[arg-type]
    try:
        problems = _source_problems(task.manifest, meta, model_path)
        if problems:
            return failed("tampered", "; ".join(problems))
        if meta.get("model_with_data_path"):
            sha = meta.get("model_with_data_sha")
            if not sha:
                return failed("load_failed", "the manifest gives no model_with_data_sha: the download cannot be checked")
            got = cache.fetch(resolve(task.manifest, meta["model_with_data_path"]), sha256=sha, size=meta.get("model_with_data_bytes"))
            tree = cache.extract(got.path, sha)
            model_file = find_model_file(tree, meta.get("model_sha"))
            data_dirs = data_dirs_of(model_file)
            if meta.get("model_sha") and not _is_local(task.manifest):  # the file a hub client downloads
                cache.fetch(resolve(task.manifest, model_path), sha256=meta["model_sha"], size=meta.get("model_bytes"))
            problems = _archive_problems(task.manifest, meta, model_path, model_file)
            if problems:
                return failed("tampered", "; ".join(problems), got.hit)
        else:
            sha = meta.get("model_sha")
            if not sha:
                return failed("load_failed", "the manifest gives no model_sha: the download cannot be checked")
            got = cache.fetch(resolve(task.manifest, model_path), sha256=sha, size=meta.get("model_bytes"))
            model_file, data_dirs = got.path, []
    except ChecksumError as exc:
        return failed("tampered", exc.message)
    except FetchError as exc:
        return failed("load_failed", exc.message)
    except OnnxgateError as exc:
        return failed("load_failed", str(exc))
    result = verify_model_file(
        model_file, data_dirs, name=name, model_path=model_path,
        expected_sha=meta.get("model_sha"), tolerances=tolerances, threads=task.threads, isolation=isolation,
    )
    result.cache_hit = got.hit
    result.seconds = time.perf_counter() - start
    return result


def _is_local(manifest: str) -> bool:
    from onnxgate.model_zoo.fetch import is_url

    return not is_url(manifest) or manifest.lower().startswith("file://")


def _source_problems(manifest: str, meta: dict, model_path: str) -> list[str]:
    """A local registry's ``model_path`` and archive, hashed where they lie (a cache hit proves nothing about them)."""
    from onnxgate.model_zoo.fetch import is_url, local_path, resolve
    from onnxgate.model_zoo.integrity import local_file_problems

    if not _is_local(manifest):
        return []
    problems = []
    named = [(model_path, meta.get("model_sha"), meta.get("model_bytes"))]
    if meta.get("model_with_data_path"):
        named.append((meta["model_with_data_path"], meta.get("model_with_data_sha"), meta.get("model_with_data_bytes")))
    for ref, sha, size in named:
        where = resolve(manifest, ref)
        if is_url(where) and not where.lower().startswith("file://"):
            continue  # an http(s) URL in a local manifest: the cache fetch checks it
        problems += local_file_problems(local_path(where), ref, sha=sha, size=size)
    return problems


def _archive_problems(manifest: str, meta: dict, model_path: str, model_file: Path) -> list[str]:
    """The archive's model is the manifest's; a local registry's loose test data is the archive's."""
    from onnxgate.model_zoo.fetch import local_path, resolve
    from onnxgate.model_zoo.integrity import archive_model_problems, loose_data_problems

    archive = meta["model_with_data_path"]
    problems = archive_model_problems(model_file, archive, sha=meta.get("model_sha"))
    if _is_local(manifest):
        loose_dir = local_path(resolve(manifest, model_path)).parent
        problems += loose_data_problems(loose_dir, model_file.parent, Path(model_path).parent.as_posix())
    return problems
