"""Pooling the estimates of several images of one sample."""

import numpy as np
import pytest

from heteroagg.pooling import PER_AGGREGATE, fit_shared_error, pool_sample
from heteroagg.truncated_normal import (
    EXACT_SHARE,
    _exponential_rate,
    _exponential_std,
    truncated_moments,
)

NAMES = ("n_particles", "frac_w", "radius_w")


def posterior_moments(likelihood_loc, likelihood_scale):
    """What a calibrated head reports for Gaussian likelihoods under a prior flat on [0, 1]:
    the moments of the normal restricted to [0, 1]."""
    return truncated_moments(likelihood_loc, likelihood_scale)


def test_pooled_estimate_is_the_posterior_of_the_product_of_the_images_likelihoods():
    rng = np.random.default_rng(3)
    loc = rng.uniform(0.02, 0.6, (5, 3))  # near the lower bound too
    scale = rng.uniform(0.02, 0.05, (5, 3))
    mu, sd = posterior_moments(loc, scale)
    # the moments lie where the likelihood behind them is recovered exactly
    assert (sd / _exponential_std(_exponential_rate(mu)) < EXACT_SHARE).all()
    pool = pool_sample(mu, sd, NAMES)
    grid = np.linspace(0.0, 1.0, 400_001)
    for k in (1, 2):  # brute force: the product of the likelihoods on [0, 1], normalised
        log_p = sum(
            -0.5 * ((grid - m) / s) ** 2 for m, s in zip(loc[:, k], scale[:, k], strict=True)
        )
        p = np.exp(log_p - log_p.max())
        p /= p.sum()
        mean = (grid * p).sum()
        assert pool.normalized[0, k] == pytest.approx(mean, abs=1e-6)
        assert pool.normalized_std[0, k] == pytest.approx(
            np.sqrt((p * (grid - mean) ** 2).sum()), rel=1e-4
        )
    assert pool.shared.tolist() == [False, True, True]
    assert np.all(pool.normalized[:, 1:] == pool.normalized[0, 1:])
    np.testing.assert_array_equal(pool.normalized[:, 0], mu[:, 0])  # each aggregate its own N
    np.testing.assert_array_equal(pool.normalized_std[:, 0], sd[:, 0])
    assert pool.images == 5 and PER_AGGREGATE == ("n_particles",)


def test_pooled_band_is_calibrated_for_calibrated_images_up_to_the_bounds():
    """Truths drawn from the flat prior, each image a Gaussian likelihood about the truth
    whose posterior on [0, 1] is reported: the pooled error over the pooled deviation would
    have a mean square of exactly 1 (the posterior variance is the posterior mean's squared
    error, on average over the prior); near the bounds the moments are kept as reported
    where the likelihood behind them is ill-determined, which costs a little of that."""
    rng = np.random.default_rng(11)
    trials, images = 4000, 6
    truth = rng.uniform(0, 1, (trials, 1, 3))
    scale = rng.uniform(0.01, 0.3, (trials, images, 3))
    mu, sd = posterior_moments(truth + scale * rng.standard_normal(scale.shape), scale)
    pooled_error, pooled_std, plain_error = [], [], []
    for t in range(trials):
        pool = pool_sample(mu[t], sd[t], NAMES)
        pooled_error.append(pool.normalized[0, 1:] - truth[t, 0, 1:])
        pooled_std.append(pool.normalized_std[0, 1:])
        plain_error.append(mu[t].mean(0)[1:] - truth[t, 0, 1:])
    z = np.array(pooled_error) / np.array(pooled_std)
    assert 0.95 < np.mean(z**2) < 1.15
    assert np.mean(np.square(pooled_error)) < 0.6 * np.mean(np.square(plain_error))


def test_pooling_near_a_bound_converges_on_the_truth():
    """Eight images of a sample whose truth lies near the lower bound: multiplying the
    reported moments would keep the estimate pulled inward and the band away from it."""
    rng = np.random.default_rng(12)
    truth, scale, images, trials = 0.05, 0.15, 8, 2000
    estimates, multiplied, held = [], [], 0
    for _ in range(trials):
        mu, sd = posterior_moments(truth + scale * rng.standard_normal(images), scale)
        pool = pool_sample(mu[:, None], sd[:, None], ["frac_w"])
        estimates.append(pool.normalized[0, 0])
        multiplied.append(np.sum(mu / sd**2) / np.sum(sd**-2.0))
        held += abs(pool.normalized[0, 0] - truth) <= pool.normalized_std[0, 0]
    error, earlier = np.mean(estimates) - truth, np.mean(multiplied) - truth
    assert 0 < error < 0.7 * earlier  # the bias of multiplying the moments, largely undone
    assert held / trials > 0.4  # multiplying them held it in a few per cent (5 % at 4 images)


