"""One sample's parameters, pooled over several of its images.

The aggregates of one powder share its material parameters (the fraction of
WO3, the radius laws, the fractal structure, segregation and overlap), while
each aggregate has its own number of particles.  Each image of the sample is
then evidence about the same shared θ, and the images' estimates can be
pooled: docs/results.md ("A sample imaged several times") measures how much
this gains.  Needs neither torch nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroagg.model import ModelParams
from heteroagg.truncated_normal import normal_behind, truncated_moments

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

    def sample_values(
        self, space: Any, parameters: Sequence[str]
    ) -> dict[str, tuple[float, float | None, float | None]]:
        """The shared parameters' pooled values in physical units, with the one-sigma band.

        Parameters
        ----------
        space
            The :class:`~heteroagg.ParameterSpace` of the normalised columns.
        parameters
            The column names.

        Returns
        -------
        dict
            Shared parameter -> (value, low, high); low and high are None for
            estimates without uncertainty.  The band is θ̂ ± its deviation in
            the normalised space, clipped to the prior.
        """
        row = self.normalized[0]
        value = space.denormalize(np.clip(row, 0.0, 1.0))
        low = high = None
        if self.normalized_std is not None:
            sd = self.normalized_std[0]
            low = space.denormalize(np.clip(row - sd, 0.0, 1.0))
            high = space.denormalize(np.clip(row + sd, 0.0, 1.0))
        out = {}
        for k, name in enumerate(parameters):
            if self.shared[k]:
                band = (None, None) if low is None else (float(low[name]), float(high[name]))
                out[name] = (float(value[name]), *band)
        return out


def pool_sample(
    normalized: np.ndarray,
    normalized_std: np.ndarray | None,
    parameters: Sequence[str],
    per_aggregate: Sequence[str] = PER_AGGREGATE,
    shared_error: float | Mapping[str, float] = 0.0,
) -> PooledSample:
    """Pool the estimates of several images of one sample.

    An image's estimate (θ̂ᵢ, σᵢ) of a shared parameter is the mean and
    deviation of its posterior, which lives on the prior's range [0, 1]; with
    the prior flat there, that posterior is a Gaussian likelihood
    N(mᵢ, sᵢ²) restricted to [0, 1], and (mᵢ, sᵢ) are found from the moments
    (:func:`~heteroagg.truncated_normal.normal_behind`).  The sample's
    posterior is the product of the likelihoods, once restricted: the
    precision-weighted mean of the mᵢ, and the moments of that normal on
    [0, 1] are the pooled estimate and deviation.  Multiplying the reported
    moments themselves would count the bound once per image: near it the
    estimate would stay pulled inward however many images there are.  Far
    from the bounds mᵢ = θ̂ᵢ and sᵢ = σᵢ; so too where σᵢ is nearly as wide
    as any posterior with mean θ̂ᵢ can be, and (mᵢ, sᵢ) are ill-determined
    (:func:`~heteroagg.truncated_normal.normal_behind`).

    Were the images' errors independent, the likelihoods' product would have
    the standard deviation (Σ sᵢ⁻²)^-1/2.  They are not: a network
    errs alike on alike images, and a share rho of each image's error variance
    is common to all images of the sample: image i errs by
    sᵢ (√rho c + √(1 - rho) uᵢ), with c shared and the uᵢ independent.  The
    pooled variance is then (1 - rho) / Σ sᵢ⁻² + rho (Σ sᵢ⁻¹ / Σ sᵢ⁻²)², which
    is 1 + rho * (B - 1) times the independent one when the sᵢ are equal;
    ``shared_error`` sets rho, and with the default 0 the standard deviation is
    a lower bound.  docs/results.md measures rho for a trained run and how
    often the band holds the truth.

    Parameters
    ----------
    normalized
        (B, P) the images' estimates in the normalised [0, 1] space.
    normalized_std
        (B, P) their predictive standard deviations, or None.
    parameters
        The P parameter names, in column order.
    per_aggregate
        Parameters each aggregate has for itself; they are not pooled.  A
        field the model holds fixed (not in ``parameters``) is ignored.
    shared_error
        rho in [0, 1], for every shared parameter or per name (a name left out:
        0).  It widens the pooled standard deviation; the estimate moves only
        near a bound, where a wider posterior is restricted more.

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
    # a field the model holds fixed (not among its parameters) has nothing to pool
    unknown = sorted(set(per_aggregate) - set(names) - set(ModelParams.field_names()))
    if unknown:
        raise ValueError(f"per_aggregate names unknown parameters: {unknown}")
    if not np.isfinite(mu).all():
        raise ValueError("normalized holds values that are not finite")
    shared = np.array([name not in per_aggregate for name in names])
    rho = _shared_error_columns(shared_error, names)
    out = mu.copy()
    if normalized_std is None:
        out[:, shared] = mu[:, shared].mean(axis=0)
        return PooledSample(out, None, shared)
    sd = np.asarray(normalized_std, dtype=float)
    if sd.shape != mu.shape:
        raise ValueError(f"normalized_std must be {mu.shape} like normalized, got {sd.shape}")
    if not (np.isfinite(sd).all() and (sd >= 0).all()):
        raise ValueError("normalized_std must be finite and >= 0")
    if len(mu) == 1:  # one image is its own sample's estimate
        return PooledSample(out, sd.copy(), shared)
    loc, scale = normal_behind(mu[:, shared], sd[:, shared])
    inverse = 1.0 / np.maximum(scale, MIN_STD)
    precision = inverse**2
    total = precision.sum(axis=0)
    pooled_loc = (precision * loc).sum(axis=0) / total
    common = rho[shared]
    variance = (1.0 - common) / total + common * (inverse.sum(axis=0) / total) ** 2
    mean, std = truncated_moments(pooled_loc, np.sqrt(variance))
    out_sd = sd.copy()
    out[:, shared], out_sd[:, shared] = mean, std
    return PooledSample(out, out_sd, shared)


