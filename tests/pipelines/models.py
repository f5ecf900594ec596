"""Small real scikit-learn models for the publish and gate tests, built from bundled datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MLP_TYPE = "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"


def save(model, path: Path) -> Path:
    import skops.io as sio

    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(model, path)
    return path


def iris(directory: Path, *, c: float = 1.0, stem: str = "iris") -> tuple[Path, Path]:
    """LogisticRegression on iris; returns (model.skops, sample.npy)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    sample = directory / f"{stem}.npy"
    sample.parent.mkdir(parents=True, exist_ok=True)
    np.save(sample, x[::5].astype(np.float32))
    return save(model, directory / f"{stem}.skops"), sample


def diabetes(directory: Path, *, alpha: float = 1.0, features: int = 10, stem: str = "diabetes") -> tuple[Path, Path]:
    """Ridge on diabetes (the first ``features`` columns); returns (model.skops, sample.npy)."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    x = x[:, :features]
    model = Ridge(alpha=alpha).fit(x, y)
    sample = directory / f"{stem}.npy"
    sample.parent.mkdir(parents=True, exist_ok=True)
    np.save(sample, x[::10].astype(np.float32))
    return save(model, directory / f"{stem}.skops"), sample


def big_mlp(directory: Path, *, width: int = 1200) -> tuple[Path, Path]:
    """An MLP with ~1.4M weights (a ~6 MB ONNX file): slow enough to publish to be killed mid-way."""
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor

    x, y = load_diabetes(return_X_y=True)
    model = MLPRegressor(hidden_layer_sizes=(width, width), max_iter=1, random_state=0).fit(x, y)
    sample = directory / "big.npy"
    np.save(sample, x[:16].astype(np.float32))
    return save(model, directory / "big.skops"), sample
