"""Load the shared inputs: ``.npy``, ``.npz``, ``.csv``, ``.txt``, ``.json`` or a ``test_data_set_N/`` directory.

``.txt`` is one document per line (UTF-8) for text models; ``.json`` is a list of strings
(documents, labels), of numbers (labels), of equal-length lists of strings (rows of tokens) or
of objects (a DictVectorizer's rows: :func:`_json_mappings`).

A :class:`Sample` is raw data as the user gave it; the converter maps it onto the
ONNX input names (``Converter.feeds``). Every read error is a :class:`SampleError`
with the path and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxgate.errors import SampleError
from onnxgate.checks import limits

MAX_SAMPLE_BYTES = 2 * 1024**3  # refuse samples that would not fit comfortably in memory
MAX_TEXT_BYTES = 64 * 1024**2  # .txt/.json: parsed into Python objects first, several times their size


@dataclass
class Sample:
    """Inputs as given. ``kind``: "array" (one unnamed array), "named" (arrays by name), "table" (CSV columns)."""

    kind: str
    arrays: dict[str, np.ndarray]
    path: str | None = None

    @property
    def rows(self) -> int:
        first = next(iter(self.arrays.values()))
        return int(first.shape[0]) if first.ndim else 1

    def describe(self) -> str:
        parts = [f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.arrays.items()]
        return f"{self.kind} sample ({', '.join(parts)})"


def load_sample(path: str | Path) -> Sample:
    p = Path(path)
    if not p.exists():
        raise SampleError(f"sample {str(p)!r} does not exist", "check the --sample path")
    if p.is_dir():
        return _load_test_data_dir(p)
    size = p.stat().st_size
    if size > MAX_SAMPLE_BYTES:
        raise SampleError(f"sample {str(p)!r} is {size / 1e9:.1f} GB", "pass a smaller sample (a few hundred rows)")
    suffix = p.suffix.lower()
    loaders = {".npy": _load_npy, ".npz": _load_npz, ".csv": _load_csv, ".pb": _load_pb_file, ".txt": _load_txt,
               ".json": _load_json}
    if suffix not in loaders:
        raise SampleError(
            f"sample {str(p)!r} has an unsupported type {suffix or '(none)'!r}",
            "expected one of .npy, .npz, .csv, .txt, .json, .pb or a test_data_set_N/ directory",
        )
    return loaders[suffix](p)


def _load_npy(p: Path) -> Sample:
    limits.check_npy_file(p)
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise SampleError(f"cannot read {str(p)!r} as .npy: {_first_line(exc)}", "save it with numpy.save") from None
        raise SampleError(
            f"{str(p)!r} holds Python objects (dtype object): reading it needs pickle, which onnxgate refuses",
            "save strings with numpy.save(path, numpy.asarray(values, dtype=str))",
        ) from None
    except Exception as exc:
        raise SampleError(f"cannot read {str(p)!r} as .npy: {_first_line(exc)}", "save it with numpy.save") from None
    _check_array(arr, p.name)
    return Sample("array", {"input": arr}, str(p))


def _load_npz(p: Path) -> Sample:
    limits.check_npz_file(p)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise SampleError(f"cannot read {str(p)!r} as .npz: {_first_line(exc)}", "save it with numpy.savez") from None
    if not arrays:
        raise SampleError(f"{str(p)!r} holds no arrays", "save one array per model input with numpy.savez")
    for k, v in arrays.items():
        _check_array(v, f"{p.name}[{k}]")
    return Sample("named", arrays, str(p))


def _check_array(arr: np.ndarray, what: str) -> None:
    if arr.dtype == object:
        raise SampleError(f"{what} holds Python objects", "save plain numeric or string arrays")
    if arr.size == 0:
        raise SampleError(f"{what} is empty", "pass at least one row")


def _load_csv(p: Path) -> Sample:
    limits.check_csv_rows(p)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise SampleError(f"cannot read {str(p)!r} as CSV: {_first_line(exc)}", "save it as UTF-8 CSV with a header") from None
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise SampleError(f"{str(p)!r} needs a header row and at least one data row", "save it with a header")
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header) or any(not h.strip() for h in header):
        raise SampleError(f"{str(p)!r} has empty or repeated column names: {header}", "name every column once")
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise SampleError(
                f"{str(p)!r} line {i} has {len(r)} fields; the header has {len(header)}",
                "fix the row or quote fields that contain commas",
            )
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        values = [r[j] for r in body]
        columns[name] = _column(values)
    return Sample("table", columns, str(p))


def _read_text(p: Path, kind: str) -> str:
    size = p.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise SampleError(f"{kind} sample {str(p)!r} is {size / 1e6:.0f} MB; onnxgate reads at most "
                          f"{MAX_TEXT_BYTES // 1024**2} MB of text", "pass a few hundred representative rows")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SampleError(f"{str(p)!r} is not UTF-8 (byte {exc.start}: {exc.reason})", "save it as UTF-8") from None


def _load_txt(p: Path) -> Sample:
    """One document per line; a final newline ends the last line rather than adding an empty one."""
    text = _read_text(p, ".txt")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    if not lines:
        raise SampleError(f"{str(p)!r} holds no lines", "write one document per line")
    arr = np.array(lines, dtype=str)
    limits.check_sample_array(arr.shape, arr.dtype, repr(str(p)))
    return Sample("array", {"input": arr}, str(p))


def _load_json(p: Path) -> Sample:
    """A JSON list: of strings or numbers (1-D), or of equal-length lists of strings (2-D)."""
    import json

    try:
        value = json.loads(_read_text(p, ".json"))
    except (ValueError, RecursionError) as exc:
        raise SampleError(f"cannot read {str(p)!r} as JSON: {_first_line(exc)}", "write a JSON list, one item per row") from None
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        arrays = _json_mappings(value, str(p))
        for arr in arrays.values():
            limits.check_sample_array(arr.shape, arr.dtype, repr(str(p)))
        return Sample("named", arrays, str(p))
    arr = _json_rows(value, str(p))
    _check_array(arr, p.name)
    limits.check_sample_array(arr.shape, arr.dtype, repr(str(p)))
    return Sample("array", {"input": arr}, str(p))


def _json_mappings(rows: list[dict], where: str) -> dict[str, np.ndarray]:
    """A list of objects as a DictVectorizer's ``keys``/``values`` arrays (converters/fixes/sklearn_dict.py):
    a number is its key's value; a string value is one-hot, as DictVectorizer makes it with its default
    separator: ``{"city": "Paris"}`` is key ``"city=Paris"``, value 1. Rows are padded with key "", value 0."""
    from onnxgate.converters.fixes.sklearn_dict import PAD_KEY, rows_to_tensors

    flat = []
    for n, row in enumerate(rows):
        entries: dict[str, float] = {}
        for key, v in row.items():
            kind = _json_kind(v)
            if kind not in ("int", "float", "str") or key == PAD_KEY:
                what = "an empty key" if key == PAD_KEY else f"a {type(v).__name__} value"
                raise SampleError(f"{where!r} row {n} key {key!r} holds {what}; each row is an object of string "
                                  "keys to numbers or strings",
                                  'flatten it: a list of strings becomes one key per string, e.g. "tags=a": 1')
            entries[f"{key}={v}" if kind == "str" else key] = 1.0 if kind == "str" else float(v)
        flat.append(entries)
    return rows_to_tensors(flat, np.float64)


def _json_rows(value: object, where: str) -> np.ndarray:
    hint = "write a list of strings, of numbers, or of equal-length lists of strings"
    if not isinstance(value, list) or not value:
        raise SampleError(f"{where!r} is not a non-empty JSON list", hint)
    kinds = {_json_kind(v) for v in value}
    if kinds <= {"int", "float"}:
        try:
            return np.array(value, dtype=np.int64 if kinds == {"int"} else np.float64)
        except OverflowError:
            raise SampleError(f"{where!r} holds an integer beyond int64", hint) from None
    if len(kinds) != 1 or kinds & {"other", "dict"}:
        raise SampleError(f"{where!r} mixes {sorted(kinds)} items", hint)
    if kinds == {"list"}:
        widths = {len(v) for v in value}
        if len(widths) != 1 or not all(isinstance(t, str) for v in value for t in v):
            raise SampleError(f"{where!r} holds lists of different lengths or of non-strings", hint)
    return np.array(value, dtype=str)


def _json_kind(v: object) -> str:
    if isinstance(v, bool):
        return "other"
    for kind, types in (("str", str), ("int", int), ("float", float), ("list", list), ("dict", dict)):
        if isinstance(v, types):
            return kind
    return "other"


_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*(nan|NaN|inf|-inf)?\s*$")


def _column(values: list[str]) -> np.ndarray:
    if all(_NUMBER.match(v) for v in values) and any(v.strip() for v in values):
        return np.array([float(v) if v.strip() else np.nan for v in values], dtype=np.float64)
    return np.array(values, dtype=object).astype(str)


def _load_pb_file(p: Path) -> Sample:
    name, arr = _read_tensor(p)
    return Sample("named", {name or "input": arr}, str(p))


def _read_tensor(p: Path) -> tuple[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(p.read_bytes())
        limits.check_tensor_proto(tensor, repr(str(p)))
        arr = numpy_helper.to_array(tensor)
    except SampleError:
        raise
    except Exception as exc:
        raise SampleError(
            f"cannot read {str(p)!r} as an ONNX TensorProto: {_first_line(exc)}",
            "write it with onnx.numpy_helper.from_array(...).SerializeToString()",
        ) from None
    return tensor.name, arr


def _pb_index(p: Path) -> int:
    m = re.search(r"_(\d+)\.pb$", p.name)
    return int(m.group(1)) if m else 0


def read_test_data_dir(p: Path, prefix: str) -> list[tuple[str, np.ndarray]]:
    """``input_N.pb`` or ``output_N.pb`` files of a model-zoo test data set, in N order."""
    files = sorted(p.glob(f"{prefix}_*.pb"), key=_pb_index)
    return [_read_tensor(f) for f in files]


def _load_test_data_dir(p: Path) -> Sample:
    tensors = read_test_data_dir(p, "input")
    if not tensors:
        raise SampleError(
            f"directory {str(p)!r} holds no input_N.pb files",
            "pass a model-zoo test_data_set_N/ directory, or a .npy/.npz/.csv file",
        )
    arrays = {(name or f"input_{i}"): arr for i, (name, arr) in enumerate(tensors)}
    return Sample("named", arrays, str(p))


def inputs_hash(feeds: dict[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the inputs, in name order."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.astype(str).tobytes() if a.dtype.kind in "OU" else a.tobytes())
    return h.hexdigest()


def take_rows(feeds: dict[str, np.ndarray], rows: slice | list[int]) -> dict[str, np.ndarray]:
    """The same rows of every input: used to run the model at more than one batch size."""
    return {k: v[rows] for k, v in feeds.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
