"""What telling the materials apart by brightness costs: an observer of the particles.

The 3D oracle of :mod:`heteroagg.learn.ceiling` is told every particle's
material.  An image is not: it shows a particle's size and brightness, and the
brightness of a crystal depends on its orientation.  The renderer draws each
particle's intensity from a log-normal law with its material's LUT mean and
orientation spread at its diameter (``docs/render.md``, step 4), so a small,
dim WO3 particle can look like a large TiO2 one.

The observer here sees N, every particle's radius (exactly, or with a
log-normal measurement error) and its drawn brightness, but neither its
material nor where it sits.  Its estimate is the
Bayes posterior mean under the prior.  The likelihood of the unordered
particles sums over which N_W of them are WO3:

    p(obs | θ) ∝ C(N, N_W)⁻¹ Σ_{|S| = N_W} Π_{i∈S} f_W(r_i, b_i) Π_{i∉S} f_T(r_i, b_i),

with f_m the log-normal radius law of material m times its brightness law.
The sum over subsets is an elementary symmetric polynomial, computed by a
recursion over the particles for every N_W at once.  The posterior over the
median radii and sigma_g is evaluated on a grid.

The observer never sees particles overlap, but it ignores where the
particles are, which ``segregation`` ties to their
material.  Its R² is therefore a reference for what the orientation spread
alone costs, not a strict bound on an estimate from the image.

Particles can also be hidden from it (``observe_particles(..., hidden=...)``):
a hidden particle counts in N, but its radius, brightness and material are
not seen, so it contributes the same factor under either material.
:func:`heteroagg.projected_coverage` says which particles others cover in
a projection; ``benchmarks/projection_observer.py`` hides those.  The
observer then treats the hidden particles as missing at random, although
covered particles are more often small ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroagg._numbers import is_count, is_real
from heteroagg._progress import progress_bar
from heteroagg.data.space import ParameterSpace, Prior
from heteroagg.learn.ceiling import _check_n, _draw_theta, _normalized, frac_w_posterior, r2
from heteroagg.model import wo3_counts
from heteroagg.rng import check_uint64

#: Parameters the observer estimates, in report order.
BRIGHTNESS_OBSERVER_PARAMETERS = ("frac_w", "radius_ti", "radius_w")

_MATERIALS = ("TiO2", "WO3")


@dataclass(frozen=True)
class BrightnessObserverDraws:
    """Monte-Carlo draws of θ and the observer's posterior means.

    Attributes
    ----------
    params
        The drawn ``n_particles`` (as float), ``frac_w``, ``radius_ti``,
        ``radius_w`` and ``sigma_g``, each of shape (n,).
    n_wo3
        WO3 particles per draw.
    estimate, estimate_normalized
        Varied parameter of :data:`BRIGHTNESS_OBSERVER_PARAMETERS` ->
        posterior mean in physical units, and of the normalised value.
    """

    params: dict[str, np.ndarray]
    n_wo3: np.ndarray
    estimate: dict[str, np.ndarray]
    estimate_normalized: dict[str, np.ndarray]


def subset_likelihoods(log_t: np.ndarray, log_w: np.ndarray, k_max: int) -> np.ndarray:
    """ln Σ_{|S|=k} Π_{i∈S} w_i Π_{i∉S} t_i for k = 0..k_max, per column.

    Parameters
    ----------
    log_t, log_w
        (n_particles, C) log-likelihoods of each particle under the two
        materials, for C settings of the parameters.
    k_max
        Largest subset size returned.

    Returns
    -------
    numpy.ndarray
        (C, k_max + 1) logs of the sums; ``-inf`` where a sum is zero.
    """
    log_t = np.atleast_2d(np.asarray(log_t, dtype=float))
    log_w = np.atleast_2d(np.asarray(log_w, dtype=float))
    if log_t.shape != log_w.shape:
        raise ValueError(f"log_t and log_w differ in shape: {log_t.shape} and {log_w.shape}")
    if k_max < 0:
        raise ValueError(f"k_max must be >= 0, got {k_max}")
    sums = np.zeros((log_t.shape[1], k_max + 1))
    sums[:, 0] = 1.0
    log_scale = np.zeros(log_t.shape[1])
    for lt, lw in zip(log_t, log_w, strict=True):
        top = np.maximum(lt, lw)
        if not np.all(np.isfinite(top)):
            raise ValueError("a particle is impossible under both materials")
        t, w = np.exp(lt - top), np.exp(lw - top)
        sums[:, 1:] = sums[:, 1:] * t[:, None] + sums[:, :-1] * w[:, None]
        sums[:, 0] *= t
        # a column with no possible subset left stays zero (its log is -inf)
        peak = np.where(sums.max(axis=1) > 0, sums.max(axis=1), 1.0)
        sums /= peak[:, None]
        log_scale += top + np.log(peak)
    with np.errstate(divide="ignore"):
        return np.log(sums) + log_scale[:, None]


def _log_median_grid(prior: Prior, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u = ln median and their log prior weights."""
    if prior.kind == "fixed":
        return np.array([math.log(prior.low)]), np.zeros(1)
    if prior.kind not in ("uniform", "log-uniform"):
        raise ValueError(f"needs a uniform or log-uniform radius prior, got {prior.kind!r}")
    edges = np.linspace(math.log(prior.low), math.log(prior.high), nodes + 1)
    u = 0.5 * (edges[1:] + edges[:-1])
    # a prior uniform in the median has density e^u in u = ln median
    return u, (u if prior.kind == "uniform" else np.zeros(nodes))


