"""Turning stored images into training batches: noise, augmentation, targets.

Every random choice of a batch comes from one ``torch.Generator`` seeded by
``(seed, epoch, batch)``, so batches are pure functions of those three and a
resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from heteroagg.learn.symmetry import symmetry_elements
from heteroagg.rng import derive_seed

#: Epoch number of the fixed validation noise (never a training epoch).
VALIDATION_EPOCH = 2**32


def batch_generator(seed: int, epoch: int, batch: int, device: torch.device) -> torch.Generator:
    """The generator of batch ``batch`` of ``epoch`` under ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(derive_seed(seed, epoch), batch) >> 1)
    return g


def doses_from_unit(prior: Any, u: torch.Tensor) -> torch.Tensor:
    """Doses (e/Å²) from uniform draws ``u`` under a dataset's dose prior."""
    if prior.kind == "fixed":
        return torch.full_like(u, float(prior.low))
    if prior.kind == "uniform":
        return prior.low + u * (prior.high - prior.low)
    return prior.low * torch.exp(u * math.log(prior.high / prior.low))


def dihedral(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply element ``k`` (0..7) of the square's symmetry group to each image.

    ``k % 4`` quarter turns, then a left-right flip when ``k >= 4``.
    """
    out = torch.empty_like(x)
    for element in range(8):
        chosen = k == element
        if not bool(chosen.any()):
            continue
        y = torch.rot90(x[chosen], element % 4, dims=(-2, -1))
        out[chosen] = torch.flip(y, dims=(-1,)) if element >= 4 else y
    return out


#: Mean counts above which shot noise takes its Gaussian limit.
GAUSSIAN_COUNTS = 30.0


def shot_noise(counts: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Poisson draws of mean ``counts``: exact below :data:`GAUSSIAN_COUNTS`,
    the Gaussian limit (same mean and variance) above, which is 8x faster.
    """
    lit = counts > 0  # vacuum pixels stay exactly zero; most pixels are vacuum
    mean = counts[lit]
    noisy = mean + mean.sqrt() * torch.randn(mean.shape, generator=g, device=counts.device)
    low = mean < GAUSSIAN_COUNTS
    noisy[low] = torch.poisson(mean[low], generator=g)
    out = torch.zeros_like(counts)
    out[lit] = noisy
    return out


def augment(
    x: torch.Tensor,
    g: torch.Generator,
    *,
    dose_prior: Any | None,
    pixel_size_nm: float,
    flips: bool,
    contrast_jitter: float,
    read_noise: float,
    black_level_jitter: float = 0.0,
    maps: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Noise and augmentations of a (B, 1, H, W) batch of clean images.

    Parameters
    ----------
    x
        Images in fractions of the incident beam.
    g
        The batch's generator (:func:`batch_generator`).
    dose_prior
        Shot noise at a dose drawn per image from this prior, or None.
    pixel_size_nm, flips, contrast_jitter, read_noise, black_level_jitter
        See :class:`~heteroagg.learn.TrainConfig`.
    maps
        (B, C, h, w) label maps of the images: they are turned and flipped
        with them, and ``(images, maps)`` is returned.  The images do not
        depend on whether maps are given.
    """
    b = x.shape[0]
    if dose_prior is not None:
        electrons = doses_from_unit(dose_prior, torch.rand(b, generator=g, device=x.device))
        electrons = (electrons * (pixel_size_nm * 10.0) ** 2).view(b, 1, 1, 1)
        x = shot_noise(x.clamp(min=0) * electrons, g) / electrons
    if contrast_jitter > 0:
        gain = torch.exp(contrast_jitter * torch.randn(b, generator=g, device=x.device))
        x = x * gain.view(b, 1, 1, 1)
    if read_noise > 0:
        sigma = read_noise * torch.rand(b, generator=g, device=x.device).view(b, 1, 1, 1)
        x = x + sigma * torch.randn(x.shape, generator=g, device=x.device)
    if black_level_jitter > 0:
        shift = black_level_jitter * torch.randn(b, generator=g, device=x.device)
        x = x + shift.view(b, 1, 1, 1)
    if flips:  # an element per image of the symmetries its shape has: 8 for a square, else 4
        elements = torch.tensor(symmetry_elements(x.shape), device=x.device)
        k = elements[torch.randint(0, len(elements), (b,), generator=g, device=x.device)]
        x = dihedral(x, k)
        if maps is not None:
            maps = dihedral(maps, k.to(maps.device))
    return x if maps is None else (x, maps)


class Targets:
    """Normalised regression targets: the varied parameters, then descriptors.

    Parameters are mapped to [0, 1] by the dataset's parameter space;
    descriptors are standardised with the training items' mean and standard
    deviation.  Missing descriptor values (NaN) are masked out of the loss.
    """

    def __init__(
        self,
        dataset: Any,
        space: Any,
        descriptor_heads: tuple[str, ...],
        stats: dict[str, list[float]] | None = None,
        fit_items: np.ndarray | None = None,
    ) -> None:
        names = space.varied
        theta = {n: dataset.params[n][:] for n in names}
        self.parameters = space.normalize(theta).astype(np.float32)
        self.descriptor_names = tuple(descriptor_heads)
        columns = [
            np.asarray(dataset.descriptors[d][:], dtype=np.float64) for d in self.descriptor_names
        ]
        if stats is None:
            if fit_items is None:
                raise ValueError("Targets needs the descriptor stats or the items to fit them on")
            stats = {
                d: [float(np.nanmean(c[fit_items])), float(np.nanstd(c[fit_items]) or 1.0)]
                for d, c in zip(self.descriptor_names, columns, strict=True)
            }
        self.stats = stats
        standardised = [
            (c - stats[d][0]) / stats[d][1]
            for d, c in zip(self.descriptor_names, columns, strict=True)
        ]
        values = (
            np.column_stack([self.parameters, *standardised]) if standardised else (self.parameters)
        )
        self.values = values.astype(np.float32)

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    def __call__(self, items: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.values[items])
