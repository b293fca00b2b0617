"""heteroagg.truncated_normal against numerical integration and by round trips."""

import numpy as np
import pytest
from scipy import integrate, stats

from heteroagg.truncated_normal import EXACT_SHARE, normal_behind, truncated_moments


def integrated_moments(loc, scale):
    """Mean and deviation of N(loc, scale²) on [0, 1], by quadrature."""
    weight = lambda x, k: x**k * stats.norm.pdf(x, loc, scale)  # noqa: E731
    z, m1, m2 = (integrate.quad(weight, 0, 1, args=(k,), epsabs=0, epsrel=1e-12)[0]
                 for k in range(3))  # fmt: skip
    mean = m1 / z
    return mean, np.sqrt(m2 / z - mean**2)


@pytest.mark.parametrize(
    ("loc", "scale"),
    [(0.5, 0.05), (0.5, 3.0), (0.02, 0.05), (-0.3, 0.1), (1.2, 0.4), (3.0, 0.2), (-2.0, 0.3)],
)
def test_moments_match_quadrature(loc, scale):
    mean, std = truncated_moments(loc, scale)
    expected = integrated_moments(loc, scale)
    assert mean == pytest.approx(expected[0], rel=1e-9, abs=1e-12)
    assert std == pytest.approx(expected[1], rel=1e-7)


def shifted_moments(loc, scale):
    """Mean and deviation by quadrature with the exponent shifted, for centres far out."""
    weight = lambda x, k: x**k * np.exp(-(x * x - 2 * x * loc) / (2 * scale**2))  # noqa: E731
    edge = min(1.0, 60 * scale**2 / abs(loc))  # where the density has fallen by e^-60
    z, m1 = (integrate.quad(weight, 0, edge, args=(k,), epsabs=0, epsrel=1e-12)[0] for k in (0, 1))
    mean = m1 / z
    spread = lambda x: (x - mean) ** 2 * weight(x, 0)  # noqa: E731
    return mean, np.sqrt(integrate.quad(spread, 0, edge, epsabs=0, epsrel=1e-12)[0] / z)


@pytest.mark.parametrize(
    ("loc", "scale"), [(-10.0, 0.01), (-1e4, 1.0), (-0.2, 0.019), (-0.2, 0.021)]
)
def test_moments_far_beyond_a_bound_keep_their_precision(loc, scale):
    expected = shifted_moments(loc, scale)
    for sign, shift in ((1, 0.0), (-1, 1.0)):  # below 0, and mirrored above 1
        mean, std = truncated_moments(shift + sign * loc, scale)
        assert shift + sign * mean == pytest.approx(expected[0], rel=1e-9)
        assert std == pytest.approx(expected[1], rel=1e-9)


def limit_share(mean, std):
    """The deviation as a share of the widest a restricted normal with that mean has."""
    from heteroagg.truncated_normal import _exponential_rate, _exponential_std

    return std / _exponential_std(_exponential_rate(mean))


def test_the_normal_behind_reproduces_the_moments():
    rng = np.random.default_rng(0)
    loc = rng.uniform(-0.3, 1.3, 2000)
    scale = np.exp(rng.uniform(np.log(0.02), np.log(1.0), 2000))
    mean, std = truncated_moments(loc, scale)
    found_loc, found_scale = normal_behind(mean, std)
    exact = limit_share(mean, std) < EXACT_SHARE
    assert exact.sum() > 500
    np.testing.assert_allclose(found_loc[exact], loc[exact], atol=1e-5)
    np.testing.assert_allclose(found_scale[exact], scale[exact], rtol=1e-5)
    # shapes are kept
    grid_loc, _ = normal_behind(mean.reshape(40, 50), std.reshape(40, 50))
    assert grid_loc.shape == (40, 50)


def test_near_the_widest_the_moments_are_taken_as_they_are_and_nothing_jumps():
    # at or beyond WIDE_SHARE of the limit, and outside (0, 1): the moments themselves
    mean, std = np.array([0.03, 0.98, 0.5, -0.1, 1.4, 0.5]), np.array([0.2, 0.1, 0.4, 0.1, 0.2, 0])
    loc, scale = normal_behind(mean, std)
    np.testing.assert_array_equal(loc, mean)
    np.testing.assert_array_equal(scale, std)
    # continuous as the deviation nears the limit and as the mean crosses a bound
    widths = np.linspace(0.5, 1.0, 501) * limit_share(0.1, 1.0) ** -1
    loc, scale = normal_behind(np.full_like(widths, 0.1), widths)
    assert np.abs(np.diff(loc)).max() < 0.01 and np.abs(np.diff(scale)).max() < 0.01
    means = np.linspace(-0.002, 0.002, 401)
    loc, scale = normal_behind(means, np.full_like(means, 0.03))
    assert np.abs(np.diff(loc)).max() < 1e-4 and np.abs(np.diff(scale)).max() < 1e-4
