"""Static checks on ONNX files and inputs: resource limits, opset/IR compatibility."""
