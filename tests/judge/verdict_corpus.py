"""Models nobody here wrote, for the verdict tests and benchmarks/bench_verdicts.py.

Keras applications with ``weights=None`` (BatchNorm recalibrated to the data, so outputs
vary), torch blocks built from ``torch.nn`` (conv/BatchNorm, depthwise, a transformer
encoder, a GRU), and the scikit-learn estimators that fail a fixed float32 tolerance.
Every builder is seeded; ``scaled`` breaks a conversion by scaling its largest weight
tensor by 1.01 (one tensor, one layer).
"""

from __future__ import annotations

import numpy as np


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
        # VGG16 (no BatchNorm) at random init answers nearly the same on every input: a 1% weight
        # change moves it by 3e-8, below any floor -- a detection limit, measured; MobileNet v1 instead
        ("MobileNet", lambda: keras.applications.MobileNet(weights=None, input_shape=(64, 64, 3), alpha=0.5), 64),
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
    models = [("sklearn KMeans", KMeans(n_clusters=4, n_init=2, random_state=0), X, X[:32]),
              ("sklearn MiniBatchKMeans", MiniBatchKMeans(n_clusters=4, n_init=2, random_state=0), X, X[:32]),
              ("sklearn PowerTransformer", PowerTransformer(), X, X[:32]),
              # QuantileTransformer on rows it has not seen: on its own training rows every row sits on a
              # repeated quantile, where the output jumps within one float32 ulp of the input; the run
              # calls that sample vacuous (tests/judge/test_float64_reference.py). n_quantiles=50:
              # skl2onnx's converter takes minutes at the default 1000 (410 here), 2.5 s at 50.
              ("sklearn QuantileTransformer", QuantileTransformer(n_quantiles=50, random_state=0), X[32:], _unseen(X[:32], X.std(0)))]
    for name, model, fit_on, sample in models[:2] if quick else models:
        yield name, model.fit(fit_on), sample.astype(np.float32)


def _unseen(rows: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Rows moved by 5% of each feature's spread: new data, off the training grid."""
    return rows + np.random.default_rng(0).normal(scale=0.05, size=rows.shape) * std


def scaled(model, factor=1.01):
    import onnx
    from onnx import numpy_helper

    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    floats = [t for t in broken.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)]
    target = max(floats, key=lambda t: numpy_helper.to_array(t).size)
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * factor, target.name))
    return broken


ALL = (sklearn_models, torch_models, keras_apps)
