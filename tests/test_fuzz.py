"""Fuzzing: malformed ONNX files and samples never take onnxgate down.

Hypothesis mutates a real ONNX file (a skl2onnx iris classifier) and real
``.npz``/``.npy``/``.csv`` samples: bit flips, truncation, spliced bytes, wrong
field types, huge dimensions, cyclic graphs, dangling inputs, external-data paths
pointing outside, odd opsets and attributes. Each case runs the real CLI
(``inspect`` and ``validate`` with a real ``.skops`` source), in this process, with
ONNX Runtime in its worker, and must end in a clean exit (0 when the mutation was
harmless, 1 for a failed check, 2 with one line on stderr): never a traceback, a
hang or a crash of this process.

Bounded in time: ``ONNXGATE_FUZZ_EXAMPLES`` (default 100 per strategy) sets how many
cases; ``ONNXGATE_FUZZ_STATS=FILE`` writes the figures (cases, distinct outcomes,
worst time per case); ``ONNXGATE_FUZZ_SAVE=1`` keeps the first case of each new
outcome in ``tests/fuzz_corpus/``, which :func:`test_corpus_replays_cleanly` replays.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).parent / "fuzz_corpus"
EXAMPLES = int(os.environ.get("ONNXGATE_FUZZ_EXAMPLES", "100"))
CASE_LIMIT_S = 30.0  # a case slower than this is a hang
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # timed by hand below: the first case pays for imports and the worker start
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATS: dict = {"cases": 0, "outcomes": {}, "worst_s": 0.0, "worst_case": None, "parent_crashes": 0}


@pytest.fixture(scope="module", autouse=True)
def fixed_memory_budget():
    """The same memory budget on every machine, so that the corpus replays with the same exit codes."""
    old = os.environ.get("ONNXGATE_MEMORY_LIMIT")
    os.environ["ONNXGATE_MEMORY_LIMIT"] = "8e9"
    yield
    if old is None:
        os.environ.pop("ONNXGATE_MEMORY_LIMIT", None)
    else:
        os.environ["ONNXGATE_MEMORY_LIMIT"] = old


# -- the real inputs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    d = tmp_path_factory.mktemp("fuzzbase")
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    sio.dump(model, d / "iris.skops")
    x = X[:12].astype(np.float32)
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    onx.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    (d / "iris.onnx").write_bytes(onx.SerializeToString())
    np.save(d / "x.npy", x)
    np.savez(d / "x.npz", X=x)
    lines = ["a,b,c,d"] + [",".join(f"{v:.2f}" for v in row) for row in x]
    (d / "x.csv").write_text("\n".join(lines) + "\n")
    return d


# -- running the CLI and judging the outcome ----------------------------------------------


def run_cli(*args: str) -> tuple[int, str, str]:
    """The real entry point, in this process, output captured. An uncaught exception is a bug."""
    from onnxgate.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["-q", *map(str, args)])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def outcome(code: int, out: str, err: str) -> str:
    """A short signature of what happened: the exit code and the message's words, numbers and paths removed."""
    text = err.strip().splitlines()[0] if err.strip() else (out.strip().splitlines() or [""])[0]
    if code == 1:
        errors = [l.split("ERROR", 1)[1] for l in out.splitlines() if " ERROR " in l]
        text = errors[0] if errors else text
    text = re.sub(r"\b[0-9a-f]{16,}\b", "_", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+|\[[^\]]*\]|\d+(\.\d+)?", "_", text)
    return f"{code}: {' '.join(text.split()[:10])}"


def check_clean(code: int, out: str, err: str, what: str) -> str:
    assert code in (0, 1, 2), (what, code, out, err)
    assert "Traceback" not in err and "Traceback" not in out, (what, err)
    if code == 2:
        lines = [l for l in err.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("onnxgate: error: "), (what, err)
    return outcome(code, out, err)


def judge(cmd: list[str], files: dict[str, bytes], base: Path, label: str) -> None:
    """Write ``files`` to a fresh directory, run ``cmd`` (``{dir}`` and ``{base}`` substituted), check it."""
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        for name, data in files.items():
            (work / name).write_bytes(data)
        args = [a.replace("{dir}", str(work)).replace("{base}", str(base)) for a in cmd]
        start = time.perf_counter()
        code, out, err = run_cli(*args)
        seconds = time.perf_counter() - start
        sig = check_clean(code, out, err, label)
        assert seconds < CASE_LIMIT_S, (label, seconds)
        STATS["cases"] += 1
        new = sig not in STATS["outcomes"]
        STATS["outcomes"][sig] = STATS["outcomes"].get(sig, 0) + 1
        if seconds > STATS["worst_s"]:
            STATS["worst_s"], STATS["worst_case"] = round(seconds, 3), label
        if new and os.environ.get("ONNXGATE_FUZZ_SAVE"):
            _save(files, cmd, code, label)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _save(files: dict[str, bytes], cmd: list[str], code: int, label: str) -> None:
    CORPUS.mkdir(exist_ok=True)
    index = CORPUS / "cases.json"
    cases = json.loads(index.read_text()) if index.exists() else []
    n = len(cases)
    names = {}
    for name, data in files.items():
        stored = f"{n:03d}-{name}"
        (CORPUS / stored).write_bytes(data)
        names[name] = stored
    cases.append({"label": label, "cmd": cmd, "files": names, "code": code})
    index.write_text(json.dumps(cases, indent=1) + "\n")


# -- mutations ------------------------------------------------------------------------------


def flip_bits(data: bytes, positions: list[int]) -> bytes:
    buf = bytearray(data)
    for p in positions:
        buf[p % len(buf)] ^= 1 << (p % 8)
    return bytes(buf)


BYTE_MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.integers(0, 1 << 20), min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("splice"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16))),
)


