"""ONNX model hub manifests (``ONNX_HUB_MANIFEST.json``): build entries, read, merge.

The schema is the one ``onnx.hub`` reads and onnx/models publishes: a JSON list of
entries with ``model``, ``model_path``, ``onnx_version``, ``opset_version`` and
``metadata`` (``model_sha``, ``model_bytes``, ``tags``, ``io_ports``,
``model_with_data_path``, ``model_with_data_sha``, ``model_with_data_bytes``).
onnxgate adds two optional keys that other readers ignore: ``metadata.tolerances``
(``atol``/``rtol`` from a ``data.json`` beside the model, as in the ONNX backend
test data) and ``metadata.onnxgate`` (provenance of a published model).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Sequence

from onnxgate._io import sha256_file, write_atomic
from onnxgate.errors import ModelFileError, OnnxgateError

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"
MODEL_FILE = "model.onnx"
TOLERANCE_FILE = "data.json"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(OnnxgateError):
    """A manifest is missing, unreadable or does not follow the ONNX hub schema."""


# -- building entries ------------------------------------------------------------------


def _type_string(t: Any) -> str:
    """ONNX Runtime's spelling of a type: ``tensor(float)``, ``seq(tensor(int64))``, ``map(int64,tensor(float))``."""
    import onnx

    which = t.WhichOneof("value")
    if which == "tensor_type":
        return f"tensor({onnx.TensorProto.DataType.Name(t.tensor_type.elem_type).lower()})"
    if which == "sequence_type":
        return f"seq({_type_string(t.sequence_type.elem_type)})"
    if which == "map_type":
        key = onnx.TensorProto.DataType.Name(t.map_type.key_type).lower()
        return f"map({key},{_type_string(t.map_type.value_type)})"
    if which == "optional_type":
        return f"optional({_type_string(t.optional_type.elem_type)})"
    if which == "sparse_tensor_type":
        return f"sparse_tensor({onnx.TensorProto.DataType.Name(t.sparse_tensor_type.elem_type).lower()})"
    return str(which)


def _port(vi: Any) -> dict[str, Any]:
    shape: list[Any] = []
    t = vi.type
    if t.WhichOneof("value") == "tensor_type" and t.tensor_type.HasField("shape"):
        for d in t.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or None)
    return {"name": vi.name, "shape": shape, "type": _type_string(t)}


def io_ports(model: Any) -> dict[str, list[dict[str, Any]]]:
    """Graph inputs (initializers excluded) and outputs, as the hub manifest lists them."""
    initializers = {i.name for i in model.graph.initializer}
    return {
        "inputs": [_port(i) for i in model.graph.input if i.name not in initializers],
        "outputs": [_port(o) for o in model.graph.output],
    }


def onnx_release_for(opset: int | None) -> str | None:
    """The first ONNX release that knows ``opset`` (the hub's ``onnx_version`` field)."""
    if opset is None:
        return None
    from onnx.helper import VERSION_TABLE

    for release, _ir, ai_onnx, *_ in VERSION_TABLE:
        if ai_onnx >= opset:
            return ".".join(release.split(".")[:2])
    return None


