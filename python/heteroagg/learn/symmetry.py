"""Test-time augmentation over the symmetries of the image.

A projection of a randomly oriented aggregate has no preferred in-plane
direction, so a quarter turn or a mirror image of it is another image of the
same θ.  Averaging a network's outputs over these copies removes the part of
its error that is not symmetric.  Square images have eight such copies (the
dihedral group D4), other rectangles four (half turns and mirrors).
"""

from __future__ import annotations

import torch

from heteroagg.learn.networks import LOG_VARIANCE_RANGE


def symmetry_elements(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Elements k of :func:`apply_symmetry` that keep an (..., H, W) shape."""
    square = shape[-1] == shape[-2]
    return tuple(range(8)) if square else (0, 2, 4, 6)


def apply_symmetry(x: torch.Tensor, k: int) -> torch.Tensor:
    """``k % 4`` quarter turns of the last two axes, then a left-right mirror when ``k >= 4``.

    The same convention as :func:`heteroagg.learn.batches.dihedral`, with one
    element for the whole batch (exportable to ONNX).
    """
    y = torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def symmetric_outputs(model: torch.nn.Module, x: torch.Tensor, n_means: int) -> torch.Tensor:
    """A network's outputs averaged over the symmetries of ``x`` (B, 1, H, W).

    The first ``n_means`` outputs (the predicted means) are averaged; the rest,
    the log-variances of a Gaussian head, become the log of the mean variance.
    """
    outs = torch.stack([model(apply_symmetry(x, k)) for k in symmetry_elements(tuple(x.shape))])
    means = outs[..., :n_means].mean(dim=0)
    if outs.shape[-1] == n_means:
        return means
    variance = torch.exp(torch.clamp(outs[..., n_means:], *LOG_VARIANCE_RANGE)).mean(dim=0)
    return torch.cat([means, torch.log(variance)], dim=-1)
