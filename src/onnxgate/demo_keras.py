"""Keras and TensorFlow models for ``onnxgate demo``, built and briefly trained in code.

Data: scikit-learn's bundled digits (8x8 images) and seeded synthetic token sequences;
nothing is downloaded. TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.demo_model import DemoModel

VOCAB = 50
SEQ_LEN = 20


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def keras_cnn(keras: Any) -> Any:
    """Conv2D + BatchNormalization + Dropout on 8x8 digits: inference mode matters."""
    image = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Flatten()(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(image, probs, name="digits_cnn")


def keras_two_input(keras: Any) -> Any:
    """Two inputs (pixels, summary stats), two outputs (class probabilities, ink amount)."""
    pixels = keras.Input((64,), name="pixels")
    stats = keras.Input((4,), name="stats")
    h = keras.layers.Concatenate()([pixels, stats])
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(h)
    ink = keras.layers.Dense(1, name="ink")(h)
    return keras.Model([pixels, stats], [digit, ink], name="two_input")


def keras_lstm(keras: Any) -> Any:
    """Embedding + LSTM over int32 token ids."""
    tokens = keras.Input((SEQ_LEN,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, 16, name="embed")(tokens)
    x = keras.layers.LSTM(16, name="lstm")(x)
    logits = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(tokens, logits, name="lstm_text")


def _stats(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    return np.stack([flat.mean(1), flat.std(1), (flat > 0.5).mean(1), flat.max(1)], axis=1).astype(np.float32)


def _tokens(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(1, VOCAB, size=(n, SEQ_LEN)).astype(np.int32)
    y = ((x < VOCAB // 4).sum(1) > SEQ_LEN // 4).astype(np.int64)
    return x, y


def build_keras_models(workdir: Path, *, epochs: int = 2) -> dict[str, tuple[Path, Path]]:
    """Train and save the three Keras models; name -> (model.keras, sample)."""
    from onnxgate.converters._tf import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    workdir.mkdir(parents=True, exist_ok=True)
    images, labels = _digits()
    rng = np.random.default_rng(0)
    out = {}

    cnn = keras_cnn(keras)
    cnn.compile("adam", "sparse_categorical_crossentropy")
    cnn.fit(images[..., None], labels, epochs=epochs, batch_size=64, verbose=0)
    out["keras_cnn"] = _save(cnn, workdir, "keras_cnn", images[:32, ..., None])

    two = keras_two_input(keras)
    two.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    flat, stats = images.reshape(len(images), -1), _stats(images)
    two.fit([flat, stats], [labels, stats[:, :1]], epochs=epochs, batch_size=64, verbose=0)
    out["keras_two_input"] = _save(two, workdir, "keras_two_input", {"pixels": flat[:32], "stats": stats[:32]})

    lstm = keras_lstm(keras)
    lstm.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _tokens(rng, 512)
    lstm.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    out["keras_lstm_text"] = _save(lstm, workdir, "keras_lstm_text", x[:16])
    return out


def _save(model: Any, workdir: Path, name: str, sample: Any) -> tuple[Path, Path]:
    src = workdir / f"{name}.keras"
    model.save(src)
    if isinstance(sample, dict):
        path = workdir / f"{name}.npz"
        np.savez(path, **sample)
    else:
        path = workdir / f"{name}.npy"
        np.save(path, sample)
    return src, path


def build_tf_module(workdir: Path) -> tuple[Path, Path]:
    """A SavedModel of a tf.Module: a linear scorer with two signatures (serving_default, embed)."""
    from onnxgate.converters._tf import import_tf

    tf = import_tf()
    rng = np.random.default_rng(1)

    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(rng.standard_normal((4, 8)).astype(np.float32))
            self.b1 = tf.Variable(rng.standard_normal(8).astype(np.float32))
            self.w2 = tf.Variable(rng.standard_normal((8, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
        def score(self, features: Any) -> dict[str, Any]:
            h = tf.nn.relu(features @ self.w1 + self.b1)
            logits = h @ self.w2
            return {"logits": logits, "probs": tf.nn.softmax(logits), "label": tf.argmax(logits, axis=1, output_type=tf.int32)}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
        def embed(self, features: Any) -> dict[str, Any]:
            return {"embedding": tf.tanh(features @ self.w1 + self.b1)}

    from sklearn.datasets import load_iris

    module = Scorer()
    path = workdir / "tf_module_scorer"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.score, "embed": module.embed})
    sample = workdir / "tf_module_scorer.npy"
    np.save(sample, load_iris().data[::5].astype(np.float32))
    return path, sample


def build_keras_demo(workdir: Path) -> list[DemoModel]:
    """The onnxgate demo's Keras and TensorFlow models."""
    models = [DemoModel(name, src, sample, "keras") for name, (src, sample) in build_keras_models(workdir).items()]
    path, sample = build_tf_module(workdir)
    models.append(DemoModel("tf_module_scorer", path, sample, "tensorflow"))
    return models
