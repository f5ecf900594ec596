"""Running models: ONNX Runtime sessions, worker processes, providers and placement."""
