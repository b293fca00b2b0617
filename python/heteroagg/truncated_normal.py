"""Normal distributions restricted to the prior's range [0, 1] of a normalised parameter.

A network trained by the Gaussian likelihood on targets in [0, 1] reports the
mean and standard deviation of its posterior, and that posterior lives on
[0, 1]: near a bound its mean is pulled inward and its spread shrunk.  Twins
drawn from it, and estimates pooled over images, need the normal behind it:
the N(loc, scale²) whose restriction to [0, 1] has the reported moments.
Needs neither torch nor onnxruntime.
"""

from __future__ import annotations

import numpy as np

#: Newton steps of :func:`normal_behind` before it gives up on an element.
MAX_STEPS = 40
#: How closely :func:`normal_behind` matches the moments (normalised units).
TOLERANCE = 1e-9
#: Deviations from both bounds beyond which a normal is its own restriction (the
#: restriction moves its moments by less than 1e-8 of a deviation).
FAR_FROM_BOUNDS = 6.0
#: The normal that stands for the exponential limit: its scale, at most WIDEST_SCALE, puts
#: [0, 1] WIDEST_TAIL deviations beyond its centre, where the moments keep their precision
#: and its curvature bends the exponent by at most 1 / (2 WIDEST_TAIL²) over the law's width.
WIDEST_SCALE = 100.0
WIDEST_TAIL = 30.0