def mutate_bytes(data: bytes, m: tuple) -> bytes:
    kind, arg = m
    if kind == "flip":
        return flip_bits(data, arg)
    if kind == "truncate":
        return data[: int(len(data) * arg)]
    at, blob = arg
    i = int(len(data) * at)
    return data[:i] + blob + data[i:]


HUGE = st.sampled_from([0, 2**31 - 1, 2**31, 2**40, 2**62, 10**11, 10**6])
STRUCTURAL = st.sampled_from(
    ["elem_type", "huge_dim", "cycle", "dangling", "external", "opset", "ir_version", "attr_type",
     "op_type", "rename_input", "drop_outputs", "init_dims", "dup_output", "domain"]
)


def mutate_model(data: bytes, kind: str, draw) -> bytes:
    from onnx import AttributeProto, TensorProto, load_model_from_string

    m = load_model_from_string(data)
    g = m.graph
    if kind == "elem_type":
        vi = draw(st.sampled_from(list(g.input) + list(g.output)))
        vi.type.tensor_type.elem_type = draw(st.integers(0, 40))
    elif kind == "huge_dim":
        vi = draw(st.sampled_from(list(g.input) + list(g.output)))
        for d in vi.type.tensor_type.shape.dim:
            d.dim_value = draw(HUGE)
    elif kind == "cycle":
        first, last = g.node[0], g.node[-1]
        first.input[0] = last.output[0]
    elif kind == "dangling":
        node = draw(st.sampled_from(list(g.node)))
        if node.input:
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(["nowhere", "", "X "]))
    elif kind == "external":
        t = g.initializer[0] if g.initializer else None
        location = draw(st.sampled_from(["../outside.bin", "/etc/passwd", "sub/../../x.bin", "missing.bin", "", "."]))
        if t is None:
            for node in g.node:
                for a in node.attribute:
                    if a.HasField("t"):
                        t = a.t
        if t is not None:
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value=location)
    elif kind == "opset":
        m.opset_import[draw(st.integers(0, len(m.opset_import) - 1))].version = draw(
            st.sampled_from([-1, 0, 1, 7, 30, 999, 2**40])
        )
    elif kind == "ir_version":
        m.ir_version = draw(st.sampled_from([0, 1, 3, 99, 2**40]))
    elif kind == "attr_type":
        nodes = [n for n in g.node if n.attribute]
        if nodes:
            a = draw(st.sampled_from(nodes)).attribute[0]
            a.type = draw(st.sampled_from(sorted(AttributeProto.AttributeType.values())))  # a valid tag, the wrong one
    elif kind == "op_type":
        draw(st.sampled_from(list(g.node))).op_type = draw(st.sampled_from(["Nope", "", "Loop", "Conv", "If"]))
    elif kind == "rename_input":
        g.input[0].name = draw(st.sampled_from(["Y", "", "label"]))
    elif kind == "drop_outputs":
        del g.output[:]
    elif kind == "init_dims":
        if g.initializer:
            t = g.initializer[0]
            t.dims[:] = [draw(HUGE), draw(HUGE)]
    elif kind == "dup_output":
        g.node[-1].output[0] = g.node[0].output[0]
    elif kind == "domain":
        draw(st.sampled_from(list(g.node))).domain = draw(st.sampled_from(["com.evil", "ai.onnx.ml", ""]))
    return m.SerializeToString()


