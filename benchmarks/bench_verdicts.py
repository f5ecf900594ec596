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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DEFAULT_ATOL, DEFAULT_RTOL = 1e-5, 1e-4


def keras_apps(quick: bool):
    import keras

    apps = [
        ("MobileNetV2", lambda: keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35), 96),
        ("ResNet50", lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3)), 64),
        ("EfficientNetB0", lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3)), 64),
        ("InceptionV3", lambda: keras.applications.InceptionV3(weights=None, input_shape=(75, 75, 3)), 75),
        ("DenseNet121", lambda: keras.applications.DenseNet121(weights=None, input_shape=(64, 64, 3)), 64),
        ("MobileNetV3Small", lambda: keras.applications.MobileNetV3Small(weights=None, input_shape=(64, 64, 3)), 64),
        ("Xception", lambda: keras.applications.Xception(weights=None, input_shape=(71, 71, 3)), 71),
        ("VGG16", lambda: keras.applications.VGG16(weights=None, input_shape=(32, 32, 3)), 32),
    ]
    for name, build, side in apps[:3] if quick else apps:
        keras.utils.set_random_seed(0)
        model = build()
        x = np.random.default_rng(0).normal(size=(4, side, side, 3)).astype(np.float32)
        for layer in model.layers:  # recalibrate BatchNorm: one training-mode pass with momentum 0
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.0
        model(x, training=True)
        yield f"keras {name}", model, x


def torch_models(quick: bool):
    import torch

    nn = torch.nn
    torch.manual_seed(0)

    def cnn():
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2),
                             nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def depthwise():
        return nn.Sequential(nn.Conv2d(3, 24, 3, stride=2, padding=1), nn.BatchNorm2d(24), nn.ReLU6(),
                             nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.BatchNorm2d(24), nn.ReLU6(),
                             nn.Conv2d(24, 48, 1), nn.BatchNorm2d(48), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(48, 10))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(64, 5)

        def forward(self, x):
            return self.head(self.enc(x).mean(dim=1))

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(16, 32, batch_first=True)
            self.head = nn.Linear(32, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    models = [("torch cnn", cnn, (8, 3, 32, 32)), ("torch depthwise", depthwise, (8, 3, 32, 32)),
              ("torch transformer-encoder", Encoder, (8, 12, 64)), ("torch gru", Recurrent, (8, 10, 16))]
    for name, build, shape in models[:2] if quick else models:
        net = build()
        x = torch.randn(*shape)
        for m in net.modules():  # recalibrate BatchNorm to this data
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0
        net.train()
        with torch.no_grad():
            net(x)
        net.eval()
        yield name, net, x.numpy()


def sklearn_models(quick: bool):
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import PowerTransformer, QuantileTransformer

    X, _ = load_diabetes(return_X_y=True)
    X = (X * 100).astype(np.float64)
    models = [("sklearn KMeans", KMeans(n_clusters=4, n_init=2, random_state=0)),
              ("sklearn MiniBatchKMeans", MiniBatchKMeans(n_clusters=4, n_init=2, random_state=0)),
              ("sklearn PowerTransformer", PowerTransformer()),
              ("sklearn QuantileTransformer", QuantileTransformer(n_quantiles=100))]
    for name, model in models[:2] if quick else models:
        yield name, model.fit(X), X[:32].astype(np.float32)


def scaled(model, factor=1.01):
    import onnx
    from onnx import numpy_helper

    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    floats = [t for t in broken.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)]
    target = max(floats, key=lambda t: numpy_helper.to_array(t).size)
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * factor, target.name))
    return broken


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
    finally:
        conv.reference.close()
    rows = []
    nominal = ok.cases[0].name
    for o in [o for c in ok.cases if c.name == nominal and c.optimization == "all" for o in c.outputs if o.kind == "float"]:
        b = next(bo for c in broken.cases if c.name == nominal and c.optimization == "all" for bo in c.outputs if bo.name == o.name)
        ref_scale = abs(float((o.worst or {}).get("reference") or 0.0))
        base = DEFAULT_ATOL + DEFAULT_RTOL * ref_scale
        floor = o.noise_floor or 0.0
        need = (o.max_abs_error - base) / floor if floor else (0.0 if o.max_abs_error <= base else float("inf"))
        catch = ((b.max_abs_error or 0.0) - base) / floor if floor else float("inf")
        rows.append((name, o.name, floor, o.max_abs_error, b.max_abs_error, max(need, 0.0), catch,
                     ok.status, broken.status, plain.status, t_cal / t_plain))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a few models of each kind")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in (sklearn_models, torch_models, keras_apps):
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