def _shared_error_columns(
    shared_error: float | Mapping[str, float], names: list[str]
) -> np.ndarray:
    """rho per column from one value or a mapping by name; checked to lie in [0, 1]."""
    if isinstance(shared_error, Mapping):
        unknown = sorted(set(shared_error) - set(names))
        if unknown:
            raise ValueError(f"shared_error names unknown parameters: {unknown}")
        rho = np.array([float(shared_error.get(name, 0.0)) for name in names])
    else:
        rho = np.full(len(names), float(shared_error))
    if not (np.isfinite(rho).all() and (rho >= 0).all() and (rho <= 1).all()):
        raise ValueError(f"shared_error must lie in [0, 1], got {shared_error}")
    return rho


def fit_shared_error(
    normalized: np.ndarray,
    normalized_std: np.ndarray,
    true_normalized: np.ndarray,
    parameters: Sequence[str],
    per_aggregate: Sequence[str] = PER_AGGREGATE,
) -> dict[str, float]:
    """The share of an image's error common to all images of its sample, per parameter.

    It is the intraclass correlation of the standardised errors
    (θ̂ - θ) / std over samples of known θ, each imaged several times: the
    between-sample variance of their per-sample means, less what the
    within-sample scatter contributes to it, over the total.  Pass the result
    as :func:`pool_sample`'s ``shared_error``.

    Parameters
    ----------
    normalized, normalized_std
        (S, B, P) the estimates and their standard deviations for B images of
        each of S samples (S >= 2, B >= 2).
    true_normalized
        (S, P) each sample's true θ in the normalised space.
    parameters, per_aggregate
        As for :func:`pool_sample`; per-aggregate parameters get no share.

    Returns
    -------
    dict
        Shared parameter name -> share, clipped to [0, 1] (0 where the errors
        do not vary at all).
    """
    mu = np.asarray(normalized, dtype=float)
    sd = np.asarray(normalized_std, dtype=float)
    truth = np.asarray(true_normalized, dtype=float)
    names = list(parameters)
    if mu.ndim != 3 or mu.shape[0] < 2 or mu.shape[1] < 2 or mu.shape[2] != len(names):
        raise ValueError(f"normalized must be (S >= 2, B >= 2, {len(names)}), got {mu.shape}")
    if sd.shape != mu.shape or truth.shape != (mu.shape[0], mu.shape[2]):
        raise ValueError(
            f"normalized_std must be {mu.shape} and true_normalized {(mu.shape[0], mu.shape[2])}"
            f", got {sd.shape} and {truth.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(truth).all() and np.isfinite(sd).all()):
        raise ValueError("the estimates, their spreads and the truths must be finite")
    if (sd <= 0).any():
        raise ValueError("normalized_std must be > 0")
    z = (mu - truth[:, None, :]) / sd
    within = z.var(axis=1, ddof=1).mean(axis=0)
    between = z.mean(axis=1).var(axis=0, ddof=1) - within / mu.shape[1]
    total = between + within
    ratio = np.divide(between, total, out=np.zeros_like(total), where=total > 0)
    share = np.clip(ratio, 0.0, 1.0)
    return {name: float(share[k]) for k, name in enumerate(names) if name not in per_aggregate}
