"""Loading a trained run and predicting θ̂ (and its uncertainty) from images."""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from heteroagg._numbers import is_count
from heteroagg.data.config import DatasetConfig
from heteroagg.learn.config import TrainConfig
from heteroagg.learn.networks import LOG_VARIANCE_RANGE, ParameterRegressor
from heteroagg.learn.symmetry import symmetric_outputs
from heteroagg.learn.torch_device import torch_device


@dataclass
class Prediction:
    """Predictions for a batch of images.

    Attributes
    ----------
    normalized
        (B, P) predicted varied parameters in the normalised space, where the
        prior spans [0, 1]: the mean of the predictive Gaussian, which may fall
        outside it (``params`` clips it to the prior).
    normalized_std
        (B, P) predictive standard deviation there (ensemble spread plus the
        Gaussian heads' variance), or None for a single point-estimate model.
    params
        Field name -> (B,) values in physical units (fixed fields included;
        ``n_particles`` as a float).
    params_low, params_high
        The one-sigma band mapped to physical units (None without uncertainty).
    descriptors, descriptors_std
        Directly regressed descriptors (empty without descriptor heads).
    """

    normalized: np.ndarray
    normalized_std: np.ndarray | None
    params: dict[str, np.ndarray]
    params_low: dict[str, np.ndarray] | None
    params_high: dict[str, np.ndarray] | None
    descriptors: dict[str, np.ndarray]
    descriptors_std: dict[str, np.ndarray]


def concatenate_predictions(parts: list[Prediction]) -> Prediction:
    """One :class:`Prediction` of the images of ``parts``, in order (at least one part)."""
    if not parts:
        raise ValueError("no predictions to concatenate")

    def arrays(values: list) -> np.ndarray | None:
        return None if values[0] is None else np.concatenate(values)

    def columns(values: list) -> dict[str, np.ndarray] | None:
        if values[0] is None:
            return None
        return {name: np.concatenate([v[name] for v in values]) for name in values[0]}

    fields = [f.name for f in dataclasses.fields(Prediction)]
    merged = {}
    for name in fields:
        values = [getattr(p, name) for p in parts]
        merged[name] = columns(values) if isinstance(values[0], dict) else arrays(values)
    return Prediction(**merged)