def read_tolerances(model_dir: Path) -> dict[str, float] | None:
    """``atol``/``rtol`` from ``data.json`` beside the model, if there is one."""
    p = Path(model_dir) / TOLERANCE_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    except RecursionError:
        raise ManifestError(f"cannot read {str(p)!r}: nested too deeply", "it must be JSON like {\"atol\": 1e-7, \"rtol\": 1e-3}") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {str(p)!r}: {exc}", "it must be JSON like {\"atol\": 1e-7, \"rtol\": 1e-3}") from None
    out: dict[str, float] = {}
    for key in ("atol", "rtol"):
        if key in data:
            value = data[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ManifestError(f"{str(p)!r}: {key} must be a non-negative number, got {value!r}", "fix data.json")
            out[key] = float(value)
    return out or None


def external_data_files(model_path: Path) -> list[Path]:
    """Files that ``model_path``'s external-data tensors point to; each must stay inside its directory."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model_dir = model_path.parent.resolve()
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{str(model_path)!r} is not a valid ONNX model: {type(exc).__name__}", "re-export it") from None
    files: list[Path] = []
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        files.append(check_external_location(model_dir, location, tensor.name))
    return sorted(set(files))


def check_external_location(model_dir: Path, location: str, tensor: str) -> Path:
    """Resolve an external-data location, refusing anything that leaves ``model_dir``."""
    bad = not location or os.path.isabs(location) or ".." in Path(location).parts or location.startswith(("/", "\\"))
    target = (model_dir / location).resolve()
    if bad or not target.is_relative_to(model_dir.resolve()):
        raise ModelFileError(
            f"tensor {tensor!r} keeps its data at {location!r}, outside the model's directory",
            "external data must be a relative path inside the model directory",
        )
    return target


def _safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "model"


def _tar_add_file(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = path.stat().st_size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as f:
        tar.addfile(info, f)


def _tar_add_dir(tar: tarfile.TarFile, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.type = tarfile.DIRTYPE
    info.mtime = 0
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info)


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise ManifestError(
            f"{str(path)!r} is a symbolic link (to {os.readlink(path)!r}): zoo index never follows links",
            "replace the link with the files themselves (git can commit a link; a published zoo must not)",
        )


def _data_set_files(data_set: Path, model_dir: Path) -> list[Path]:
    """The regular files under one ``test_data_set_N/``, walked without following links; a link is refused."""
    _refuse_link(data_set)
    files: list[Path] = []
    for here, dirs, names in os.walk(data_set, followlinks=False):
        for name in dirs + names:
            p = Path(here) / name
            _refuse_link(p)
            if not (p.is_dir() or p.is_file()):
                raise ManifestError(f"{str(p)!r} is not a regular file", "a test data set holds .pb files only")
            if p.is_file():
                files.append(p)
    for f in files:
        if not f.resolve().is_relative_to(model_dir.resolve()):
            raise ManifestError(f"{str(f)!r} resolves outside {str(model_dir)!r}", "keep test data inside the model directory")
    return files


def archive_members(model_dir: Path) -> list[Path]:
    """What goes into a model's ``.tar.gz``: model.onnx, its external data, data.json, test_data_set_*/.

    Nothing is followed through a symbolic link, and nothing outside ``model_dir`` is packed.
    """
    model_path = model_dir / MODEL_FILE
    _refuse_link(model_path)
    files = [model_path, *external_data_files(model_path)]
    if (model_dir / TOLERANCE_FILE).is_file() or (model_dir / TOLERANCE_FILE).is_symlink():
        _refuse_link(model_dir / TOLERANCE_FILE)
        files.append(model_dir / TOLERANCE_FILE)
    for ds in sorted(p for p in model_dir.glob("test_data_set_*") if p.is_dir() or p.is_symlink()):
        files += _data_set_files(ds, model_dir)
    return sorted(set(files))


def write_archive(model_dir: Path, archive: Path, *, top: str) -> None:
    """A deterministic ``.tar.gz`` (sorted, mtime 0, uid 0): the same inputs give the same sha256."""
    model_dir = Path(model_dir)
    members = archive_members(model_dir)
    dirs = sorted({str(p.parent.relative_to(model_dir).as_posix()) for p in members} - {"."})
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".tmp", dir=archive.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    _tar_add_dir(tar, top)
                    for d in dirs:
                        _tar_add_dir(tar, f"{top}/{d}")
                    for f in members:
                        _tar_add_file(tar, f, f"{top}/{f.relative_to(model_dir).as_posix()}")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, archive)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def archive_name(name: str, version: str | None = None) -> str:
    """One stable archive name per version: ``NAME-VERSION.tar.gz`` as publish writes it, and, for a
    model indexed from a directory, its path in the zoo joined by ``-`` (``iris/1.0.0`` -> the same
    ``iris-1.0.0.tar.gz``), so indexing a published layout never adds a second archive."""
    parts = [*name.split("/"), *([str(version)] if version else [])]
    return "-".join(_safe_file_name(p) for p in parts if p) + ".tar.gz"


def model_entry(
    model_dir: Path,
    *,
    name: str,
    root: Path,
    tags: Sequence[str] = (),
    extra: dict | None = None,
    version: str | None = None,
    archive: bool = True,
    archive_dir: Path | None = None,
) -> dict:
    """One hub manifest entry for ``model_dir/model.onnx`` and its ``test_data_set_*/``.

    With ``archive`` (the default) it writes ``model_dir/`` :func:`archive_name` (version
    from ``version``, else ``extra["version"]``, else none: the name is the zoo path) holding the model
    and its test data, and records its path, sha256 and size as ``model_with_data_*``;
    ``archive_dir`` puts the archive there instead of into ``model_dir``.
    Paths are relative to ``root``, in posix form, as the hub expects.
    """
    import onnx

    from onnxgate.checks.model_file import opset_of

    model_dir, root = Path(model_dir), Path(root)
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise ModelFileError(f"{str(model_path)!r} does not exist", "a zoo model directory holds model.onnx")
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(
            f"{str(model_path)!r} is not a valid ONNX model ({type(exc).__name__})", "re-export it"
        ) from None
    opset = opset_of(model)
    metadata: dict[str, Any] = {
        "model_sha": sha256_file(model_path),
        "model_bytes": model_path.stat().st_size,
        "tags": list(tags),
        "io_ports": io_ports(model),
    }
    if archive:
        archive_path = (archive_dir or model_dir) / archive_name(name, version or (extra or {}).get("version"))
        archive_path.parent.mkdir(parents=True, exist_ok=True)
        write_archive(model_dir, archive_path, top=_safe_file_name(model_dir.name))
        metadata["model_with_data_path"] = _relative(archive_path, root)
        metadata["model_with_data_sha"] = sha256_file(archive_path)
        metadata["model_with_data_bytes"] = archive_path.stat().st_size
    tolerances = read_tolerances(model_dir)
    if tolerances:
        metadata["tolerances"] = tolerances
    if extra is not None:
        metadata["onnxgate"] = extra
    return {
        "model": name,
        "model_path": _relative(model_path, root),
        "onnx_version": onnx_release_for(opset),
        "opset_version": opset,
        "metadata": metadata,
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ManifestError(
            f"{str(path)!r} is not inside the manifest root {str(root)!r}", "put the models under the manifest's directory"
        ) from None


def find_models(directory: Path) -> list[Path]:
    """Model directories in zoo layout under ``directory``: every ``**/model.onnx``'s parent, sorted.

    Hidden directories (``.onnxgate-staging/``, ``.onnxgate-aside/``, ``.git/``) are not entered:
    a publish in progress or a swapped-out version is never a model of the zoo.
    """
    directory = Path(directory)
    found = []
    for here, dirs, names in os.walk(directory, followlinks=False):  # a linked directory is not entered
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if MODEL_FILE in names:
            p = Path(here) / MODEL_FILE
            if p.is_file() and not p.is_symlink():
                found.append(p.parent)
    return sorted(found)


# -- reading and validating ------------------------------------------------------------


def read_manifest(path_or_url: str | Path) -> list[dict]:
    """Read and validate a manifest from a path, ``file://`` or ``http(s)://`` URL."""
    text = _read_text(str(path_or_url))
    return parse_manifest(text, str(path_or_url))


def _read_text(location: str) -> str:
    if re.match(r"^https?://", location):
        from onnxgate.model_zoo.fetch import FetchError, download_bytes

        try:
            data = download_bytes(location)
        except FetchError as exc:
            raise ManifestError(f"cannot download manifest {location!r}: {exc.message}", "check the URL") from None
    else:
        from onnxgate.model_zoo.fetch import local_path

        p = local_path(location)
        if p.is_dir():
            p = p / MANIFEST_NAME
        if not p.is_file():
            raise ManifestError(f"manifest {str(p)!r} does not exist", f"pass an {MANIFEST_NAME} path or URL")
        data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {location!r} is not UTF-8 text", "pass an ONNX_HUB_MANIFEST.json file") from None


def parse_manifest(text: str, what: str = "manifest") -> list[dict]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{what!r} is not valid JSON: {exc}", "fix or regenerate it with 'onnxgate zoo index'") from None
    except RecursionError:
        raise ManifestError(f"{what!r} is not a manifest: its JSON is nested too deeply", "a manifest is a list of flat entries") from None
    if not isinstance(data, list):
        raise ManifestError(f"{what!r} must be a JSON list of model entries, got {type(data).__name__}", "see onnx/models' ONNX_HUB_MANIFEST.json")
    for i, entry in enumerate(data):
        validate_entry(entry, f"{what} entry {i}")
    return data


def validate_entry(entry: Any, where: str) -> None:
    """Check one entry against the hub schema; raise :class:`ManifestError` naming the key."""

    def bad(msg: str) -> ManifestError:
        return ManifestError(f"{where}: {msg}", "fix the manifest or regenerate it with 'onnxgate zoo index'")

    if not isinstance(entry, dict):
        raise bad(f"expected an object, got {type(entry).__name__}")
    for key in ("model", "model_path"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise bad(f"{key!r} must be a non-empty string")
    opset = entry.get("opset_version")
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool)):
        raise bad(f"'opset_version' must be an integer, got {opset!r}")
    meta = entry.get("metadata")
    if not isinstance(meta, dict):
        raise bad("'metadata' must be an object")
    for key in ("model_sha", "model_with_data_sha"):
        if key in meta and not (isinstance(meta[key], str) and _SHA_RE.match(meta[key])):
            raise bad(f"metadata.{key} must be 64 lowercase hex digits (sha256), got {meta[key]!r}")
    for key in ("model_bytes", "model_with_data_bytes"):
        if key in meta and (not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0):
            raise bad(f"metadata.{key} must be a non-negative integer, got {meta[key]!r}")
    if "model_with_data_path" in meta and not isinstance(meta["model_with_data_path"], str):
        raise bad("metadata.model_with_data_path must be a string")
    tags = meta.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad("metadata.tags must be a list of strings")
    tol = meta.get("tolerances")
    if tol is not None:
        if not isinstance(tol, dict) or not all(
            k in ("atol", "rtol") and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for k, v in tol.items()
        ):
            raise bad("metadata.tolerances must be an object with non-negative 'atol'/'rtol' numbers")


