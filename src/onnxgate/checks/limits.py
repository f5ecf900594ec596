"""Resource bounds: refuse what cannot fit before allocating it.

A file someone else wrote can declare a 100-billion-element tensor, hold a
protobuf larger than this machine's memory, or carry a sample of 10^8 rows. Each
is refused here, early, with a one-line error (exit 2), instead of an allocation
failure or the kernel's OOM killer halfway through. Sizes come from headers and
declarations (``.npy`` headers, zip members, TensorProto dims, graph shapes),
never from loading the data. The memory budget is what ``/proc/meminfo`` calls
``MemAvailable`` (or ``sysconf`` elsewhere); ``ONNXGATE_MEMORY_LIMIT=BYTES``
overrides it, e.g. to keep a CI job well inside its container.

External data: every tensor stored outside the model must name a relative path
inside the model's directory; anything else (absolute paths, ``..``, symlinks
out) is refused before ``onnx.load_external_data`` or ONNX Runtime can read it.
"""

from __future__ import annotations

import os
import zipfile
from math import prod
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from onnxgate.errors import ModelFileError, SampleError

MEMORY_ENV = "ONNXGATE_MEMORY_LIMIT"
MAX_SAMPLE_ROWS = 1_000_000  # validation needs hundreds of rows; millions only cost time and memory
PARSE_OVERHEAD = 3  # bytes of memory per byte of protobuf while parsing (the bytes, the message, a copy)

# TensorProto.DataType -> bytes per element (strings counted as pointers)
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1, 24: 1, 25: 1}


def available_memory() -> int:
    """Bytes this process may reasonably allocate: the override, else MemAvailable, else free pages."""
    override = os.environ.get(MEMORY_ENV)
    if override:
        try:
            return max(0, int(float(override)))
        except ValueError:
            raise ModelFileError(f"{MEMORY_ENV}={override!r} is not a number of bytes", f"set e.g. {MEMORY_ENV}=8e9") from None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# -- ONNX files ---------------------------------------------------------------------------


def check_model_size(size: int, what: str) -> None:
    """A protobuf must fit in memory several times over while it is parsed."""
    budget = available_memory()
    if size * PARSE_OVERHEAD > budget:
        raise ModelFileError(
            f"{what} is {_gb(size)}; parsing it needs about {_gb(size * PARSE_OVERHEAD)} and {_gb(budget)} is available",
            f"run on a machine with more memory, or raise {MEMORY_ENV} if this estimate is wrong",
        )


def _graphs(graph: Any) -> Iterator[Any]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto in the graph and its subgraphs: initializers, Constant values, attributes."""
    for g in _graphs(graph):
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def _declared_bytes(elem_type: int, dims: list[int]) -> int:
    return prod(max(d, 0) for d in dims) * _ITEMSIZE.get(elem_type, 8)


def check_declared_shapes(model: Any, what: str) -> None:
    """Refuse a model whose declared static shapes (inputs, outputs, initializers) exceed memory."""
    budget = available_memory()
    for g in _graphs(model.graph):
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
            if tt is None or not tt.HasField("shape"):
                continue
            dims = [d.dim_value for d in tt.shape.dim if d.HasField("dim_value")]
            if any(d < 0 for d in dims):
                raise ModelFileError(f"{what} declares a negative dimension for {vi.name!r}: {dims}", "re-export the model")
            need = _declared_bytes(tt.elem_type, dims)
            if need > budget:
                raise ModelFileError(
                    f"{what} declares {vi.name!r} with shape {dims} ({prod(dims):,} elements, {_gb(need)}); "
                    f"{_gb(budget)} of memory is available",
                    "fix the declared shape (use a symbolic batch axis) or run on a machine with more memory",
                )
    for t in _tensors(model.graph):
        need = _declared_bytes(t.data_type, list(t.dims))
        if any(d < 0 for d in t.dims) or need > budget:
            raise ModelFileError(
                f"{what} has a tensor {t.name!r} of shape {list(t.dims)} ({_gb(need)}); {_gb(budget)} of memory is available",
                "the file is corrupt or too large for this machine",
            )


def check_external_data(model: Any, base_dir: str | Path | None, what: str) -> list[Path]:
    """Every external-data location is a relative path inside ``base_dir``; returns the files."""
    from onnx import TensorProto

    files: list[Path] = []
    for t in _tensors(model.graph):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        if base_dir is None:
            raise ModelFileError(
                f"{what} keeps tensor {t.name!r} in external data {location!r}, but the model has no directory",
                "load the model from its file so that its external data can be found",
            )
        base = Path(base_dir).resolve()
        target = (base / location).resolve()
        if not location or os.path.isabs(location) or (target != base and base not in target.parents):
            raise ModelFileError(
                f"{what} points tensor {t.name!r} at external data {location!r}, outside the model's directory",
                "external data must be a relative path next to the model; re-export it with onnx.save(..., location=NAME)",
            )
        files.append(target)
    return files


# -- samples --------------------------------------------------------------------------------


def check_sample_array(shape: tuple[int, ...], dtype: np.dtype, what: str, *, rows_axis: bool = True) -> None:
    """Rows and bytes of a sample array, known from its header, before it is read."""
    rows = int(shape[0]) if shape else 1
    if rows_axis and rows > MAX_SAMPLE_ROWS:
        raise SampleError(
            f"{what} has {rows:,} rows; onnxgate validates on at most {MAX_SAMPLE_ROWS:,}",
            "pass a smaller sample: a few hundred representative rows are enough",
        )
    need = prod(int(d) for d in shape) * max(int(dtype.itemsize), 1)
    budget = available_memory() // 4  # the sample, its casts and the outputs all live at once
    if need > budget:
        raise SampleError(
            f"{what} holds {_gb(need)} (shape {list(shape)}); {_gb(budget)} is the budget for a sample here",
            "pass a smaller sample",
        )


def npy_header(stream: Any, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without reading the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(stream)
        else:
            shape, _, dtype = fmt.read_array_header_2_0(stream)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise SampleError(f"cannot read {what} as .npy: {text[0] if text else type(exc).__name__}", "save it with numpy.save") from None
    return tuple(int(d) for d in shape), np.dtype(dtype)


def check_npy_file(path: Path) -> None:
    with open(path, "rb") as f:
        shape, dtype = npy_header(f, repr(str(path)))
    check_sample_array(shape, dtype, repr(str(path)))


def check_npz_file(path: Path) -> None:
    """Each member's header, read from the zip stream: a compressed bomb is refused before inflating."""
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as member:
                    what = f"{str(path)!r}[{info.filename[:-4]}]"
                    shape, dtype = npy_header(member, what)
                check_sample_array(shape, dtype, what)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise SampleError(f"cannot read {str(path)!r} as .npz: {exc}", "save it with numpy.savez") from None


