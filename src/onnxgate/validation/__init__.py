"""Inputs, ONNX Runtime runs, comparison, providers, static checks and reports."""
