"""Shared fixtures: run the real CLI in-process or as a subprocess, build real models."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``onnxgate ARGS`` in-process through the real entry point; returns code/stdout/stderr."""
    from onnxgate.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_onnxgate(*args: str, env: dict | None = None, cwd: str | Path | None = None, timeout: float = 300) -> CliResult:
    """Run ``python -m onnxgate ARGS`` in a fresh interpreter."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "onnxgate", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def onnxgate_subprocess():
    return run_onnxgate


def _is_progress(line: str) -> bool:
    return line.startswith("onnxgate: ") and not line.startswith("onnxgate: error:") and (
        line.endswith(" ...") or re.search(r" done in [0-9.]+s$", line) is not None
    )


def assert_user_error(result: CliResult, *fragments: str) -> None:
    """Exit 2, exactly one error line on stderr, no traceback, and the fragments in it.

    Progress lines ("onnxgate: loading x ...", printed for steps slower than a second) may
    precede it on a slow machine; they are not part of the error.
    """
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [l for l in result.err.splitlines() if l.strip() and not _is_progress(l)]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