def truncated_moments(loc: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of N(loc, scale²) restricted to [0, 1].

    Parameters
    ----------
    loc, scale
        Arrays of one shape (``scale`` > 0), or broadcastable.

    Returns
    -------
    (mean, std)
        Arrays of the broadcast shape.
    """
    from scipy.special import log_ndtr

    loc, scale = np.broadcast_arrays(np.asarray(loc, float), np.asarray(scale, float))
    a, b = -loc / scale, (1.0 - loc) / scale
    # an interval in the upper tail is mirrored into the lower one, where the normal's
    # log CDF keeps its precision
    flip = a > 0
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    log_cdf_a, log_cdf_b = log_ndtr(a), log_ndtr(b)
    with np.errstate(divide="ignore"):
        log_z = log_cdf_b + np.log1p(-np.exp(log_cdf_a - log_cdf_b))
    log_pdf_a = -0.5 * a**2 - 0.5 * np.log(2 * np.pi)
    log_pdf_b = -0.5 * b**2 - 0.5 * np.log(2 * np.pi)
    ra, rb = np.exp(log_pdf_a - log_z), np.exp(log_pdf_b - log_z)
    shift = ra - rb  # mean of the standard normal restricted to [a, b]
    variance = 1.0 + a * ra - b * rb - shift**2
    mean = loc + scale * np.where(flip, -shift, shift)
    return mean, scale * np.sqrt(np.maximum(variance, 0.0))


def normal_behind(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The normal N(loc, scale²) whose restriction to [0, 1] has this mean and deviation.

    Solved by damped Newton steps in (loc, log scale).  A restricted normal
    with a given mean spreads less than the exponential law on [0, 1] with
    that mean (the limit of ever wider normals far beyond a bound): moments
    at least that wide get that limit, the widest restricted normal with the
    mean, which tells almost nothing about the parameter.  A mean outside
    (0, 1) or a deviation of 0 is returned unchanged: the normal itself.

    Parameters
    ----------
    mean, std
        Reported moments, arrays of one shape (or broadcastable).

    Returns
    -------
    (loc, scale)
        Arrays of the broadcast shape.
    """
    mean, std = np.broadcast_arrays(np.asarray(mean, float), np.asarray(std, float))
    loc, scale = mean.astype(float).ravel(), std.astype(float).ravel()
    near = (loc < FAR_FROM_BOUNDS * scale) | (1.0 - loc < FAR_FROM_BOUNDS * scale)
    inside = np.flatnonzero(
        np.isfinite(loc) & np.isfinite(scale) & (loc > 0) & (loc < 1) & (scale > 0) & near
    )
    rate = _exponential_rate(loc[inside])
    feasible = scale[inside] < _exponential_std(rate)
    solvable = inside[feasible]
    u, s, solved = _newton(loc[solvable], scale[solvable])
    loc[solvable], scale[solvable] = u, s
    # the widest: the exponential law, as a normal of scale WIDEST_SCALE far beyond a bound
    wide = np.concatenate([inside[~feasible], solvable[~solved]])
    wide_rate = _exponential_rate(mean.ravel()[wide])
    # a normal that far beyond the bound where the law's mass lies is the exponential, up
    # to a curvature of 1 / (2 (rate scale)²) over the law's width
    wide_scale = np.minimum(WIDEST_SCALE, WIDEST_TAIL / np.maximum(np.abs(wide_rate), 1e-300))
    bound = np.where(wide_rate > 0, 0.0, 1.0)  # where the law's mass lies
    wide_loc = bound - wide_rate * wide_scale**2
    loc[wide] = _loc_with_mean(mean.ravel()[wide], wide_scale, wide_loc)
    scale[wide] = wide_scale
    return loc.reshape(mean.shape), scale.reshape(mean.shape)


def _loc_with_mean(mean: np.ndarray, scale: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """The loc near ``guess`` at which N(loc, scale²) restricted to [0, 1] has ``mean``
    (bisection: the restricted mean rises with loc)."""
    reach = 0.5 * np.abs(guess) + scale
    low, high = guess - reach, guess + reach
    for _ in range(64):
        middle = 0.5 * (low + high)
        below = truncated_moments(middle, scale)[0] < mean
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return 0.5 * (low + high)


def _exponential_rate(mean: np.ndarray) -> np.ndarray:
    """The rate r of the law on [0, 1] with density proportional to exp(-r x) and this mean."""
    low = np.full_like(mean, -1.0) / np.maximum(1.0 - mean, 1e-300) - 10.0
    high = 1.0 / np.maximum(mean, 1e-300) + 10.0
    for _ in range(64):  # the bracket, at most about 1e4 wide, shrinks to its float spacing
        middle = 0.5 * (low + high)
        above = _exponential_mean(middle) > mean  # the mean falls as the rate rises
        low, high = np.where(above, middle, low), np.where(above, high, middle)
    return 0.5 * (low + high)


def _exponential_mean(rate: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        small = np.abs(rate) < 1e-6
        r = np.where(small, 1.0, rate)
        mean = 1.0 / r - 1.0 / np.expm1(r)
    return np.where(small, 0.5 - rate / 12.0, mean)


def _exponential_std(rate: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        small = np.abs(rate) < 1e-4
        r = np.where(small, 1.0, rate)
        half = 0.5 * r
        variance = 1.0 / r**2 - 0.25 / np.sinh(half) ** 2
    return np.sqrt(np.where(small, 1.0 / 12.0 - rate**2 / 720.0, variance))


def _newton(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loc, scale, solved) matching both moments where Newton steps get there."""
    target = np.stack([mean, std])
    u, v = mean.copy(), np.log(std)
    residual = _residual(u, v, target)
    active = np.arange(len(u))
    h = 1e-6
    for _ in range(MAX_STEPS):
        active = active[np.abs(residual[:, active]).max(axis=0) >= TOLERANCE]
        if not len(active):
            break
        ua, va, ta, ra = u[active], v[active], target[:, active], residual[:, active]
        size = np.abs(ra).max(axis=0)
        ju = (_residual(ua + h, va, ta) - _residual(ua - h, va, ta)) / (2 * h)
        jv = (_residual(ua, va + h, ta) - _residual(ua, va - h, ta)) / (2 * h)
        with np.errstate(all="ignore"):
            det = ju[0] * jv[1] - jv[0] * ju[1]
            du = np.nan_to_num((jv[1] * ra[0] - jv[0] * ra[1]) / det)
            dv = np.clip(np.nan_to_num((ju[0] * ra[1] - ju[1] * ra[0]) / det), -2.0, 2.0)
        step = np.ones_like(ua)
        for _ in range(20):  # halve each element's step until its residual falls
            trial = _residual(ua - step * du, va - step * dv, ta)
            better = np.abs(trial).max(axis=0) < size
            if better.all():
                break
            step = np.where(better, step, step / 2)
        u[active] = np.where(better, ua - step * du, ua)
        v[active] = np.where(better, va - step * dv, va)
        residual[:, active] = np.where(better, trial, ra)
        active = active[better]  # an element that cannot improve stops
    solved = np.abs(residual).max(axis=0) < 1e3 * TOLERANCE
    return u, np.exp(v), solved


def _residual(loc: np.ndarray, log_scale: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, n) moments of the restricted normal less the target moments."""
    with np.errstate(all="ignore"):
        mean, std = truncated_moments(loc, np.exp(np.clip(log_scale, -30.0, 30.0)))
    out = np.stack([mean, std]) - target
    return np.where(np.isfinite(out), out, np.inf)
