"""A bounded reader of Universal Binary JSON, the format xgboost writes (``.ubj``, ``save_raw()``).

Only for auditing: the trees are read in Python, with every length checked against the
bytes that remain and the nesting depth capped, before xgboost's C++ parser sees them.
Typed arrays (``[$d#L...``), xgboost's node arrays, become numpy arrays without a copy
per element. Anything malformed raises :class:`UBJSONError` naming the byte offset.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

MAX_DEPTH = 64
_SCALARS = {b"i": ">i1", b"U": ">u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4", b"D": ">f8"}


class UBJSONError(ValueError):
    """The bytes are not well-formed UBJSON (or nest deeper than :data:`MAX_DEPTH`)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise UBJSONError(f"at byte {self.pos}: {n} bytes declared, {len(self.data) - self.pos} remain")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def marker(self) -> bytes:
        return bytes(self.take(1))

    def peek(self) -> bytes:
        return bytes(self.data[self.pos:self.pos + 1])

    def scalar(self, m: bytes) -> Any:
        fmt = _SCALARS.get(m)
        if fmt is None:
            raise UBJSONError(f"at byte {self.pos - 1}: {m!r} is not a number marker")
        value = np.frombuffer(self.take(np.dtype(fmt).itemsize), dtype=fmt)[0]
        return value.item()

    def length(self) -> int:
        n = self.scalar(self.marker())
        if not isinstance(n, int) or n < 0:
            raise UBJSONError(f"at byte {self.pos}: length {n!r} is not a non-negative integer")
        return n

    def string(self) -> str:
        try:
            return bytes(self.take(self.length())).decode("utf-8")
        except UnicodeDecodeError:
            raise UBJSONError(f"at byte {self.pos}: a string is not UTF-8") from None

    def value(self, m: bytes, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise UBJSONError(f"at byte {self.pos}: nested deeper than {MAX_DEPTH}")
        if m in _SCALARS:
            return self.scalar(m)
        if m == b"S" or m == b"H":
            return self.string()
        if m == b"C":
            return bytes(self.take(1)).decode("latin-1")
        if m in (b"T", b"F", b"Z"):
            return {b"T": True, b"F": False, b"Z": None}[m]
        if m == b"[":
            return self.array(depth)
        if m == b"{":
            return self.object(depth)
        raise UBJSONError(f"at byte {self.pos - 1}: unknown marker {m!r}")

    def container_header(self) -> tuple[bytes | None, int | None]:
        kind = None
        if self.peek() == b"$":
            self.take(1)
            kind = self.marker()
            if self.peek() != b"#":
                raise UBJSONError(f"at byte {self.pos}: a typed container without a count")
        count = None
        if self.peek() == b"#":
            self.take(1)
            count = self.length()
        return kind, count

    def array(self, depth: int) -> Any:
        kind, count = self.container_header()
        if kind in _SCALARS and count is not None:
            dtype = np.dtype(_SCALARS[kind])
            return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype)
        items = []
        while count is None or len(items) < count:
            m = kind or self.marker()
            if count is None and m == b"]":
                return items
            if count is not None and len(items) >= len(self.data):
                raise UBJSONError(f"at byte {self.pos}: {count} items declared")
            items.append(self.value(m, depth + 1))
        return items

    def object(self, depth: int) -> dict[str, Any]:
        kind, count = self.container_header()
        out: dict[str, Any] = {}
        while count is None or len(out) < count:
            if count is None and self.peek() == b"}":
                self.take(1)
                return out
            key = self.string()
            out[key] = self.value(kind or self.marker(), depth + 1)
        return out


def loads(data: bytes) -> Any:
    """The value UBJSON ``data`` holds; raises :class:`UBJSONError` on anything malformed."""
    reader = _Reader(data)
    try:
        value = reader.value(reader.marker(), 0)
    except struct.error as exc:  # pragma: no cover - np.frombuffer checks sizes first
        raise UBJSONError(str(exc)) from None
    return value