def _log_sigma_grid(prior: Prior, nodes: int) -> np.ndarray:
    """Nodes of ln sigma_g, equally likely under the prior."""
    if prior.kind == "fixed":
        values = np.array([prior.low])
    elif prior.kind == "uniform":
        edges = np.linspace(prior.low, prior.high, nodes + 1)
        values = 0.5 * (edges[1:] + edges[:-1])
    elif prior.kind == "log-uniform":
        edges = np.geomspace(prior.low, prior.high, nodes + 1)
        values = np.sqrt(edges[1:] * edges[:-1])
    else:
        raise ValueError(f"needs a uniform or log-uniform sigma_g prior, got {prior.kind!r}")
    if np.any(values <= 1.0):
        raise ValueError("the brightness observer needs sigma_g > 1 (polydisperse radii)")
    return np.log(values)


def _frac_w_weights(n: int, prior: Prior, k: np.ndarray) -> np.ndarray:
    """Prior probability of N_W = k among n particles (frac_w rounds to k)."""
    if prior.kind == "fixed":
        return (k == wo3_counts(prior.low, n)).astype(float)
    lo = np.maximum(prior.low, (k - 0.5) / n)
    hi = np.minimum(prior.high, (k + 0.5) / n)
    if prior.kind == "uniform":
        return np.clip(hi - lo, 0.0, None)
    if prior.kind == "log-uniform":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(hi > lo, np.log(hi / lo), 0.0)
    raise ValueError(f"needs a uniform or log-uniform frac_w prior, got {prior.kind!r}")