# -- the fuzz tests ---------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_fuzz_onnx_files(base, data):
    original = (base / "iris.onnx").read_bytes()
    if data.draw(st.booleans(), label="structural"):
        kind = data.draw(STRUCTURAL, label="mutation")
        mutated = mutate_model(original, kind, data.draw)
    else:
        m = data.draw(BYTE_MUTATIONS, label="mutation")
        kind, mutated = f"bytes:{m[0]}", mutate_bytes(original, m)
    files = {"m.onnx": mutated}
    judge(["inspect", "{dir}/m.onnx"], files, base, f"inspect {kind}")
    judge(["validate", "{base}/iris.skops", "{dir}/m.onnx", "--sample", "{base}/x.npy", "--timeout", "20"], files, base,
          f"validate {kind}")


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


SAMPLE_VALUES = st.sampled_from(
    ["nan", "inf", "huge", "strings", "ints", "3d", "1d", "empty", "wrong_key", "extra_key", "wide", "bool", "f16", "complex"]
)


def structured_sample(kind: str, x: np.ndarray) -> dict:
    return {
        "nan": {"X": np.full_like(x, np.nan)},
        "inf": {"X": np.where(x > 3, np.inf, -np.inf).astype(np.float32)},
        "huge": {"X": (x * 1e38).astype(np.float32)},
        "strings": {"X": x.astype(str)},
        "ints": {"X": x.astype(np.int64)},
        "3d": {"X": x[None]},
        "1d": {"X": x[0]},
        "empty": {"X": x[:0]},
        "wrong_key": {"Z": x},
        "extra_key": {"X": x, "Y": x},
        "wide": {"X": np.hstack([x, x])},
        "bool": {"X": x > 2},
        "f16": {"X": x.astype(np.float16)},
        "complex": {"X": x.astype(np.complex64)},
    }[kind]


CSV_TEXT = st.text(alphabet=st.sampled_from(list("abcd0123456789.,-+eE\"\n nan")), max_size=300)


@SETTINGS
@given(st.data())
def test_fuzz_samples(base, data):
    x = np.load(base / "x.npy")
    kind = data.draw(st.sampled_from(["npz_bytes", "npy_bytes", "npz_struct", "csv_bytes", "csv_text"]), label="kind")
    if kind == "npz_bytes":
        name, blob = "s.npz", mutate_bytes((base / "x.npz").read_bytes(), data.draw(BYTE_MUTATIONS))
    elif kind == "npy_bytes":
        name, blob = "s.npy", mutate_bytes((base / "x.npy").read_bytes(), data.draw(BYTE_MUTATIONS))
    elif kind == "npz_struct":
        sub = data.draw(SAMPLE_VALUES, label="values")
        kind += f":{sub}"
        name, blob = "s.npz", _npz(structured_sample(sub, x))
    elif kind == "csv_bytes":
        name, blob = "s.csv", mutate_bytes((base / "x.csv").read_bytes(), data.draw(BYTE_MUTATIONS))
    else:
        name, blob = "s.csv", ("a,b,c,d\n" + data.draw(CSV_TEXT, label="csv")).encode()
    judge(["validate", "{base}/iris.skops", "{base}/iris.onnx", "--sample", "{dir}/" + name, "--timeout", "20"],
          {name: blob}, base, f"sample {kind}")


def test_fuzz_figures(base):
    """Runs after the fuzz tests (file order): no parent crash (we are alive) and every case finished in time."""
    if STATS["cases"] == 0:
        pytest.skip("run with the fuzz tests")
    figures = dict(STATS, distinct_outcomes=len(STATS["outcomes"]))
    path = os.environ.get("ONNXGATE_FUZZ_STATS")
    if path:
        Path(path).write_text(json.dumps(figures, indent=1) + "\n")
    assert figures["parent_crashes"] == 0
    assert figures["worst_s"] < CASE_LIMIT_S
    assert figures["distinct_outcomes"] >= 5  # the mutations reach many different checks


# -- the corpus -------------------------------------------------------------------------


def _corpus_cases() -> list[dict]:
    index = CORPUS / "cases.json"
    return json.loads(index.read_text()) if index.exists() else []


@pytest.mark.parametrize("case", _corpus_cases(), ids=lambda c: c["label"])
def test_corpus_replays_cleanly(base, case):
    """Every kept case gives the same exit code as when it was found, cleanly."""
    files = {name: (CORPUS / stored).read_bytes() for name, stored in case["files"].items()}
    work = Path(tempfile.mkdtemp(prefix="corpus-"))
    try:
        for name, blob in files.items():
            (work / name).write_bytes(blob)
        args = [a.replace("{dir}", str(work)).replace("{base}", str(base)) for a in case["cmd"]]
        code, out, err = run_cli(*args)
        check_clean(code, out, err, case["label"])
        assert code == case["code"], (case["label"], code, out, err)
    finally:
        shutil.rmtree(work, ignore_errors=True)
