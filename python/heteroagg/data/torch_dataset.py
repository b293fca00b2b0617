"""A PyTorch ``Dataset`` over a generated dataset, with load-time shot noise."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg.data.config import DatasetConfig
from heteroagg.data.dataset import SyntheticDataset
from heteroagg.rng import check_uint64, derive_seed, uniform

#: Stream of a noise seed that draws the dose ("dose" in ASCII).
DOSE_STREAM = 0x646F7365


def draw_dose(prior: Any, seed: int) -> float:
    """A dose (e/Å²) from the config's dose prior, a pure function of ``seed``."""
    if prior.kind == "fixed":
        return float(prior.low)
    # the CPU: one number, and DataLoader workers are forked, where CUDA cannot start
    u = float(uniform(seed, DOSE_STREAM, 1, device="cpu")[0])
    if prior.kind == "uniform":
        return prior.low + u * (prior.high - prior.low)
    return prior.low * (prior.high / prior.low) ** u


def shot_noise(image: np.ndarray, dose: float, pixel_size: float, seed: int) -> np.ndarray:
    """Poisson counts for ``dose`` e/Å² on pixels of ``pixel_size`` nm, as fractions of the beam."""
    electrons = dose * (pixel_size * 10.0) ** 2
    counts = np.random.default_rng(seed).poisson(np.clip(image, 0, None) * electrons)
    return (counts / electrons).astype(np.float32)


class TorchDataset:
    """``(image, target)`` pairs of the items that did not fail.

    Parameters
    ----------
    path
        A dataset folder written by :func:`heteroagg.data.generate`.
    noise
        Apply shot noise at a dose drawn from the config's dose prior (not
        when the dataset was generated with ``bake_noise``).
    seed
        Root seed of the noise: item ``i`` in epoch ``e`` (see
        :meth:`set_epoch`) uses ``derive_seed(derive_seed(seed, e), i)``.

    Notes
    -----
    Images are (1, H, W) float32 tensors in fractions of the incident beam;
    targets are the varied parameters normalised to [0, 1] by the config's
    :class:`~heteroagg.ParameterSpace`.  Shard files open lazily in each
    DataLoader worker.
    """

    def __init__(self, path: str | Path, *, noise: bool = True, seed: int = 0) -> None:
        self.dataset = SyntheticDataset(path)
        self.config = DatasetConfig.from_dict(self.dataset.index["config"])
        self.noise = bool(noise) and not self.config.imaging.bake_noise
        self.seed = check_uint64("seed", seed)
        # shared with DataLoader workers, persistent ones too, which keep their own copy
        # of the dataset: set_epoch reaches them before the next epoch's first batch
        self._epoch = multiprocessing.RawValue("Q", 0)
        self.items = np.flatnonzero(~self.dataset.failed[:])
        names = list(self.dataset.params)
        theta = {n: self.dataset.params[n][:][self.items] for n in names}
        self.targets = self.config.params.normalize(theta).astype(np.float32)
        self.dataset.close()  # forked DataLoader workers open their own handles

    def __len__(self) -> int:
        return int(self.items.size)

    @property
    def epoch(self) -> int:
        """The epoch whose noise items get (:meth:`set_epoch`)."""
        return int(self._epoch.value)

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.set_epoch(epoch)

    def __getstate__(self) -> dict[str, Any]:
        """Workers being started keep the shared epoch; any other copy (pickle, deepcopy)
        takes its value."""
        state = self.__dict__.copy()
        if multiprocessing.context.get_spawning_popen() is None:
            state["_epoch"] = self.epoch
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["_epoch"], int):
            state = {**state, "_epoch": multiprocessing.RawValue("Q", state["_epoch"])}
        self.__dict__.update(state)

    def set_epoch(self, epoch: int) -> None:
        """Draw new noise in each epoch: call it from the training loop before the epoch's
        loader is iterated.  It reaches the loader's worker processes, persistent or not."""
        self._epoch.value = check_uint64("epoch", epoch)

    def __getitem__(self, k: int) -> tuple[Any, Any]:
        import torch

        i = int(self.items[k])
        image = self.dataset.images[i]
        if self.noise:
            noise_seed = derive_seed(derive_seed(self.seed, self.epoch), i)
            dose = draw_dose(self.config.imaging.dose, noise_seed)
            image = shot_noise(image, dose, self.config.imaging.pixel_size, noise_seed)
        tensor = torch.from_numpy(np.ascontiguousarray(image[None]))
        return tensor, torch.from_numpy(self.targets[k])