def check_csv_rows(path: Path) -> None:
    """Count lines without parsing them (a CSV row costs far more parsed than on disk)."""
    lines = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            lines += chunk.count(b"\n")
            if lines > MAX_SAMPLE_ROWS + 1:
                raise SampleError(
                    f"{str(path)!r} has more than {MAX_SAMPLE_ROWS:,} rows; onnxgate validates on at most {MAX_SAMPLE_ROWS:,}",
                    "pass a smaller sample: a few hundred representative rows are enough",
                )


def check_tensor_proto(tensor: Any, what: str) -> None:
    """A TensorProto's declared dims, before numpy_helper.to_array allocates them."""
    if tensor.data_location == 1:  # TensorProto.EXTERNAL: to_array would read a path relative to the cwd
        raise SampleError(f"{what} keeps its data in an external file", "write the tensor with its data inline")
    dims = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in dims):
        raise SampleError(f"{what} declares a negative dimension {list(dims)}", "re-write the tensor")
    itemsize = _ITEMSIZE.get(int(tensor.data_type), 8)
    check_sample_array(dims, np.dtype(f"V{itemsize}"), what, rows_axis=False)


# -- model archives (.skops, .keras, .pt2) ------------------------------------------------------------

JSON_OVERHEAD = 10  # bytes of memory per byte of JSON while it is parsed into Python objects


def check_archive(path: Path, what: str, *, json_members: tuple[str, ...] = ()) -> None:
    """Inflated sizes of a zip archive, from its directory and each ``.npy`` header, before any
    member is inflated: a small file whose arrays or JSON inflate past memory is refused."""
    budget = available_memory()
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = 0
            for info in infos:
                need = info.file_size * (JSON_OVERHEAD if info.filename in json_members else 1)
                if info.filename.endswith(".npy"):
                    with z.open(info) as member:
                        shape, dtype = npy_header(member, f"{what}[{info.filename}]")
                    need = max(need, prod(shape) * max(int(dtype.itemsize), 1))
                if need > budget:
                    raise ModelFileError(
                        f"{what} member {info.filename!r} inflates to {_gb(need)}; {_gb(budget)} of memory is available",
                        f"the file is corrupt or hostile (a zip bomb); raise {MEMORY_ENV} only if you trust it",
                    )
                total += need
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, SampleError) as exc:
        raise ModelFileError(f"{what} is not a readable zip archive: {exc}", "re-save the model") from None
    if total > budget:
        raise ModelFileError(
            f"{what} inflates to {_gb(total)} in all; {_gb(budget)} of memory is available",
            f"the file is corrupt or hostile (a zip bomb); raise {MEMORY_ENV} only if you trust it",
        )
