"""Choosing K: the ONNX error of correct conversions against the original's noise floor, and
the error of the same conversions with one weight tensor scaled by 1.01.

For every model of a corpus nobody here wrote (tests/judge/verdict_corpus.py: Keras
applications with ``weights=None`` and BatchNorm recalibrated, torch CNN/transformer blocks
built from torch.nn, the scikit-learn estimators that fail a fixed float32 tolerance), per
float output, on the nominal case at ORT's default optimisation level:

  floor     the original's typical noise (judge/calibration.py) and how it was obtained
  onnx      max |ONNX - reference| of the correct conversion (reference: float64 where available)
  broken    the same with the largest weight tensor scaled by 1.01
  need K    max over values of (|onnx - ref| - rtol|ref| - eps term) / floor: the K this model needs
  catch K   the same for the broken model: the largest K that still catches the break
  margin    catch K / max(need K, 1)

K is fine when max(need K) < K < min(catch K). The false-failure rate is the share of correct
conversions that do not pass; the detection rate the share of broken ones that fail.

``--cost`` instead times ``onnxgate run`` on the demo models (``onnxgate demo``'s builders)
with calibration and with ``--no-calibration``, interleaved after a warm-up run, and reports the
ratio per model.

Run: ``.venv/bin/python benchmarks/bench_verdicts.py [--quick] [--cost]`` (minutes on 2 cores).
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
os.environ.setdefault("USE_TF", "0")


def measure(name, obj, x, tmp: Path) -> list[dict]:
    """One row per float output of ``obj``: floor, errors, the K window and the verdicts."""
    from onnxgate.pipelines.run import convert, validate

    np.save(tmp / "x.npy", x)
    conv = convert(obj, None, sample=str(tmp / "x.npy"), in_process=True)
    try:
        ok = validate(obj, conv.model, sample=str(tmp / "x.npy"), reference=conv.reference)
        broken = validate(obj, scaled(conv.model), sample=str(tmp / "x.npy"), reference=conv.reference)
        plain = validate(obj, conv.model, sample=str(tmp / "x.npy"), reference=conv.reference, no_calibration=True)
        windows = k_windows(conv, dict(conv.reference.feeds))
    finally:
        conv.reference.close()
    rows = []
    for o in _nominal_floats(ok):
        b = next(bo for bo in _nominal_floats(broken) if bo.name == o.name)
        w = windows[o.name]
        rows.append(dict(model=name, output=o.name, floor=o.noise_floor or 0.0, source=o.floor_method or "-",
                         onnx=o.max_abs_error, broken=b.max_abs_error, need=w[0], catch=w[1],
                         verdict=ok.status, broken_verdict=broken.status, fixed=plain.status))
    return rows


def _nominal_floats(report):
    nominal = report.cases[0].name
    return [o for c in report.cases if c.name == nominal and c.optimization == "all" for o in c.outputs if o.kind == "float"]


def k_windows(conv, feeds) -> dict[str, tuple[float, float]]:
    """Per output: the K the correct model needs and the largest K that still catches the broken one,
    value by value, as the rule applies (K * floor_i + rtol * |ref_i| + eps term), against the
    reference the run uses (float64 where the framework has it)."""
    import onnxruntime as ort

    from onnxgate.judge.calibration import combined, noise_floors
    from onnxgate.judge.tolerances import DEFAULTS, EPS_MULTIPLE

    names = [o.name for o in conv.model.graph.output]
    narrow = conv.reference.infer(feeds, names)
    wide = conv.reference.infer64(feeds, names)
    floors = combined(noise_floors(lambda f: conv.reference.infer(f, names), feeds, narrow), narrow, wide)
    ref = {n: (wide or {}).get(n, narrow[n]) for n in narrow}

    def run(model):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        want = {i.name: np.asarray(feeds[i.name]).astype(np.float32 if "float" in i.type else np.asarray(feeds[i.name]).dtype)
                for i in sess.get_inputs()}
        return dict(zip(names, sess.run(names, want)))

    good, bad = run(conv.model), run(scaled(conv.model))
    rtol = DEFAULTS["float32"][1]
    out = {}
    for n, fl in floors.items():
        r = np.asarray(ref[n], np.float64).reshape(np.asarray(good[n]).shape)
        base = rtol * np.abs(r) + EPS_MULTIPLE * np.finfo(np.float32).eps * fl.scale + fl.jump_allowance(r.shape)  # jumps: once
        f = np.maximum(fl.allowance(r.shape), 1e-30)
        need = float(np.max((np.abs(good[n] - r) - base) / f))
        catch = float(np.max((np.abs(bad[n] - r) - base) / f))
        out[n] = (max(need, 0.0), catch)
    return out


def corpus(quick: bool) -> None:
    warnings.simplefilter("ignore")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in ALL:
            try:
                for name, obj, x in source(quick):
                    print(f"measuring {name} ...", file=sys.stderr, flush=True)
                    rows += measure(name, obj, x, Path(tmp))
            except ImportError as exc:
                print(f"skipped {source.__name__}: {exc}", file=sys.stderr)
    print(f"| {'model':<28} | {'output':<14} | {'floor':>8} | {'floor from':<18} | {'ONNX err':>8} | {'x1.01 err':>9} "
          f"| {'need K':>7} | {'catch K':>8} | {'margin':>7} | verdict | x1.01 | fixed tol |")
    print("|" + "---|" * 12)
    for r in rows:
        margin = r["catch"] / max(r["need"], 1.0)
        print(f"| {r['model']:<28} | {r['output'][:14]:<14} | {r['floor']:8.2e} | {r['source']:<18} | {r['onnx']:8.2e} | "
              f"{r['broken']:9.2e} | {r['need']:7.2f} | {r['catch']:8.3g} | {margin:7.3g} | {r['verdict']} | "
              f"{r['broken_verdict']} | {r['fixed']} |")
    models = sorted({r["model"] for r in rows})
    false_fail = sum(any(r["verdict"] != "passed" for r in rows if r["model"] == m) for m in models)
    detected = sum(any(r["broken_verdict"] == "failed" for r in rows if r["model"] == m) for m in models)
    fixed_fail = sum(any(r["fixed"] != "passed" for r in rows if r["model"] == m) for m in models)
    print(f"\nK must lie in ({max(r['need'] for r in rows):.2f}, {min(r['catch'] for r in rows):.3g}); with the K in use: "
          f"false failures {false_fail}/{len(models)} models (fixed float32 tolerance: {fixed_fail}/{len(models)}), "
          f"detection {detected}/{len(models)} broken models caught")


def cost(rounds: int) -> None:
    """Calibrated ``run`` against ``--no-calibration`` on the demo models, interleaved."""
    from onnxgate.demo import BUILDERS
    from onnxgate.pipelines.run import run
    from onnxgate.trust import Trust

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = [m for build in BUILDERS for m in build(root / "models")]
        print(f"| {'demo model':<26} | {'framework':<10} | {'plain s':>8} | {'calibrated s':>12} | {'ratio':>6} |")
        print("|---|---|---|---|---|")
        ratios = []
        for m in models:
            times: dict[bool, list[float]] = {True: [], False: []}

            def once(calibrate: bool) -> float:
                start = time.perf_counter()
                run(str(m.source), output=root / f"{m.name}.onnx", sample=str(m.sample), framework=m.framework,
                    trust=Trust(types=m.trusted_types), no_calibration=not calibrate)
                return time.perf_counter() - start

            once(True)  # warm-up: imports and the framework worker, for neither side
            for i in range(rounds):
                for calibrate in ((False, True) if i % 2 == 0 else (True, False)):  # alternate who goes first
                    times[calibrate].append(once(calibrate))
            plain, cal = float(np.median(times[False])), float(np.median(times[True]))
            ratios.append(cal / plain)
            print(f"| {m.name:<26} | {m.framework:<10} | {plain:8.2f} | {cal:12.2f} | {cal / plain:6.2f} |")
        print(f"\ncalibration cost: median {np.median(ratios):.2f}x, max {max(ratios):.2f}x of a --no-calibration run "
              f"({rounds} interleaved rounds per model after a warm-up, median)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a few models of each kind")
    parser.add_argument("--cost", action="store_true", help="time calibration on the demo models instead")
    parser.add_argument("--rounds", type=int, default=3, help="--cost: interleaved rounds per model")
    args = parser.parse_args()
    if args.cost:
        cost(args.rounds)
    else:
        corpus(args.quick)


if __name__ == "__main__":
    main()
