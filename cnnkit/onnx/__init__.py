"""ONNX import and export: ``load(path)`` runs a foreign model on cnnkit layers (with a backward
pass), ``export(model, path, input_shape)`` writes a cnnkit model for every other runtime."""

from cnnkit.onnx.executor import OnnxGraph, Scope
from cnnkit.onnx.export import export
from cnnkit.onnx.load import NotOnnxError, load, read_model
from cnnkit.onnx.registry import UnsupportedOperatorError, supported_operators
from cnnkit.onnx.trace import ExportError

__all__ = [
    "ExportError",
    "NotOnnxError",
    "OnnxGraph",
    "Scope",
    "UnsupportedOperatorError",
    "export",
    "load",
    "read_model",
    "supported_operators",
]