# -- writing ---------------------------------------------------------------------------


def merge_entries(existing: list[dict], entries: list[dict]) -> list[dict]:
    """Replace entries with the same (model, model_path), keep the order, append new ones."""
    new = {(e["model"], e["model_path"]): e for e in entries}
    merged = [new.pop((e["model"], e["model_path"]), e) for e in existing]
    return merged + list(new.values())


def dumps(entries: list[dict]) -> str:
    return json.dumps(entries, indent=2, sort_keys=False) + "\n"


def lock_path(manifest_path: Path) -> Path:
    """The lock writers of ``manifest_path`` take: hidden (``.ONNX_HUB_MANIFEST.json.lock``), so a
    server of the registry directory need not list it and no index ever sees it."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f".{manifest_path.name}.lock")


def update_manifest(manifest_path: Path, entries: list[dict]) -> None:
    """Merge ``entries`` into the manifest at ``manifest_path`` (created if missing).

    Writers take an exclusive lock on :func:`lock_path` and replace the file
    atomically, so concurrent publishers never lose each other's entries and readers
    see the old manifest or the new one, never half of one.
    """
    manifest_path = Path(manifest_path)
    for i, e in enumerate(entries):
        validate_entry(e, f"new entry {i}")
    from onnxgate._io import locked

    with locked(lock_path(manifest_path)):
        existing = read_manifest(manifest_path) if manifest_path.exists() else []
        write_atomic(manifest_path, dumps(merge_entries(existing, entries)))


def index_directory(directory: Path, *, output: Path | None = None, progress: Any = None) -> list[dict]:
    """Entries for every zoo-layout model under ``directory``; paths relative to the manifest's directory.

    A directory whose manifest onnxgate's publish wrote keeps its entries as they are (names,
    versions, tags, provenance), rebased onto the output's directory; see :func:`preserved_entries`.
    Fresh archives go into the model directories only when the manifest goes into ``directory``
    itself; otherwise under ``<output stem>-archives/`` beside it, so ``directory`` is not written.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ManifestError(f"{str(directory)!r} is not a directory", "pass a directory of */model.onnx + test_data_set_N/")
    root = Path(output).parent if output is not None else directory
    models = find_models(directory)
    if not models:
        raise ManifestError(f"no */model.onnx under {str(directory)!r}", "a zoo directory holds NAME/model.onnx + NAME/test_data_set_N/")
    published = published_entries(directory)
    if published is not None:
        return preserved_entries(directory, published, models, root)
    outside = root.resolve() != directory.resolve()
    entries = []
    for model_dir in models:
        rel = model_dir.relative_to(directory).as_posix()
        name = model_dir.name if rel == "." else rel
        tags = [p for p in Path(rel).parts[:-1]] if rel != "." else []
        archive_dir = root / f"{Path(output).stem}-archives" / directory.resolve().relative_to(root.resolve()) / rel if outside and output else None
        step = progress.step(f"indexing {name}") if progress is not None else contextlib.nullcontext()
        with step:
            entries.append(model_entry(model_dir, name=name, root=root, tags=tags, archive_dir=archive_dir))
    return entries


