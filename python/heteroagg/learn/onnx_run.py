"""An exported ONNX model seen through the interface the error analysis uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heteroagg.data.space import ParameterSpace
from heteroagg.deploy.runtime import Predictor
from heteroagg.learn.inference import Prediction


class OnnxRun:
    """A :class:`~heteroagg.deploy.Predictor` that :func:`~heteroagg.learn.evaluate` accepts
    in place of a :class:`~heteroagg.learn.TrainedRun`: the evaluation then runs through
    ONNX Runtime, exactly as deployed.

    Parameters
    ----------
    path
        An exported ``.onnx`` model.
    providers
        See :class:`~heteroagg.deploy.Predictor`.
    """

    def __init__(self, path: str | Path, providers: str = "auto") -> None:
        self.predictor = Predictor(path, providers=providers)
        meta = self.predictor.metadata
        self.path = Path(path)
        self.parameters = self.predictor.parameters
        self.descriptor_heads = self.predictor.descriptors
        self.image_shape = self.predictor.input_shape
        self.pixel_size_nm = self.predictor.pixel_size_nm
        self.symmetrized = self.predictor.symmetrized
        self.vacuum_level = self.predictor.vacuum_level
        self.space = ParameterSpace.from_config(meta["parameter_space"])
        self.info = {"train": meta["train"], "dataset": meta["dataset"]}
        self.training_imaging: dict = meta.get("imaging") or {}

    def predict(self, images: np.ndarray, batch_size: int = 64) -> Prediction:
        """θ̂ for images in fractions of the beam, as :meth:`TrainedRun.predict` gives it."""
        e = self.predictor.predict(images, batch_size=batch_size)
        return Prediction(
            e.normalized,
            e.normalized_std,
            e.params,
            e.low,
            e.high,
            e.descriptors,
            e.descriptors_std,
        )
