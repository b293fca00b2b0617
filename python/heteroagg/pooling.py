"""One sample's parameters, pooled over several of its images.

The aggregates of one powder share its material parameters (the fraction of
WO3, the radius laws, the fractal structure, segregation and overlap), while
each aggregate has its own number of particles.  Each image of the sample is
then evidence about the same shared θ, and the images' estimates can be
pooled: docs/results.md ("A sample imaged several times") measures how much
this gains.  Needs neither torch nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Parameters each aggregate of a sample draws for itself; the rest are shared.
PER_AGGREGATE = ("n_particles",)

#: Floor on a standard deviation used as a weight (normalised units).
MIN_STD = 1e-6


@dataclass(frozen=True)
class PooledSample:
    """Per-image estimates with the shared parameters pooled over the images.

    Attributes
    ----------
    normalized
        (B, P) each image's normalised θ̂, its shared columns replaced by the
        sample's pooled estimate (the same in every row).
    normalized_std
        (B, P) the matching standard deviations (the pooled one in the shared
        columns), or None for estimates without uncertainty.
    shared
        (P,) True for the columns pooled over the images.
    """

    normalized: np.ndarray
    normalized_std: np.ndarray | None
    shared: np.ndarray

    @property
    def images(self) -> int:
        """How many images were pooled."""
        return len(self.normalized)


def pool_sample(
    normalized: np.ndarray,
    normalized_std: np.ndarray | None,
    parameters: Sequence[str],
    per_aggregate: Sequence[str] = PER_AGGREGATE,
) -> PooledSample:
    """Pool the estimates of several images of one sample.

    Each image's estimate of a shared parameter is taken as an independent
    Gaussian measurement N(θ̂ᵢ, σᵢ²) of the sample's value; their product is
    the precision-weighted mean with standard deviation (Σ σᵢ⁻²)^-1/2.
    Without uncertainties every image weighs alike.  The errors of images of
    one sample are not fully independent (a network errs alike on alike
    images), so the pooled standard deviation is a lower bound:
    docs/results.md measures how often its band holds the truth.

    Parameters
    ----------
    normalized
        (B, P) the images' estimates in the normalised [0, 1] space.
    normalized_std
        (B, P) their predictive standard deviations, or None.
    parameters
        The P parameter names, in column order.
    per_aggregate
        Parameters each aggregate has for itself; they are not pooled.

    Returns
    -------
    PooledSample
    """
    mu = np.asarray(normalized, dtype=float)
    names = list(parameters)
    if mu.ndim != 2 or mu.shape[1] != len(names) or not len(mu):
        raise ValueError(
            f"normalized must be (B >= 1, {len(names)}) for parameters {names}, got {mu.shape}"
        )
    unknown = sorted(set(per_aggregate) - set(names))
    if unknown:
        raise ValueError(f"per_aggregate names unknown parameters: {unknown}")
    if not np.isfinite(mu).all():
        raise ValueError("normalized holds values that are not finite")
    shared = np.array([name not in per_aggregate for name in names])
    out = mu.copy()
    if normalized_std is None:
        out[:, shared] = mu[:, shared].mean(axis=0)
        return PooledSample(out, None, shared)
    sd = np.asarray(normalized_std, dtype=float)
    if sd.shape != mu.shape:
        raise ValueError(f"normalized_std must be {mu.shape} like normalized, got {sd.shape}")
    if not (np.isfinite(sd).all() and (sd >= 0).all()):
        raise ValueError("normalized_std must be finite and >= 0")
    precision = 1.0 / np.maximum(sd[:, shared], MIN_STD) ** 2
    total = precision.sum(axis=0)
    out[:, shared] = (precision * mu[:, shared]).sum(axis=0) / total
    out_sd = sd.copy()
    out_sd[:, shared] = 1.0 / np.sqrt(total)
    return PooledSample(out, out_sd, shared)
