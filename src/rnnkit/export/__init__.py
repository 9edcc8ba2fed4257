"""Take a trained model out of rnnkit: ONNX export (:func:`export_onnx`), float32 or int8
(:mod:`rnnkit.export.quantize`), and the exported file run from Python (:class:`OnnxModel`).

Importing this package needs neither ``onnx`` nor ``onnxruntime``; exporting needs ``onnx``
(``pip install 'rnnkit[export]'``), int8 export and :class:`OnnxModel` ``onnxruntime``, and
each says so in one line when it is missing.
"""

from rnnkit.export.onnx import FORMAT, OPSET, OnnxExport, export_onnx, read_metadata, to_onnx
from rnnkit.export.quantize import quantize_model, quantize_onnx
from rnnkit.export.runtime import OnnxModel

__all__ = [
    "FORMAT",
    "OPSET",
    "OnnxExport",
    "OnnxModel",
    "export_onnx",
    "quantize_model",
    "quantize_onnx",
    "read_metadata",
    "to_onnx",
]
