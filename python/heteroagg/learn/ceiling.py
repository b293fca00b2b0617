"""How much of θ one aggregate holds: R² ceilings of an oracle that sees it in 3D.

An estimator of θ from one image can do no better than one that sees the
imaged aggregate itself: its particle count N, every particle's material and
exact radius.  Even that oracle cannot recover θ exactly, because the model
draws the particles at random.  Its best estimate under squared error is the
Bayes posterior mean under the dataset's prior, and the R² of that posterior
mean is the ceiling that no network can exceed on test data drawn from the
same prior.

What the oracle sees about each parameter (see ``docs/model.md``):

- ``n_particles``: N itself, so its ceiling is 1.
- ``frac_w``: only N_W = round(frac_w·N), halves up.  The posterior is the prior
  restricted to the interval of values that round to N_W.
- ``radius_ti``, ``radius_w``: the N_m radii r = median_m · sigma_g^z of each
  material, z standard normal.  With sigma_g known, their mean log radius is
  sufficient and normal around ln median_m with variance ln²sigma_g / N_m.
  The posterior over ln median_m is computed on a grid.

The oracle is also told sigma_g exactly, which it could only estimate from the
radii; it therefore knows at least as much as any observer of the aggregate,
and its R² is an upper bound.

A weaker reference, :func:`volume_observer_r2`, sees only N and the total
volume of each material: what weighing the materials tells without telling
the particles apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heteroagg._numbers import is_count
from heteroagg.data.space import ParameterSpace, Prior
from heteroagg.model import wo3_counts
from heteroagg.rng import check_uint64

#: The parameters with an oracle ceiling, in report order.
CEILING_PARAMETERS = ("n_particles", "frac_w", "radius_ti", "radius_w")

#: Draws whose posterior is evaluated at once (bounds the grid's memory).
_CHUNK = 8192

#: Nodes of the posterior grid over ln median (odd, for Simpson's rule).
_NODES = 257

#: Half-width of the grid window in posterior standard deviations.
_WINDOW = 10.0

_RADII = {"radius_ti": "n_tio2", "radius_w": "n_wo3"}


@dataclass(frozen=True)
class OracleDraws:
    """Monte-Carlo draws of θ with what the oracle sees and estimates.

    Attributes
    ----------
    params
        The drawn values of ``n_particles`` (as float), ``frac_w``,
        ``radius_ti``, ``radius_w`` and ``sigma_g``, each of shape (n,).
    n_wo3, n_tio2
        Particles of each material.
    mean_log_radius
        ``"radius_ti"`` / ``"radius_w"`` -> the mean of ln r over that
        material's particles (NaN where it has none).
    estimate
        Parameter -> posterior mean in physical units, for the varied
        parameters of :data:`CEILING_PARAMETERS`.
    estimate_normalized
        The same parameters -> posterior mean of the value as
        :meth:`ParameterSpace.normalize` maps it to [0, 1].
    """

    params: dict[str, np.ndarray]
    n_wo3: np.ndarray
    n_tio2: np.ndarray
    mean_log_radius: dict[str, np.ndarray]
    estimate: dict[str, np.ndarray]
    estimate_normalized: dict[str, np.ndarray]


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (draws), got {n!r}")
    return int(n)


def _draw_theta(
    space: ParameterSpace, n: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``n`` draws of the size parameters and sigma_g, with N and N_W per draw."""
    names = ("n_particles", "frac_w", "radius_ti", "radius_w", "sigma_g")
    u = rng.random((n, len(names)))
    params = {name: space._from_unit(name, u[:, j]) for j, name in enumerate(names)}
    n_particles = params["n_particles"].astype(np.int64)
    n_wo3 = wo3_counts(params["frac_w"], n_particles)
    return params, n_particles, n_wo3


def _simpson_weights(nodes: int) -> np.ndarray:
    w = np.ones(nodes)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w


