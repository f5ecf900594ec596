"""A scikit-learn model whose ONNX conversion is genuinely wrong, for tests that need a real failure.

``ScaledRidge`` overrides ``predict`` (x 1.01) and is registered with Ridge's skl2onnx converter,
which does not know: a user's subclass registered with its parent's converter, a real mistake.
Load it as ``tests.converters.wrong_sklearn:scaled_ridge`` with ``--framework sklearn --trust-code``.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge


class ScaledRidge(Ridge):
    def predict(self, X):  # noqa: N803 - scikit-learn's name
        return super().predict(X) * 1.01


def scaled_ridge() -> ScaledRidge:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes
    from skl2onnx.operator_converters.linear_regressor import convert_sklearn_linear_regressor

    update_registered_converter(ScaledRidge, "ScaledRidge", calculate_linear_regressor_output_shapes,
                                convert_sklearn_linear_regressor)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4))
    return ScaledRidge().fit(X, X @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0)
