"""heteroagg.truncated_normal against numerical integration and by round trips."""

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from heteroagg.truncated_normal import normal_behind, truncated_moments


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


def test_the_normal_behind_reproduces_the_moments():
    rng = np.random.default_rng(0)
    loc = rng.uniform(-0.3, 1.3, 500)
    scale = np.exp(rng.uniform(np.log(0.02), np.log(1.0), 500))
    mean, std = truncated_moments(loc, scale)
    found_loc, found_scale = normal_behind(mean, std)
    np.testing.assert_allclose(found_loc, loc, atol=1e-5)
    np.testing.assert_allclose(found_scale, scale, rtol=1e-5)
    # shapes are kept
    grid_loc, _ = normal_behind(mean.reshape(20, 25), std.reshape(20, 25))
    assert grid_loc.shape == (20, 25)


def test_moments_no_restriction_has_get_the_widest_one_with_their_mean():
    # near a bound a restricted normal spreads at most as the exponential law with its mean
    mean, std = np.array([0.03, 0.98, 0.5]), np.array([0.2, 0.1, 0.4])
    loc, scale = normal_behind(mean, std)
    found_mean, found_std = truncated_moments(loc, scale)
    np.testing.assert_allclose(found_mean, mean, rtol=1e-9)
    for k, m in enumerate(mean):  # the exponential law on [0, 1] with mean m, by quadrature
        rate = optimize.brentq(lambda r, m=m: exponential_moments(r)[0] - m, -200, 200)
        assert found_std[k] == pytest.approx(exponential_moments(rate)[1], rel=1e-2)
    # a mean outside the range or no spread: the normal itself
    odd_mean, odd_std = np.array([-0.1, 1.4, 0.5]), np.array([0.1, 0.2, 0.0])
    loc, scale = normal_behind(odd_mean, odd_std)
    np.testing.assert_array_equal(loc, odd_mean)
    np.testing.assert_array_equal(scale, odd_std)


def exponential_moments(rate):
    """Mean and deviation of the law on [0, 1] with density proportional to exp(-rate x)."""
    weight = lambda x, k: x**k * np.exp(-rate * x)  # noqa: E731
    z, m1, m2 = (integrate.quad(weight, 0, 1, args=(k,))[0] for k in range(3))
    return m1 / z, np.sqrt(m2 / z - (m1 / z) ** 2)