# What torch.load and json raise for a truncated, foreign or damaged file.
_UNREADABLE = (
    EOFError,
    OSError,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


def _warn_if_unfinished(member: Path, k: int) -> None:
    """Warn when a member's training was interrupted: its weights are the best of
    the epochs it finished, and an ensemble's spread reads it as a full member."""
    checkpoint = member / "checkpoint.pt"
    if not checkpoint.exists():
        return
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True).get("state", {})
    except (*_UNREADABLE, AttributeError) as exc:
        warnings.warn(
            f"{checkpoint} cannot be read ({exc!r}); member {k} may not have finished training",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    if not state.get("stopped"):
        warnings.warn(
            f"member {k} of {member.parent} has not finished training (interrupted in epoch "
            f"{int(state.get('epoch', 0)) + 1}); resume the run to finish it",
            RuntimeWarning,
            stacklevel=3,
        )


class TrainedRun:
    """A run folder written by :func:`~heteroagg.learn.train`, ready to predict.

    Parameters
    ----------
    path
        The run folder.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Attributes
    ----------
    parameters
        Names of the predicted (varied) parameters.
    space
        The dataset's :class:`~heteroagg.ParameterSpace`.
    image_shape, pixel_size_nm
        What the network was trained on.
    models
        One network per ensemble member (weights of its best epoch).
    """

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        self.path = Path(path)
        info_path = self.path / "run.json"
        if not info_path.exists():
            raise ValueError(f"{self.path} holds no trained run (no run.json)")
        self.device = torch_device(device)
        try:
            self.info = json.loads(info_path.read_text())
            self.dataset_config = DatasetConfig.from_dict(self.info["dataset_config"])
            self.space = self.dataset_config.params
            self.parameters: tuple[str, ...] = tuple(self.info["parameters"])
            self.descriptor_heads: tuple[str, ...] = tuple(self.info["descriptor_heads"])
            self.image_shape = tuple(self.info["image_shape"])
            self.pixel_size_nm = float(self.info["pixel_size_nm"])
            self.architecture = TrainConfig.from_saved(self.info["train"]).architecture
            members = int(self.info["train"].get("ensemble", 1))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{info_path} is not a readable heteroagg run ({exc!r})") from exc
        n_outputs = len(self.parameters) + len(self.descriptor_heads)
        self.models: list[ParameterRegressor] = []
        for k in range(members):
            weights = self.path / f"member-{k}" / "best.pt"
            if not weights.exists():
                raise ValueError(f"{weights} is missing: member {k} has not finished an epoch")
            model = ParameterRegressor(n_outputs, self.architecture)
            try:
                model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            except _UNREADABLE as exc:
                raise ValueError(
                    f"{weights} is damaged or holds other weights than this run's network ({exc!r})"
                ) from exc
            self.models.append(model.to(self.device).eval())
            _warn_if_unfinished(self.path / f"member-{k}", k)

    @property
    def training_imaging(self) -> dict:
        """The ``imaging`` table of the training set's config."""
        return self.info["dataset_config"]["imaging"]

    @property
    def vacuum_level(self) -> float:
        """The fraction of the beam the field around the particles reads in the training
        images (a support film's level, or 0), as :class:`~heteroagg.deploy.Predictor` has it."""
        from heteroagg.deploy.runtime import vacuum_level

        return vacuum_level(self.info["dataset_config"]["imaging"])

    @property
    def has_uncertainty(self) -> bool:
        return len(self.models) > 1 or bool(self.architecture["gaussian"])

    def _check(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W) float32 fractions of the beam, as :class:`~heteroagg.deploy.Predictor`
        takes them, of this run's image shape."""
        from heteroagg.deploy.runtime import fractions_of_beam

        x = fractions_of_beam(images)
        if x.shape[1:] != self.image_shape:
            raise ValueError(
                f"expected one or more images of shape (H, W) or (B, H, W) with (H, W) = "
                f"{self.image_shape}, got {np.shape(images)}"
            )
        return x

    def raw_outputs(
        self, images: np.ndarray, batch_size: int = 64, symmetrize: bool = False
    ) -> np.ndarray:
        """(M, B, n_out[, x2]) network outputs of every member, normalised units.

        With ``symmetrize`` each member's outputs are averaged over the
        image's symmetries (:mod:`heteroagg.learn.symmetry`).
        """
        x = self._check(images)
        if not is_count(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        batch_size = int(batch_size)
        n = len(self.parameters) + len(self.descriptor_heads)
        outputs = []
        with torch.no_grad():
            for model in self.models:

                def run(batch: torch.Tensor, model: torch.nn.Module = model) -> torch.Tensor:
                    return symmetric_outputs(model, batch, n) if symmetrize else model(batch)

                parts = [
                    run(torch.from_numpy(x[i : i + batch_size, None]).to(self.device))
                    for i in range(0, len(x), batch_size)
                ]
                outputs.append(torch.cat(parts).cpu().numpy())
        return np.stack(outputs)

    def predict(
        self, images: np.ndarray, batch_size: int = 64, symmetrize: bool = False
    ) -> Prediction:
        """θ̂ for images in fractions of the incident beam, (H, W) or (B, H, W).

        ``symmetrize`` averages each member over the image's eight quarter
        turns and mirrors (four for non-square images): eight times the work,
        a prediction invariant under them, and a smaller error (results.md).
        """
        out = self.raw_outputs(images, batch_size, symmetrize)
        n = len(self.parameters) + len(self.descriptor_heads)
        means = out[..., :n]
        mean = means.mean(axis=0)
        std = None
        if self.has_uncertainty:
            variance = means.var(axis=0)
            if self.architecture["gaussian"]:
                log_variance = np.clip(out[..., n:], *LOG_VARIANCE_RANGE)
                variance = variance + np.exp(log_variance).mean(axis=0)
            std = np.sqrt(variance)
        p = len(self.parameters)
        params = self.space.denormalize(np.clip(mean[:, :p], 0.0, 1.0))
        low = high = None
        if std is not None:
            low = self.space.denormalize(np.clip(mean[:, :p] - std[:, :p], 0.0, 1.0))
            high = self.space.denormalize(np.clip(mean[:, :p] + std[:, :p], 0.0, 1.0))
        stats = self.info["descriptor_stats"]
        descriptors = {
            d: mean[:, p + k] * stats[d][1] + stats[d][0]
            for k, d in enumerate(self.descriptor_heads)
        }
        descriptors_std = (
            {}
            if std is None
            else {d: std[:, p + k] * stats[d][1] for k, d in enumerate(self.descriptor_heads)}
        )
        return Prediction(
            mean[:, :p],
            None if std is None else std[:, :p],
            params,
            low,
            high,
            descriptors,
            descriptors_std,
        )


def load_run(path: str | Path, device: str = "auto") -> TrainedRun:
    """Load a run folder for prediction (see :class:`TrainedRun`)."""
    return TrainedRun(path, device)