def log_median_posterior(
    mean_log: np.ndarray, tau: np.ndarray, prior: Prior
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means of a median radius from the mean log radius of its particles.

    Parameters
    ----------
    mean_log
        Mean of ln r over the particles of one material, shape (n,); ignored
        (may be NaN) where ``tau`` is infinite.
    tau
        Its standard deviation around ln median: ln sigma_g / sqrt(N_m).  0 gives
        the median exactly (sigma_g = 1); ``inf`` (no particles) gives the prior.
    prior
        The prior of the median radius, ``uniform`` or ``log-uniform``.

    Returns
    -------
    median, normalized
        The posterior means of the median (nm) and of its normalised value
        (log scale for a log-uniform prior, as :meth:`ParameterSpace.normalize`).

    Notes
    -----
    The posterior over u = ln median is the prior (flat in u for a
    log-uniform prior, ∝ e^u for a uniform one) times the normal likelihood
    N(mean_log; u, tau²), on [ln low, ln high].  It is integrated by Simpson's
    rule on a grid of each draw's likely window, ±10 tau around ``mean_log``.
    """
    if prior.kind not in ("uniform", "log-uniform"):
        raise ValueError(f"needs a uniform or log-uniform prior, got {prior.kind!r}")
    mean_log, tau = np.broadcast_arrays(
        np.asarray(mean_log, dtype=float), np.asarray(tau, dtype=float)
    )
    a, b = math.log(prior.low), math.log(prior.high)
    u_mean = np.empty(mean_log.shape)
    r_mean = np.empty(mean_log.shape)
    exact = tau == 0
    u_mean[exact] = np.clip(mean_log[exact], a, b)
    r_mean[exact] = np.exp(u_mean[exact])
    weights = _simpson_weights(_NODES)
    t = np.linspace(0.0, 1.0, _NODES)
    (rows,) = np.nonzero(~exact)
    for start in range(0, rows.size, _CHUNK):
        idx = rows[start : start + _CHUNK]
        m, s = mean_log[idx], tau[idx]
        informed = np.isfinite(s)
        m_safe = np.where(informed, m, 0.5 * (a + b))
        lo = np.where(informed, np.clip(m_safe - _WINDOW * s, a, b), a)
        hi = np.where(informed, np.clip(m_safe + _WINDOW * s, a, b), b)
        u = lo[:, None] + (hi - lo)[:, None] * t
        with np.errstate(invalid="ignore", divide="ignore"):
            log_w = np.where(informed[:, None], -0.5 * ((u - m_safe[:, None]) / s[:, None]) ** 2, 0)
        if prior.kind == "uniform":
            log_w = log_w + u
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True)) * weights
        total = w.sum(axis=1)
        # a window squeezed onto a bound (mean_log beyond it by > 10 tau): the bound
        point = hi <= lo
        u_mean[idx] = np.where(point, lo, (w * u).sum(axis=1) / total)
        r_mean[idx] = np.where(point, np.exp(lo), (w * np.exp(u)).sum(axis=1) / total)
    if prior.kind == "log-uniform":
        normalized = (u_mean - a) / (b - a)
    else:
        normalized = (r_mean - prior.low) / (prior.high - prior.low)
    return r_mean, normalized


def frac_w_posterior(
    n_particles: np.ndarray, n_wo3: np.ndarray, prior: Prior
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means of ``frac_w`` given N and N_W.

    The posterior is the prior restricted to the values that round to N_W,
    [(N_W - 1/2) / N, (N_W + 1/2) / N) within [low, high].

    Returns
    -------
    frac_w, normalized
        The posterior means of ``frac_w`` and of its normalised value.
    """
    if prior.kind not in ("uniform", "log-uniform"):
        raise ValueError(f"needs a uniform or log-uniform prior, got {prior.kind!r}")
    n = np.asarray(n_particles, dtype=float)
    k = np.asarray(n_wo3, dtype=float)
    lo = np.maximum(prior.low, (k - 0.5) / n)
    hi = np.maximum(lo, np.minimum(prior.high, (k + 0.5) / n))
    if prior.kind == "uniform":
        mean = 0.5 * (lo + hi)
        return mean, (mean - prior.low) / (prior.high - prior.low)
    # density ∝ 1/f: E f = (hi - lo) / ln(hi / lo), E ln f = (ln lo + ln hi) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(hi > lo, (hi - lo) / np.log(hi / lo), lo)
    log_mean = 0.5 * (np.log(lo) + np.log(hi))
    return mean, (log_mean - math.log(prior.low)) / math.log(prior.high / prior.low)


def oracle_draws(space: ParameterSpace, n: int = 200_000, seed: int = 0) -> OracleDraws:
    """Draw θ from ``space`` and the oracle's posterior means (see the module notes).

    Parameters
    ----------
    space
        The priors; θ is drawn through the same map from uniform numbers
        that :meth:`ParameterSpace.sample` uses, from a NumPy generator
        seeded with ``seed``.
    n
        Number of draws (>= 2).
    seed
        Seed of the draws, in [0, 2**64); the result is a pure function of
        ``(space, n, seed)``.

    Returns
    -------
    OracleDraws
        The draws, what the oracle sees and its estimates.  The particles'
        radii enter through their sufficient statistic, the mean log radius
        per material, which is drawn directly from its normal law.

    Raises
    ------
    ValueError
        If ``n`` is not an integer >= 2 or ``seed`` is out of range.
    """
    n = _check_n(n)
    rng = np.random.default_rng(check_uint64("seed", seed))
    params, n_particles, n_wo3 = _draw_theta(space, n, rng)
    counts = {"n_wo3": n_wo3, "n_tio2": n_particles - n_wo3}
    log_sigma = np.log(params["sigma_g"])
    z = rng.standard_normal((n, 2))
    mean_log, tau = {}, {}
    for j, (name, count) in enumerate(_RADII.items()):
        k = counts[count]
        with np.errstate(divide="ignore", invalid="ignore"):
            tau[name] = np.where(k > 0, log_sigma / np.sqrt(k), np.inf)
            mean_log[name] = np.where(k > 0, np.log(params[name]) + tau[name] * z[:, j], np.nan)

    estimate, normalized = {}, {}
    varied = set(space.varied)
    if "n_particles" in varied:
        estimate["n_particles"] = params["n_particles"].copy()
        normalized["n_particles"] = _normalized(space, "n_particles", params)
    if "frac_w" in varied:
        estimate["frac_w"], normalized["frac_w"] = frac_w_posterior(
            n_particles, n_wo3, space.priors["frac_w"]
        )
    for name in _RADII:
        if name in varied:
            estimate[name], normalized[name] = log_median_posterior(
                mean_log[name], tau[name], space.priors[name]
            )
    return OracleDraws(params, n_wo3, counts["n_tio2"], mean_log, estimate, normalized)


def _normalized(space: ParameterSpace, name: str, params: dict[str, np.ndarray]) -> np.ndarray:
    """``params[name]`` mapped to [0, 1] as :meth:`ParameterSpace.normalize` maps it."""
    p = space.priors[name]
    v = np.asarray(params[name], dtype=float)
    if p.kind == "log-uniform":
        return np.log(v / p.low) / math.log(p.high / p.low)
    return (v - p.low) / (p.high - p.low)


def r2(true: np.ndarray, estimate: np.ndarray) -> float:
    """1 - MSE / Var(true), as the evaluation computes R² (NaN for constant truth)."""
    variance = float(np.var(true))
    if variance == 0:
        return math.nan
    return 1.0 - float(np.mean((np.asarray(estimate) - true) ** 2)) / variance


def oracle_r2(
    space: ParameterSpace, n: int = 200_000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """R² ceilings of ``n_particles``, ``frac_w``, ``radius_ti`` and ``radius_w``.

    The R² of the Bayes posterior mean of an oracle that sees the aggregate
    in 3D (N, every particle's material and exact radius) and, in addition,
    sigma_g exactly.  Since it knows more than any observer of one aggregate,
    the values are upper bounds on what any estimator from one image can
    reach on test data drawn from ``space``.  They are Monte-Carlo
    estimates over ``n`` draws; their sampling error is about
    (1 - R²) · sqrt(2 / n) relative.

    Parameters
    ----------
    space
        The dataset's priors.  Fixed parameters get no ceiling.
    n
        Number of draws of θ (>= 2).
    seed
        Seed of the draws, in [0, 2**64).

    Returns
    -------
    dict
        For each varied parameter of :data:`CEILING_PARAMETERS`:
        ``{"r2": ..., "r2_normalized": ...}``, the oracle's R² in physical
        units (the posterior mean of the value) and in the normalised units
        of :meth:`ParameterSpace.normalize` (the posterior mean of the
        normalised value).  ``n_particles`` is counted, so both are 1.

    Raises
    ------
    ValueError
        If ``n`` is not an integer >= 2 or ``seed`` is out of range.

    Examples
    --------
    >>> from heteroagg.data import default_config
    >>> ceiling = oracle_r2(default_config().params, n=50_000)
    >>> sorted(ceiling)
    ['frac_w', 'n_particles', 'radius_ti', 'radius_w']
    """
    draws = oracle_draws(space, n, seed)
    out = {}
    for name in CEILING_PARAMETERS:
        if name not in draws.estimate:
            continue
        true_norm = _normalized(space, name, draws.params)
        out[name] = {
            "r2": r2(draws.params[name], draws.estimate[name]),
            "r2_normalized": r2(true_norm, draws.estimate_normalized[name]),
        }
    return out


#: Parameters the volume observer estimates, in report order.
VOLUME_OBSERVER_PARAMETERS = ("frac_w", "radius_ti", "radius_w")

#: Draws whose particles are drawn at once (bounds memory).
_VOLUME_CHUNK = 16384


def _total_volumes(
    count: np.ndarray, median: np.ndarray, log_sigma: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Σ 4/3 π r³ over ``count`` radii r = median · sigma_g^z per draw (nm³)."""
    out = np.zeros(len(count))
    for start in range(0, len(count), _VOLUME_CHUNK):
        part = slice(start, start + _VOLUME_CHUNK)
        k = count[part]
        widest = int(k.max(initial=0))
        z = rng.standard_normal((len(k), widest))
        r = median[part, None] * np.exp(log_sigma[part, None] * z)
        present = np.arange(widest)[None, :] < k[:, None]
        out[part] = (4.0 / 3.0 * math.pi * r**3 * present).sum(axis=1)
    return out


def nearest_neighbour_r2(
    features: np.ndarray, targets: np.ndarray, neighbours: int = 64
) -> np.ndarray:
    """R² of the k-nearest-neighbour posterior mean of ``targets`` given ``features``.

    The first half of the rows is the reference sample; each row of the
    second half is estimated by the mean target of its ``neighbours`` nearest
    reference rows (features standardised), and scored against its own
    target.  For a smooth posterior mean and many draws this converges to the
    Bayes estimator's R² from below.

    Parameters
    ----------
    features
        (n, F) what the observer sees.
    targets
        (n, T) what it estimates.
    neighbours
        k.

    Returns
    -------
    numpy.ndarray
        (T,) R² on the second half.
    """
    from scipy.spatial import cKDTree

    features = np.asarray(features, dtype=float)
    targets = np.asarray(targets, dtype=float)
    half = len(features) // 2
    if not is_count(neighbours) or not 1 <= neighbours <= half:
        raise ValueError(
            f"neighbours must be an integer in [1, {half}] (half of the {len(features)} draws "
            f"are the reference), got {neighbours!r}"
        )
    scale = features.std(axis=0)
    f = (features - features.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    _, rows = cKDTree(f[:half]).query(f[half:], k=neighbours)
    rows = rows.reshape(len(rows), -1)  # (n, k), also for k = 1
    estimate = targets[:half][rows].mean(axis=1)
    return np.array([r2(targets[half:, j], estimate[:, j]) for j in range(targets.shape[1])])


def volume_observer_r2(
    space: ParameterSpace, n: int = 400_000, seed: int = 0, neighbours: int = 64
) -> dict[str, dict[str, float]]:
    """R² of an observer that counts the particles and weighs each material.

    It sees N and the total volume of TiO2 and of WO3 in the aggregate (what
    an image's integrated signal of each material carries), but not the
    particles one by one.  Between it and :func:`oracle_r2`, which sees every
    particle, lies what telling particles apart adds.  Its posterior mean is
    estimated by :func:`nearest_neighbour_r2` over ``n`` draws (half as the
    reference), so the values are slightly below the observer's exact R².

    Parameters
    ----------
    space
        The dataset's priors.
    n
        Number of draws of θ (>= 2 * neighbours).
    seed
        Seed of the draws, in [0, 2**64).
    neighbours
        k of the nearest-neighbour estimate.

    Returns
    -------
    dict
        For each varied parameter of :data:`VOLUME_OBSERVER_PARAMETERS`:
        ``{"r2": ..., "r2_normalized": ...}``, its R² in physical units and
        in the normalised units of :meth:`ParameterSpace.normalize`, as
        :func:`oracle_r2` gives them.

    Raises
    ------
    ValueError
        If ``n`` or ``neighbours`` is too small or ``seed`` is out of range.
    """
    n = _check_n(n)
    if not is_count(neighbours) or neighbours < 1:
        raise ValueError(f"neighbours must be an integer >= 1, got {neighbours!r}")
    if n < 2 * neighbours:
        raise ValueError(f"n={n} draws are too few for {neighbours} neighbours")
    rng = np.random.default_rng(check_uint64("seed", seed))
    params, n_particles, n_wo3 = _draw_theta(space, n, rng)
    log_sigma = np.log(params["sigma_g"])
    v_w = _total_volumes(n_wo3, params["radius_w"], log_sigma, rng)
    v_ti = _total_volumes(n_particles - n_wo3, params["radius_ti"], log_sigma, rng)
    features = np.column_stack([np.log(n_particles), np.log1p(v_w), np.log1p(v_ti)])
    chosen = [name for name in VOLUME_OBSERVER_PARAMETERS if name in space.varied]
    if not chosen:
        return {}
    targets = np.column_stack(
        [params[name] for name in chosen] + [_normalized(space, name, params) for name in chosen]
    )
    values = nearest_neighbour_r2(features, targets, neighbours)
    return {
        name: {"r2": float(values[j]), "r2_normalized": float(values[len(chosen) + j])}
        for j, name in enumerate(chosen)
    }