class _LogBrightnessLaw:
    """Mean and variance of ln(intensity) of a particle of each material."""

    def __init__(self, luts: Mapping[str, Any]) -> None:
        missing = [m for m in _MATERIALS if m not in luts]
        if missing:
            raise ValueError(f"luts needs entries for {missing}")
        self.luts = [luts[m] for m in _MATERIALS]

    def __call__(self, material: int, diameter_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lut = self.luts[material]
        mean = np.asarray(lut(diameter_nm, extrapolate=True), dtype=float)
        spread = np.asarray(lut.spread(diameter_nm, extrapolate=True), dtype=float)
        if np.any(mean <= 0) or np.any(spread <= 0):
            raise ValueError("the LUTs need a positive mean and orientation spread")
        var = np.log1p((spread / mean) ** 2)
        return np.log(mean) - 0.5 * var, var


@dataclass(frozen=True, eq=False)
class ObserverGrid:
    """The grid over (median TiO2, median WO3, sigma_g) and the priors it stands for.

    Build it with :meth:`from_space`; one grid serves any number of aggregates.
    """

    priors: Mapping[str, Prior]
    ln_median_tio2: np.ndarray
    ln_median_wo3: np.ndarray
    ln_sigma: np.ndarray
    log_prior: np.ndarray

    @classmethod
    def from_space(
        cls, space: ParameterSpace, nodes: int = 40, sigma_nodes: int = 6
    ) -> ObserverGrid:
        """``nodes`` cells per median radius and ``sigma_nodes`` for sigma_g, at their midpoints."""
        for name, value in (("nodes", nodes), ("sigma_nodes", sigma_nodes)):
            if not is_count(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        nodes, sigma_nodes = int(nodes), int(sigma_nodes)
        priors = space.priors
        u_t, w_t = _log_median_grid(priors["radius_ti"], nodes)
        u_w, w_w = _log_median_grid(priors["radius_w"], nodes)
        log_s = _log_sigma_grid(priors["sigma_g"], sigma_nodes)
        log_prior = w_t[:, None, None] + w_w[None, :, None] + np.zeros(log_s.size)
        return cls(priors, u_t, u_w, log_s, log_prior)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.log_prior.shape


def observe_particles(
    grid: ObserverGrid,
    ln_radius: np.ndarray,
    *,
    ln_brightness: np.ndarray | None = None,
    is_wo3: np.ndarray | None = None,
    luts: Mapping[str, Any] | None = None,
    radius_error: float = 0.0,
    hidden: np.ndarray | None = None,
    brightness_log_likelihood: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Posterior means of ``frac_w`` and the median radii from one aggregate's particles.

    Parameters
    ----------
    grid
        The priors and their grid, :meth:`ObserverGrid.from_space`.
    ln_radius
        (N,) natural logs of the measured particle radii (nm).
    ln_brightness
        (N,) natural logs of each particle's intensity (fraction of the beam,
        as the LUTs give it).  Without ``is_wo3`` the materials are inferred
        from it; with a radius error it also tells about the true radius.
    is_wo3
        (N,) the particles' materials, if known.  Give ``ln_brightness``,
        ``is_wo3`` or both.
    luts
        ``{"TiO2": lut, "WO3": lut}`` with ``lut(t_nm, extrapolate=True)`` and
        ``lut.spread(t_nm, extrapolate=True)``; the shipped LUTs by default.
    radius_error
        Standard deviation of ln(measured / true radius), >= 0.
    hidden
        (N,) particles that count in N but are not seen: neither their
        radius, nor their brightness, nor their material (their entries in
        the other arrays are ignored and may be NaN).  At least one particle
        must be seen.
    brightness_log_likelihood
        (N, 2) log-likelihoods of what was seen of each particle's brightness
        if it were TiO2 (column 0) or WO3 (column 1), given its radius: for a
        brightness measured with an error (:mod:`heteroagg.learn.image_observer`).
        It replaces ``ln_brightness`` and needs exact radii.

    Returns
    -------
    dict
        ``"frac_w"``, ``"radius_ti"``, ``"radius_w"`` -> (posterior mean in
        physical units, posterior mean of the normalised value).  A fixed
        parameter's normalised value is 0.

    Raises
    ------
    ValueError
        For inconsistent inputs (see above), or LUTs without a positive spread.
    """
    ln_r = np.asarray(ln_radius, dtype=float)
    count = ln_r.size
    if ln_r.ndim != 1 or count == 0:
        raise ValueError("ln_radius must be a non-empty 1-D array")
    unseen = np.zeros(count, bool) if hidden is None else np.asarray(hidden)
    if unseen.dtype != bool or unseen.shape != ln_r.shape or unseen.all():
        raise ValueError("hidden must be a boolean array of ln_radius's shape that leaves one seen")
    seen_at = ~unseen
    ln_r = np.where(seen_at, ln_r, 0.0)
    if not np.all(np.isfinite(ln_r)):
        raise ValueError("the seen particles' ln_radius must be finite")
    if brightness_log_likelihood is not None:
        if ln_brightness is not None or radius_error != 0:
            raise ValueError(
                "brightness_log_likelihood replaces ln_brightness and needs radius_error = 0"
            )
        seen_ll = np.asarray(brightness_log_likelihood, dtype=float)
        if seen_ll.shape != (count, 2):
            raise ValueError(f"brightness_log_likelihood must have shape ({count}, 2)")
        seen_ll = np.where(seen_at[:, None], seen_ll, 0.0)
        if np.any(np.isnan(seen_ll)) or np.any(seen_ll == np.inf):
            raise ValueError(
                "the seen particles' brightness_log_likelihood must not be NaN or +inf"
            )
    elif ln_brightness is None and is_wo3 is None:
        raise ValueError("give ln_brightness, is_wo3, brightness_log_likelihood or a pair")
    if not (is_real(radius_error) and math.isfinite(radius_error) and radius_error >= 0):
        raise ValueError(f"radius_error must be a finite number >= 0, got {radius_error!r}")
    radius_error = float(radius_error)
    u_t, u_w, log_s = grid.ln_median_tio2, grid.ln_median_wo3, grid.ln_sigma
    if ln_brightness is None:
        log_t = _radius_terms(ln_r, u_t, log_s, radius_error)
        log_w = _radius_terms(ln_r, u_w, log_s, radius_error)
        if brightness_log_likelihood is not None:
            log_t = log_t + seen_ll[:, 0, None, None]
            log_w = log_w + seen_ll[:, 1, None, None]
    else:
        ln_b = np.asarray(ln_brightness, dtype=float)
        if ln_b.shape != ln_r.shape:
            raise ValueError("ln_brightness must have the shape of ln_radius")
        ln_b = np.where(seen_at, ln_b, 0.0)
        if not np.all(np.isfinite(ln_b)):
            raise ValueError("the seen particles' ln_brightness must be finite")
        law = _LogBrightnessLaw(_default_luts() if luts is None else luts)
        log_t = _particle_terms(ln_r, ln_b, u_t, log_s, radius_error, law, 0)
        log_w = _particle_terms(ln_r, ln_b, u_w, log_s, radius_error, law, 1)
    if is_wo3 is not None:
        w = np.asarray(is_wo3, dtype=bool)
        if w.shape != ln_r.shape:
            raise ValueError("is_wo3 must have the shape of ln_radius")
        log_t = log_t + np.where(w, -np.inf, 0.0)[:, None, None]
        log_w = log_w + np.where(w, 0.0, -np.inf)[:, None, None]
    # an unseen particle is as likely either way
    log_t = np.where(seen_at[:, None, None], log_t, 0.0)
    log_w = np.where(seen_at[:, None, None], log_w, 0.0)
    shape = grid.shape
    log_t = np.broadcast_to(log_t[:, :, None, :], (count, *shape)).reshape(count, -1)
    log_w = np.broadcast_to(log_w[:, None, :, :], (count, *shape)).reshape(count, -1)
    k = np.arange(count + 1)
    with np.errstate(divide="ignore"):
        log_k = np.log(_frac_w_weights(count, grid.priors["frac_w"], k))
    log_k -= np.array([_log_binomial(count, i) for i in k])
    possible = np.nonzero(np.isfinite(log_k))[0]
    if possible.size == 0:
        raise ValueError(f"the frac_w prior allows no WO3 count among {count} particles")
    k_max = int(possible.max())
    post = subset_likelihoods(log_t, log_w, k_max) + log_k[: k_max + 1]
    post = post + grid.log_prior.reshape(-1, 1)
    if not np.isfinite(post.max()):
        raise ValueError("the particles are impossible under every value of the grid")
    post = np.exp(post - post.max())
    post /= post.sum()
    p_k, p_grid = post.sum(axis=0), post.sum(axis=1).reshape(shape)
    f_mean, f_norm = _frac_w_means(count, k[: k_max + 1], grid.priors["frac_w"])
    out = {"frac_w": (float(p_k @ f_mean), float(p_k @ f_norm))}
    for name, u, p in (
        ("radius_ti", u_t, p_grid.sum(axis=(1, 2))),
        ("radius_w", u_w, p_grid.sum(axis=(0, 2))),
    ):
        out[name] = (float(p @ np.exp(u)), _normalized_median(grid.priors[name], p, u))
    return out


def particle_ln_brightness(
    radius_nm: np.ndarray,
    is_wo3: np.ndarray,
    z: np.ndarray,
    *,
    luts: Mapping[str, Any] | None = None,
    law: _LogBrightnessLaw | None = None,
) -> np.ndarray:
    """The logs of particles' intensities, drawn as the renderer draws them.

    Each particle's intensity is log-normal with its material's LUT mean and
    orientation spread at its diameter.

    Parameters
    ----------
    radius_nm
        (N,) true radii.
    is_wo3
        (N,) the particles' materials.
    z
        (N,) standard normal draws, one per particle.
    luts
        As :func:`observe_particles`; the shipped LUTs by default.
    law
        A prepared law of the LUTs, in place of ``luts`` (for loops).

    Returns
    -------
    numpy.ndarray
        (N,) ln intensity.
    """
    if law is None:
        law = _LogBrightnessLaw(_default_luts() if luts is None else luts)
    diameter = 2.0 * np.asarray(radius_nm, dtype=float)
    (mean_t, var_t), (mean_w, var_w) = law(0, diameter), law(1, diameter)
    is_w = np.asarray(is_wo3, dtype=bool)
    return np.where(is_w, mean_w, mean_t) + np.sqrt(np.where(is_w, var_w, var_t)) * z


def _default_luts() -> dict[str, Any]:
    from heteroagg.stem import default_lut

    return {m: default_lut(m) for m in _MATERIALS}


def brightness_observer_draws(
    space: ParameterSpace,
    n: int = 2000,
    seed: int = 0,
    *,
    luts: Mapping[str, Any] | None = None,
    materials_known: bool = False,
    radius_error: float = 0.0,
    nodes: int = 40,
    sigma_nodes: int = 6,
    progress: bool = False,
) -> BrightnessObserverDraws:
    """Draw θ and particles from ``space`` and the observer's posterior means.

    Parameters
    ----------
    space
        The dataset's priors; θ is drawn as :func:`~heteroagg.learn.ceiling.oracle_draws`
        draws it, then each particle's radius as the sampler draws it and
        its brightness as the renderer draws it.
    n
        Number of draws (>= 2).  Each takes about 0.1 s on one core.
    seed
        Seed of the draws, in [0, 2**64); the result is a pure function of
        the arguments.  The radii do not depend on ``materials_known``, so
        the two observers can be compared on the same particles.
    luts
        As :func:`observe_particles`.
    materials_known
        Also tell the observer each particle's material, as a reference.
        Without a radius error this is the 3D oracle, but with sigma_g
        unknown; with one, the brightness still tells about the true radius.
    radius_error
        Standard deviation of ln(measured radius / true radius): how
        precisely the observer measures each particle.  0 (exact) by default.
    nodes, sigma_nodes
        Grid nodes per median radius and for sigma_g.
    progress
        Show a progress bar.

    Returns
    -------
    BrightnessObserverDraws

    Raises
    ------
    ValueError
        For bad ``n``, ``seed``, ``radius_error`` or grid sizes, priors the
        observer cannot handle (sigma_g fixed at 1), or LUTs without a
        positive spread.
    """
    n = _check_n(n)
    rng = np.random.default_rng(check_uint64("seed", seed))
    # brightness and measurement errors from their own stream
    rng_seen = np.random.default_rng((seed, 1))
    grid = ObserverGrid.from_space(space, nodes, sigma_nodes)
    if luts is None:
        luts = _default_luts()
    law = _LogBrightnessLaw(luts)
    params, n_particles, n_wo3 = _draw_theta(space, n, rng)
    results = []
    with progress_bar(progress, n, "brightness observer") as advance:
        for j in range(n):
            count, k_w = int(n_particles[j]), int(n_wo3[j])
            is_w = np.arange(count) >= count - k_w
            median = np.where(is_w, params["radius_w"][j], params["radius_ti"][j])
            ln_r = np.log(median) + math.log(params["sigma_g"][j]) * rng.standard_normal(count)
            ln_seen = ln_r + radius_error * rng_seen.standard_normal(count)
            z = rng_seen.standard_normal(count)
            seen = {"ln_brightness": particle_ln_brightness(np.exp(ln_r), is_w, z, law=law)}
            if materials_known:
                seen["is_wo3"] = is_w
            results.append(
                observe_particles(grid, ln_seen, luts=luts, radius_error=radius_error, **seen)
            )
            advance(1)
    estimate, normalized = {}, {}
    for name in BRIGHTNESS_OBSERVER_PARAMETERS:
        if name in space.varied:
            values = np.array([r[name] for r in results])
            estimate[name], normalized[name] = values[:, 0], values[:, 1]
    return BrightnessObserverDraws(params, n_wo3, estimate, normalized)


def _radius_terms(
    ln_seen: np.ndarray, u: np.ndarray, log_s: np.ndarray, radius_error: float
) -> np.ndarray:
    """Log-likelihood of the measured log radii, (n, nodes, sigma nodes).

    A radius drawn log-normal around the median e^u with ln sigma_g, seen with
    a log-normal error ``radius_error``, is log-normal with both variances.
    """
    var = log_s[None, None, :] ** 2 + radius_error**2
    return -0.5 * (ln_seen[:, None, None] - u[None, :, None]) ** 2 / var - 0.5 * np.log(var)


#: Nodes of the integral over the true log radius, on ±8 standard deviations.
_TRUE_RADIUS_NODES = np.linspace(-8.0, 8.0, 97)


def _particle_terms(
    ln_seen: np.ndarray,
    ln_b: np.ndarray,
    u: np.ndarray,
    log_s: np.ndarray,
    radius_error: float,
    law: _LogBrightnessLaw,
    material: int,
) -> np.ndarray:
    """Log-likelihood of (measured radius, brightness) under one material, (n, nodes, sigma nodes).

    The brightness follows the particle's true diameter.  With a radius error,
    the true log radius given the measured one and (u, sigma_g) is normal,
    N(c, tau²), and the brightness law is integrated over it by the trapezoid
    rule on c ± 8 tau.  The LUTs interpolate linearly, so the integrand has
    kinks that rule out Gauss-Hermite or Newton steps; the trapezoid rule
    does not mind them.
    """
    terms = _radius_terms(ln_seen, u, log_s, radius_error)
    if radius_error == 0:
        mu, var = law(material, 2.0 * np.exp(ln_seen))
        return terms + (-0.5 * (ln_b - mu) ** 2 / var - 0.5 * np.log(var))[:, None, None]
    s2, e2 = log_s[None, None, :] ** 2, radius_error**2
    c = (ln_seen[:, None, None] * s2 + u[None, :, None] * e2) / (s2 + e2)
    tau = np.sqrt(s2 * e2 / (s2 + e2))
    t = _TRUE_RADIUS_NODES
    mu, var = law(material, 2.0 * np.exp(c[..., None] + tau[..., None] * t))
    log_f = -0.5 * t**2 - 0.5 * (ln_b[:, None, None, None] - mu) ** 2 / var - 0.5 * np.log(var)
    top = log_f.max(axis=-1)
    weights = np.full(t.size, (t[1] - t[0]) / math.sqrt(2 * math.pi))
    weights[[0, -1]] *= 0.5
    return terms + top + np.log(np.exp(log_f - top[..., None]) @ weights)


def _log_binomial(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _frac_w_means(n: int, k: np.ndarray, prior: Prior) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean of frac_w (and of its normalised value) given N_W = k."""
    if prior.kind == "fixed":
        return np.full(k.shape, prior.low), np.zeros(k.shape)
    return frac_w_posterior(np.full(k.shape, n), k, prior)


def _normalized_median(prior: Prior, p: np.ndarray, u: np.ndarray) -> float:
    if prior.kind == "log-uniform":
        a, b = math.log(prior.low), math.log(prior.high)
        return float(p @ ((u - a) / (b - a)))
    if prior.kind == "uniform":
        return float((p @ np.exp(u) - prior.low) / (prior.high - prior.low))
    return 0.0


def brightness_observer_r2(
    space: ParameterSpace, n: int = 2000, seed: int = 0, **kwargs: Any
) -> dict[str, dict[str, float]]:
    """R² of the brightness observer's posterior means (see the module notes).

    Parameters
    ----------
    space, n, seed, **kwargs
        As :func:`brightness_observer_draws`.

    Returns
    -------
    dict
        For each varied parameter of :data:`BRIGHTNESS_OBSERVER_PARAMETERS`:
        ``{"r2": ..., "r2_normalized": ...}`` in physical and normalised units.
    """
    draws = brightness_observer_draws(space, n, seed, **kwargs)
    return {
        name: {
            "r2": r2(draws.params[name], draws.estimate[name]),
            "r2_normalized": r2(
                _normalized(space, name, draws.params), draws.estimate_normalized[name]
            ),
        }
        for name in BRIGHTNESS_OBSERVER_PARAMETERS
        if name in draws.estimate
    }
