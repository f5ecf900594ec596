"""Small ONNX models for the run-cases tests: an endless Loop, a scaled Relu, one with external data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 17


def endless_loop() -> bytes:
    """Y = X + trip count, with a Loop whose condition stays true and whose trip count is INT64_MAX.

    The loop carries X (a graph input), so no optimiser can fold it: ONNX Runtime never returns.
    """
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
        ],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "cond", "X"], ["Y"], body=body)],
        "endless",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            helper.make_tensor("M", TensorProto.INT64, [], [np.iinfo(np.int64).max]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


def scaled_relu(scale: float = 2.0) -> bytes:
    """Y = Relu(X * scale) with a Mul weight initializer named W (shape [3])."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((3,), scale, np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "W"], ["XW"]), helper.make_node("Relu", ["XW"], ["Y"])],
        "scaled_relu",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


def with_external_weights(directory: Path, weights: np.ndarray, name: str = "model.onnx") -> Path:
    """A MatMul model Y = X @ W whose W lives in ``directory/weights.bin`` (onnx.external_data_helper)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "external",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", weights.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    onnx.save_model(model, str(path))  # writes directory/weights.bin next to it
    assert (directory / "weights.bin").is_file()
    return path

