"""Choosing K: the ONNX error of correct conversions against the original's noise floor, and
the error of the same conversions with one weight tensor scaled by 1.01.

For every model of a corpus nobody here wrote (Keras applications with ``weights=None`` and
BatchNorm recalibrated, torch CNN/transformer blocks built from torch.nn, the scikit-learn
estimators that fail a fixed float32 tolerance), per float output:

  floor      the original's own noise (judge/calibration.py)
  onnx       max |ONNX - original| of the correct conversion (nominal case)
  broken     the same with the largest weight tensor scaled by 1.01
  need_K     (onnx - default allowance) / floor: the K this model needs to pass
  catch_K    (broken - default allowance) / floor: the largest K that still catches the break

K is fine when max(need_K) < K < min(catch_K). Also reports the cost of calibration as the
ratio of a calibrated run's time to a ``--no-calibration`` run's.

Run: ``.venv/bin/python benchmarks/bench_verdicts.py [--quick]`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.judge.verdict_corpus import ALL, scaled  # noqa: E402  the corpus is shared with the tests

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DEFAULT_ATOL, DEFAULT_RTOL = 1e-5, 1e-4


def measure(name, obj, x, tmp: Path):
    from onnxgate.pipelines.run import convert, validate

    np.save(tmp / "x.npy", x)
    conv = convert(obj, None, sample=str(tmp / "x.npy"), in_process=True)
    try:
        start = time.perf_counter()
        plain = validate(obj, conv.model, sample=str(tmp / "x.npy"), reference=conv.reference, no_calibration=True)
        t_plain = time.perf_counter() - start
        start = time.perf_counter()
        ok = validate(obj, conv.model, sample=str(tmp / "x.npy"), reference=conv.reference)
        t_cal = time.perf_counter() - start
        broken = validate(obj, scaled(conv.model), sample=str(tmp / "x.npy"), reference=conv.reference)
        exact = _per_element(conv, dict(conv.reference.feeds))
    finally:
        conv.reference.close()
    rows = []
    nominal = ok.cases[0].name
    for o in [o for c in ok.cases if c.name == nominal and c.optimization == "all" for o in c.outputs if o.kind == "float"]:
        b = next(bo for c in broken.cases if c.name == nominal and c.optimization == "all" for bo in c.outputs if bo.name == o.name)
        need, catch = exact.get(o.name, (float("nan"), float("nan")))
        rows.append((name, o.name, o.noise_floor or 0.0, o.max_abs_error, b.max_abs_error, need, catch,
                     ok.status, broken.status, plain.status, t_cal / t_plain))
    return rows


def _per_element(conv, feeds):
    """Per output: the K the correct model needs and the largest K that still catches the broken one,
    element by element (the rule is per value: K * floor_i + rtol * |ref_i| + eps term)."""
    import onnxruntime as ort

    from onnxgate.judge.calibration import noise_floors
    from onnxgate.judge.tolerances import EPS_MULTIPLE

    names = [o.name for o in conv.model.graph.output]
    ref = conv.reference.infer(feeds, names)
    floors = noise_floors(lambda f: conv.reference.infer(f, names), feeds, ref)

    def run(model):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        want = {i.name: np.asarray(feeds[i.name]).astype(np.float32 if "float" in i.type else np.asarray(feeds[i.name]).dtype)
                for i in sess.get_inputs()}
        return dict(zip(names, sess.run(names, want)))

    ok, bad = run(conv.model), run(scaled(conv.model))
    out = {}
    for n, fl in floors.items():
        r = np.asarray(ref[n], np.float64).reshape(np.asarray(ok[n]).shape)
        base = DEFAULT_RTOL * np.abs(r) + EPS_MULTIPLE * np.finfo(np.float32).eps * fl.scale
        f = np.maximum(fl.allowance(r.shape), 1e-30)
        need = float(np.max((np.abs(ok[n] - r) - base) / f))
        catch = float(np.max((np.abs(bad[n] - r) - base) / f))
        out[n] = (max(need, 0.0), catch)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a few models of each kind")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in ALL:
            try:
                for name, obj, x in source(args.quick):
                    print(f"measuring {name} ...", file=sys.stderr, flush=True)
                    rows += measure(name, obj, x, Path(tmp))
            except ImportError as exc:
                print(f"skipped {source.__name__}: {exc}", file=sys.stderr)
    print(f"{'model':<28} {'output':<14} {'floor':>9} {'onnx err':>9} {'broken':>9} {'need K':>7} {'catch K':>9} "
          f"{'verdict':>8} {'broken':>8} {'fixed-tol':>9} {'cost':>5}")
    for r in rows:
        print(f"{r[0]:<28} {r[1][:14]:<14} {r[2]:9.2e} {r[3]:9.2e} {r[4]:9.2e} {r[5]:7.2f} {r[6]:9.3g} {r[7]:>8} {r[8]:>8} {r[9]:>9} {r[10]:5.2f}")
    need = max(r[5] for r in rows)
    catch = min(r[6] for r in rows)
    false_fail = sum(r[7] != "passed" for r in rows)
    detected = sum(r[8] == "failed" for r in rows)
    fixed_fail = sum(r[9] != "passed" for r in rows)
    print(f"\nK must lie in ({need:.2f}, {catch:.3g}); with the K in use: {false_fail}/{len(rows)} false failures "
          f"(fixed tolerance: {fixed_fail}/{len(rows)}), {detected}/{len(rows)} broken models caught; "
          f"calibration cost median {np.median([r[10] for r in rows]):.2f}x of a --no-calibration validate")


if __name__ == "__main__":
    main()