def published_entries(directory: Path) -> list[dict] | None:
    """The entries of ``directory``'s manifest when onnxgate's publish wrote it (an entry has ``metadata.onnxgate``)."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    entries = read_manifest(path)
    return entries if any("onnxgate" in e["metadata"] for e in entries) else None


def preserved_entries(directory: Path, entries: list[dict], models: list[Path], root: Path) -> list[dict]:
    """A publish manifest's entries, unchanged but for paths rebased onto ``root``; nothing is written.

    Indexing must not lose what publish recorded, nor bless files that no longer match it: a
    model directory the manifest does not list, or a listed file whose bytes changed, is refused.
    """
    manifest = Path(directory) / MANIFEST_NAME
    listed = {(Path(directory) / e["model_path"]).parent.resolve() for e in entries if not _is_remote(e["model_path"])}
    unlisted = [m for m in models if m.resolve() not in listed]
    if unlisted:
        raise ManifestError(
            f"{str(manifest)!r} was written by onnxgate publish and does not list {str(unlisted[0])!r}",
            "publish it with 'onnxgate run ... --publish DIR', or index a copy of DIR without that manifest",
        )
    out = []
    for e in entries:
        problems = _listed_file_problems(Path(directory), e)
        if problems:
            raise ManifestError(
                f"{str(manifest)!r} was written by onnxgate publish and {problems[0]}",
                "run 'onnxgate zoo verify DIR' and republish that version with --force",
            )
        out.append(_rebased(e, Path(directory), root))
    return out


def _is_remote(ref: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", ref)) or os.path.isabs(ref)


def _listed_file_problems(directory: Path, entry: dict) -> list[str]:
    from onnxgate.model_zoo.integrity import local_file_problems

    meta = entry["metadata"]
    named = [(entry["model_path"], meta.get("model_sha"), meta.get("model_bytes"))]
    if meta.get("model_with_data_path"):
        named.append((meta["model_with_data_path"], meta.get("model_with_data_sha"), meta.get("model_with_data_bytes")))
    problems = []
    for ref, sha, size in named:
        if not _is_remote(ref):
            problems += local_file_problems(directory / ref, ref, sha=sha, size=size)
    return problems


def _rebased(entry: dict, directory: Path, root: Path) -> dict:
    """A copy of ``entry`` (same keys, same order) whose relative paths resolve from ``root`` instead of ``directory``."""
    import copy

    e = copy.deepcopy(entry)
    if not _is_remote(e["model_path"]):
        e["model_path"] = _relative(directory / e["model_path"], root)
    meta = e["metadata"]
    if meta.get("model_with_data_path") and not _is_remote(meta["model_with_data_path"]):
        meta["model_with_data_path"] = _relative(directory / meta["model_with_data_path"], root)
    return e