def test_pooling_without_uncertainty_averages_and_one_image_is_left_alone():
    mu = np.array([[0.1, 0.2, 0.3], [0.5, 0.6, 0.9]])
    pool = pool_sample(mu, None, NAMES)
    assert pool.normalized_std is None
    np.testing.assert_allclose(pool.normalized, [[0.1, 0.4, 0.6], [0.5, 0.4, 0.6]])
    central = 0.45 + 0.1 * mu  # far from the bounds, a flat-prior posterior is the likelihood
    equal = pool_sample(central, np.full_like(mu, 0.01), NAMES)
    np.testing.assert_allclose(equal.normalized[:, 1:], central.mean(0)[1:][None].repeat(2, 0))
    np.testing.assert_allclose(
        equal.normalized_std[0], [0.01, 0.01 / np.sqrt(2), 0.01 / np.sqrt(2)]
    )
    one = pool_sample(mu[:1], np.full((1, 3), 0.2), NAMES)
    np.testing.assert_allclose(one.normalized, mu[:1], rtol=1e-12)
    np.testing.assert_allclose(one.normalized_std, 0.2)
    everything = pool_sample(mu, None, NAMES, per_aggregate=())
    assert everything.shared.all() and np.allclose(everything.normalized[:, 0], 0.3)


@pytest.mark.parametrize(
    ("mu", "sd", "kwargs", "match"),
    [
        (np.zeros((0, 3)), None, {}, "B >= 1"),
        (np.zeros((2, 2)), None, {}, r"\(B >= 1, 3\)"),
        (np.zeros(3), None, {}, "B >= 1"),
        (np.array([[0.1, np.nan, 0.2]]), None, {}, "not finite"),
        (np.zeros((2, 3)), np.zeros((3, 3)), {}, "normalized_std must be"),
        (np.zeros((2, 3)), -np.ones((2, 3)), {}, ">= 0"),
        (np.zeros((2, 3)), np.full((2, 3), np.inf), {}, "finite"),
        (np.zeros((2, 3)), None, {"per_aggregate": ("size",)}, "unknown parameters"),
    ],
)
def test_pooling_rejects_bad_input(mu, sd, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pool_sample(mu, sd, NAMES, **kwargs)


def test_a_zero_spread_image_dominates_without_dividing_by_zero():
    mu = np.array([[0.5, 0.2, 0.6], [0.5, 0.8, 0.4]])
    sd = np.array([[0.1, 0.0, 0.1], [0.1, 0.1, 0.1]])
    pool = pool_sample(mu, sd, NAMES)
    assert np.isfinite(pool.normalized).all() and np.isfinite(pool.normalized_std).all()
    assert pool.normalized[0, 1] == pytest.approx(0.2, abs=1e-6)
    assert pool.normalized[0, 2] == pytest.approx(0.5)  # by symmetry


def test_shared_error_widens_the_band_by_the_design_effect_of_correlated_images():
    rng = np.random.default_rng(5)
    trials, images, rho = 6000, 8, 0.3
    truth = rng.uniform(0.3, 0.7, (trials, 1, 3))
    sd = np.full((trials, images, 3), 0.05)
    common = np.sqrt(rho) * 0.05 * rng.standard_normal((trials, 1, 3))
    own = np.sqrt(1 - rho) * 0.05 * rng.standard_normal((trials, images, 3))
    mu = truth + common + own
    z_plain, z_shared = [], []
    for t in range(trials):
        plain = pool_sample(mu[t], sd[t], NAMES)
        shared = pool_sample(mu[t], sd[t], NAMES, shared_error=rho)
        # far from the bounds the wider band leaves the estimate where it was
        np.testing.assert_allclose(shared.normalized, plain.normalized, rtol=1e-9)
        z_plain.append((plain.normalized[0] - truth[t, 0]) / plain.normalized_std[0])
        z_shared.append((shared.normalized[0] - truth[t, 0]) / shared.normalized_std[0])
    design_effect = 1 + rho * (images - 1)
    assert np.std(np.array(z_plain)[:, 1:]) == pytest.approx(np.sqrt(design_effect), rel=0.03)
    assert np.std(np.array(z_shared)[:, 1:]) == pytest.approx(1.0, abs=0.03)
    assert np.mean(np.abs(np.array(z_shared)[:, 1:]) <= 1) == pytest.approx(0.6827, abs=0.015)


def test_shared_error_band_holds_for_images_of_unequal_spread():
    """One sharp image among blurry ones: the band must follow the error model
    itself, not the design effect of equal spreads (which is far too wide here)."""
    rng = np.random.default_rng(6)
    trials, rho = 6000, 0.5
    sd_one = np.array([0.01] + [0.1] * 9)
    sd = np.repeat(sd_one[:, None], 3, axis=1)
    z = []
    for _ in range(trials):
        common, own = rng.standard_normal(3), rng.standard_normal((10, 3))
        mu = 0.5 + sd * (np.sqrt(rho) * common + np.sqrt(1 - rho) * own)
        pool = pool_sample(mu, sd, NAMES, shared_error=rho)
        z.append((pool.normalized[0, 1:] - 0.5) / pool.normalized_std[0, 1:])
    assert np.std(z) == pytest.approx(1.0, abs=0.03)
    assert np.mean(np.abs(np.array(z)) <= 1) == pytest.approx(0.6827, abs=0.015)


def test_a_model_that_holds_n_particles_fixed_pools_every_parameter():
    names = ["frac_w", "radius_w"]
    mu = np.array([[0.2, 0.6], [0.4, 0.8]])
    pool = pool_sample(mu, np.full_like(mu, 0.02), names)
    assert pool.shared.all() and np.allclose(pool.normalized, [[0.3, 0.7], [0.3, 0.7]])


def test_shared_error_by_name_and_its_checks():
    mu = np.array([[0.5, 0.45, 0.55], [0.5, 0.55, 0.45], [0.4, 0.5, 0.5]])
    sd = np.full_like(mu, 0.02)
    pool = pool_sample(mu, sd, NAMES, shared_error={"frac_w": 1.0})
    assert pool.normalized_std[0, 1] == pytest.approx(0.02)  # fully shared: no gain from 3
    assert pool.normalized_std[0, 2] == pytest.approx(0.02 / np.sqrt(3))  # left out: independent
    assert pool.normalized_std[1, 0] == pytest.approx(0.02)  # per-aggregate: untouched
    for bad, match in [(-0.1, r"\[0, 1\]"), (1.5, r"\[0, 1\]"), (np.nan, r"\[0, 1\]"),
                       ({"size": 0.2}, "unknown parameters")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            pool_sample(mu, sd, NAMES, shared_error=bad)


def test_fit_shared_error_recovers_the_share_that_generated_the_errors():
    rng = np.random.default_rng(8)
    samples, images = 3000, 8
    rho = np.array([0.5, 0.0, 0.35])  # the first is per aggregate: no share reported
    truth = rng.uniform(0.2, 0.8, (samples, 3))
    sd = rng.uniform(0.02, 0.1, (samples, images, 3))
    z = np.sqrt(rho) * rng.standard_normal((samples, 1, 3)) + np.sqrt(
        1 - rho
    ) * rng.standard_normal((samples, images, 3))
    mu = truth[:, None, :] + sd * z
    fitted = fit_shared_error(mu, sd, truth, NAMES)
    assert set(fitted) == {"frac_w", "radius_w"}
    assert fitted["frac_w"] == pytest.approx(0.0, abs=0.02)
    assert fitted["radius_w"] == pytest.approx(0.35, abs=0.03)
    same, alike = np.repeat(mu[:, :1], images, axis=1), np.repeat(sd[:, :1], images, axis=1)
    jitter = 1e-9 * rng.standard_normal(same.shape)  # every image errs alike: all shared
    assert fit_shared_error(same + jitter, alike, truth, NAMES)["radius_w"] == pytest.approx(
        1.0, abs=1e-3
    )


def test_fit_shared_error_rejects_bad_input():
    mu, sd, truth = np.zeros((4, 3, 3)), np.ones((4, 3, 3)), np.zeros((4, 3))
    with pytest.raises(ValueError, match="S >= 2, B >= 2"):
        fit_shared_error(mu[:, :1], sd[:, :1], truth, NAMES)
    with pytest.raises(ValueError, match="true_normalized"):
        fit_shared_error(mu, sd, truth[:2], NAMES)
    with pytest.raises(ValueError, match="> 0"):
        fit_shared_error(mu, 0 * sd, truth, NAMES)
    with pytest.raises(ValueError, match="finite"):
        fit_shared_error(np.full_like(mu, np.nan), sd, truth, NAMES)
    assert fit_shared_error(mu, sd, truth, NAMES) == {"frac_w": 0.0, "radius_w": 0.0}  # no error
