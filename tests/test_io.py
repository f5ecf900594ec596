"""Output files: atomic for regular files, written through for links and devices."""

from __future__ import annotations

import os
import threading

import pytest

from onnxgate._io import check_output_path, write_atomic
from onnxgate.errors import OutputPathError


def test_regular_file_is_replaced_atomically(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temp file left


def test_symlink_is_written_through_not_replaced(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    assert check_output_path(fifo) == fifo
    write_atomic(fifo, "through")
    reader.join(5)
    assert got == ["through"] and not fifo.is_file()


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "r.json")
