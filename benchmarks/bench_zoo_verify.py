"""``zoo verify`` against what a user would otherwise write, in the same process.

(a) The ONNX backend test data shipped in the ``onnx`` package (pytorch-converted,
    pytorch-operator, simple: 140 models), indexed: ``verify_zoo`` (warm cache: checksum,
    onnx.checker, ORT session, every data set, comparison) against a bare loop (ORT session
    + run + ``np.testing.assert_allclose`` per model, straight from the directories).
(b) A corpus where verification dominates (N models, 192 MatMul+Tanh layers of 512x512
    on a 256-row batch, 3 data sets each): ``--jobs 2`` against ``--jobs 1``.

Run: ``.venv/bin/python benchmarks/bench_zoo_verify.py [--repeat N]``. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxgate.model_zoo.zoo import index_zoo, verify_zoo
from onnxgate.inputs.evidence import write_test_data_set

SUITES = ("pytorch-converted", "pytorch-operator", "simple")


def _load(path: Path, type_proto) -> object:
    if type_proto.WhichOneof("value") == "sequence_type":
        p = onnx.SequenceProto()
        p.ParseFromString(path.read_bytes())
        return numpy_helper.to_list(p)
    p = onnx.TensorProto()
    p.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(p)


def bare_loop(dirs: list[Path]) -> int:
    passed = 0
    for d in dirs:
        try:
            model = onnx.load(str(d / "model.onnx"))
            so = ort.SessionOptions()
            so.log_severity_level = 4
            sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
            inits = {i.name for i in model.graph.initializer}
            inputs = [i for i in model.graph.input if i.name not in inits]
            for ds in sorted(d.glob("test_data_set_*")):
                feeds = {vi.name: _load(ds / f"input_{k}.pb", vi.type) for k, vi in enumerate(inputs) if (ds / f"input_{k}.pb").exists()}
                outs = sess.run(None, feeds)
                for k, vi in enumerate(model.graph.output):
                    exp = _load(ds / f"output_{k}.pb", vi.type)
                    for e, g in zip(exp, outs[k]) if isinstance(exp, list) else [(exp, outs[k])]:
                        if np.asarray(e).dtype.kind == "f":
                            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-7)
                        else:
                            np.testing.assert_array_equal(g, e)
            passed += 1
        except Exception:
            pass
    return passed


def write_tanh_chain(d: Path, name: str, weights: dict[str, np.ndarray], order: list[str], rng: np.random.Generator, rows: int) -> None:
    """One zoo model in ``d``: ``Y = tanh(... tanh(X @ W) ...)`` applying the initializers named in
    ``order`` (a name may repeat), with 3 data sets of ``rows`` random rows."""
    width = next(iter(weights.values())).shape[0]
    nodes, prev = [], "X"
    for i, w in enumerate(order):
        nodes += [helper.make_node("MatMul", [prev, w], [f"M{i}"]), helper.make_node("Tanh", [f"M{i}"], [f"T{i}"])]
        prev = f"T{i}"
    nodes.append(helper.make_node("Identity", [prev], ["Y"]))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", width])],
        [numpy_helper.from_array(w, n) for n, w in weights.items()],
    )
    d.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(d / "model.onnx"))
    (d / "data.json").write_text('{"atol": 1e-4, "rtol": 1e-3}')  # float32 MatMul chains: sums differ near 0
    for k in range(3):
        x = rng.standard_normal((rows, width)).astype(np.float32)
        y = x
        for w in order:
            y = np.tanh(y @ weights[w])
        write_test_data_set(d / f"test_data_set_{k}", {"X": x}, {"Y": y.astype(np.float32)})


def heavy_zoo(root: Path, n: int, layers: int = 192, width: int = 512, rows: int = 256) -> None:
    """N models: one shared ``width``-square weight applied ``layers`` times (MatMul + Tanh),
    so each data set costs ~2*layers*rows*width^2 FLOPs while the files stay small."""
    rng = np.random.default_rng(0)
    for m in range(n):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        write_tanh_chain(root / f"heavy{m}", f"heavy{m}", {"W": w}, ["W"] * layers, rng, rows)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--heavy-models", type=int, default=8)
    ap.add_argument("--layers", type=int, default=192, help="MatMul+Tanh layers per heavy model")
    args = ap.parse_args()
    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    with tempfile.TemporaryDirectory(prefix="onnxgate-bench-") as tmp:
        root, cache = Path(tmp) / "corpus", Path(tmp) / "cache"
        for s in SUITES:
            shutil.copytree(data / s, root / s)
        t = time.perf_counter()
        index_zoo(root, root / "ONNX_HUB_MANIFEST.json")
        print(f"index of {len(list(root.rglob('model.onnx')))} models: {time.perf_counter() - t:.2f}s")
        manifest = str(root / "ONNX_HUB_MANIFEST.json")
        t = time.perf_counter()
        cold = verify_zoo(manifest, cache=cache)
        print(f"zoo verify, cold cache (copy + extract + verify): {time.perf_counter() - t:.2f}s, {cold.counts}")
        dirs = sorted(p.parent for p in root.rglob("model.onnx"))
        base_t, ours_t = [], []
        for _ in range(args.repeat):  # interleaved: the machine's load drifts
            b, passed = timed(lambda: bare_loop(dirs), 1)
            o, rep = timed(lambda: verify_zoo(manifest, cache=cache), 1)
            base_t.append(b)
            ours_t.append(o)
        base, ours = statistics.median(base_t), statistics.median(ours_t)
        print(f"(a) backend corpus: bare loop {base:.2f}s ({passed} passed), zoo verify warm {ours:.2f}s "
              f"({rep.counts['passed']} passed): ratio {ours / base:.2f}x")

        heavy = Path(tmp) / "heavy"
        heavy_zoo(heavy, args.heavy_models, layers=args.layers)
        index_zoo(heavy, heavy / "ONNX_HUB_MANIFEST.json")
        hm = str(heavy / "ONNX_HUB_MANIFEST.json")
        verify_zoo(hm, cache=cache)  # warm the cache
        j1, r1 = timed(lambda: verify_zoo(hm, cache=cache, jobs=1), args.repeat)
        assert r1.passed, r1.counts
        line = f"(b) {args.heavy_models} heavy models on {os.cpu_count()} CPUs: --jobs 1 {j1:.2f}s"
        for jobs in [2] + ([4] if (os.cpu_count() or 1) >= 4 else []):
            jn, rn = timed(lambda: verify_zoo(hm, cache=cache, jobs=jobs), args.repeat)
            assert rn.passed, rn.counts
            line += f", --jobs {jobs} {jn:.2f}s (speedup {j1 / jn:.2f}x)"
        print(line)


if __name__ == "__main__":
    main()
