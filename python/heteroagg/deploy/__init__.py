"""Deployment: ONNX export of trained runs and a lean numpy + onnxruntime runtime.

:class:`Predictor` needs only numpy and onnxruntime (the ``deploy`` extra);
:func:`export_onnx` also needs torch and onnx.
"""

from heteroagg.deploy.runtime import Estimate, Predictor

__all__ = ["Estimate", "Predictor", "export_onnx"]


def __getattr__(name: str):
    if name == "export_onnx":
        from heteroagg.deploy.export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'heteroagg.deploy' has no attribute {name!r}")
