"""Deployment: ONNX export of trained runs and a lean numpy + onnxruntime runtime.

:class:`Predictor` needs only numpy and onnxruntime (the ``deploy`` extra);
:func:`export_onnx` also needs torch and onnx.  :func:`read_images` reads the
microscopes' files as fractions of the beam.
"""

from heteroagg.deploy.images import ImageFile, read_images
from heteroagg.deploy.runtime import Estimate, Predictor

__all__ = ["Estimate", "ImageFile", "Predictor", "export_onnx", "read_images"]


def __getattr__(name: str):
    if name == "export_onnx":
        from heteroagg.deploy.export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'heteroagg.deploy' has no attribute {name!r}")
