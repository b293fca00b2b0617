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
#: Shares of the widest deviation a restricted normal with the reported mean can have
#: (that of the exponential law on [0, 1] with that mean): below EXACT_SHARE the normal
#: behind the moments is taken whole, above WIDE_SHARE the moments themselves, and a blend
#: in between.  Near the limit the inversion is ill-conditioned: a deviation reported 10 %
#: too wide would put the normal far beyond the bound and pull pooled estimates onto it.
EXACT_SHARE = 0.6
WIDE_SHARE = 0.9
#: Standard deviations beyond a bound past which the moments are found by quadrature
#: (the closed form loses its precision to cancellation further out).
TAIL = 10.0
#: Gauss-Legendre nodes of that quadrature.
TAIL_NODES = 96


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
    std = scale * np.sqrt(np.maximum(variance, 0.0))
    beyond = np.maximum(-loc, loc - 1.0) / scale  # deviations from the nearer bound, outside
    far = beyond > TAIL
    if far.any():
        gap, width = _tail_moments(beyond[far], scale[far])
        mean, std = np.array(mean, dtype=float), np.array(std, dtype=float)
        mean[far] = np.where(loc[far] < 0, gap, 1.0 - gap)
        std[far] = width
    return mean, std


def _tail_moments(beyond: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean distance from the nearer bound, and deviation, of a normal whose centre lies
    ``beyond`` deviations outside [0, 1].

    With x the distance from that bound and s = beyond x / scale, the law is proportional
    to exp(-s - s² / (2 beyond²)) on [0, beyond / scale]: smooth, and integrated exactly
    enough by Gauss-Legendre nodes over the part where it is not negligible.
    """
    nodes, weights = np.polynomial.legendre.leggauss(TAIL_NODES)
    top = np.minimum(beyond / scale, 80.0)[:, None]  # exp(-80): nothing beyond
    s = 0.5 * top * (nodes + 1.0)
    density = 0.5 * top * weights * np.exp(-s - s**2 / (2.0 * beyond[:, None] ** 2))
    total = density.sum(axis=1, keepdims=True)
    mean_s = (density * s).sum(axis=1, keepdims=True) / total
    var_s = (density * (s - mean_s) ** 2).sum(axis=1) / total[:, 0]
    unit = scale / beyond
    return mean_s[:, 0] * unit, np.sqrt(var_s) * unit


def normal_behind(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The normal N(loc, scale²) whose restriction to [0, 1] has this mean and deviation.

    Solved by damped Newton steps in (loc, log scale).  A restricted normal with
    a given mean spreads at most as the exponential law on [0, 1] with that mean;
    close to that limit the moments say little about where the normal behind
    them lies, and a small error in the reported deviation moves it far beyond
    the bound.  So the solution is taken whole only for deviations below
    :data:`EXACT_SHARE` of the limit, the moments themselves (loc = mean,
    scale = std) above :data:`WIDE_SHARE` of it, and a blend in between: the
    result changes continuously with the moments, also as the mean crosses 0
    or 1 (where the limit is 0).  A deviation of 0 or a mean outside (0, 1) is
    returned unchanged.

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
    share = scale[inside] / _exponential_std(_exponential_rate(loc[inside]))
    weight = np.clip((WIDE_SHARE - share) / (WIDE_SHARE - EXACT_SHARE), 0.0, 1.0)
    solve = inside[weight > 0]
    u, s, solved = _newton(loc[solve], scale[solve])
    w = np.where(solved, weight[weight > 0], 0.0)
    loc[solve] = w * u + (1.0 - w) * loc[solve]
    scale[solve] = w * s + (1.0 - w) * scale[solve]
    return loc.reshape(mean.shape), scale.reshape(mean.shape)


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
