"""Learning the model parameters from one image (needs the ``train`` extra: torch).

:func:`train` fits a ResNet regressor of the normalised parameters θ on a
generated dataset; :class:`TrainedRun` loads a run and predicts θ̂ (with an
uncertainty for ensembles and Gaussian heads); :func:`evaluate` writes the
error analysis, down to the descriptors of digital twins sampled at θ̂.
"""

from heteroagg.learn.config import TrainConfig
from heteroagg.learn.evaluation import evaluate
from heteroagg.learn.inference import Prediction, TrainedRun, load_run
from heteroagg.learn.training import TrainSummary, train

__all__ = [
    "Prediction",
    "TrainConfig",
    "TrainSummary",
    "TrainedRun",
    "evaluate",
    "load_run",
    "train",
]
