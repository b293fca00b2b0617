"""heteroagg.learn.ceiling: the R² ceilings of an oracle that sees the aggregate in 3D."""

import math

import numpy as np
import pytest

pytest.importorskip("torch")  # heteroagg.learn imports torch; the ceiling module does not

from heteroagg import ModelParams
from heteroagg.data import default_config
from heteroagg.data.space import ParameterSpace, Prior
from heteroagg.learn.ceiling import (
    frac_w_posterior,
    log_median_posterior,
    nearest_neighbour_r2,
    oracle_draws,
    oracle_r2,
    volume_observer_r2,
)


def space(**overrides) -> ParameterSpace:
    """The default priors with some fields replaced."""
    priors = default_config().params.to_config()
    priors.update(overrides)
    return ParameterSpace(priors)


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def truncated_normal_means(m: float, tau: float, a: float, b: float) -> tuple[float, float]:
    """E[u] and E[e^u] of N(m, tau²) truncated to [a, b], in closed form."""
    alpha, beta = (a - m) / tau, (b - m) / tau
    z = _cdf(beta) - _cdf(alpha)
    mean_u = m + tau * (_phi(alpha) - _phi(beta)) / z
    mean_exp = math.exp(m + tau**2 / 2) * (_cdf(beta - tau) - _cdf(alpha - tau)) / z
    return mean_u, mean_exp


def test_grid_posterior_matches_the_truncated_normal():
    low, high = 2.0, 8.0
    a, b = math.log(low), math.log(high)
    cases = [(1.2, 0.3), (0.75, 0.05), (2.1, 0.2), (0.6, 0.15), (1.5, 2.0), (2.06, 0.01)]
    m = np.array([c[0] for c in cases])
    tau = np.array([c[1] for c in cases])
    median, norm = log_median_posterior(m, tau, Prior("log-uniform", low, high))
    for k, (mk, tk) in enumerate(cases):
        mean_u, mean_r = truncated_normal_means(mk, tk, a, b)
        assert median[k] == pytest.approx(mean_r, rel=1e-6)
        assert norm[k] == pytest.approx((mean_u - a) / (b - a), rel=1e-6)
    # a prior uniform in r multiplies by e^u: the normal shifts by tau²
    median, norm = log_median_posterior(m, tau, Prior("uniform", low, high))
    for k, (mk, tk) in enumerate(cases):
        mean_r = truncated_normal_means(mk + tk**2, tk, a, b)[1]
        assert median[k] == pytest.approx(mean_r, rel=1e-6)
        assert norm[k] == pytest.approx((mean_r - low) / (high - low), rel=1e-6)
    # no particles: the prior mean; sigma_g = 1: the median itself
    # and a mean log radius far beyond a bound (here by 20 tau): that bound
    median, _ = log_median_posterior(np.array([np.nan, 1.0, b + 0.2]),
                                     np.array([np.inf, 0.0, 0.01]),
                                     Prior("log-uniform", low, high))  # fmt: skip
    assert median[0] == pytest.approx((high - low) / math.log(high / low), rel=1e-9)
    assert median[1] == pytest.approx(math.e)
    assert median[2] == pytest.approx(high)


def test_radius_ceiling_follows_the_analytic_law_for_a_wide_prior():
    """Far from the prior's bounds the posterior mean of ln median is the mean log
    radius, with error variance ln²sigma_g / N_m: 1 - R² = E[ln²sigma_g / N_m] / Var(ln median)."""
    wide = space(
        n_particles={"prior": "log-uniform", "low": 60, "high": 200},
        frac_w={"prior": "uniform", "low": 0.3, "high": 0.5},
        radius_w={"prior": "log-uniform", "low": 0.01, "high": 1000.0},
        radius_ti={"prior": "log-uniform", "low": 0.01, "high": 1000.0},
        sigma_g={"prior": "uniform", "low": 1.2, "high": 2.0},
    )
    draws = oracle_draws(wide, n=20_000, seed=1)
    ceiling = oracle_r2(wide, n=20_000, seed=1)
    variance = math.log(1000.0 / 0.01) ** 2 / 12  # ln median is uniform
    log_sigma2 = np.log(draws.params["sigma_g"]) ** 2
    for name, count in (("radius_w", draws.n_wo3), ("radius_ti", draws.n_tio2)):
        expected = np.mean(log_sigma2 / count) / variance
        assert 1 - ceiling[name]["r2_normalized"] == pytest.approx(expected, rel=0.05)


def test_monodisperse_radii_give_the_median_exactly():
    mono = space(sigma_g=1.0)
    ceiling = oracle_r2(mono, n=2_000)
    for name in ("radius_ti", "radius_w"):
        assert ceiling[name]["r2"] == pytest.approx(1.0, abs=1e-12)
        assert ceiling[name]["r2_normalized"] == pytest.approx(1.0, abs=1e-12)


def test_the_posterior_mean_beats_the_naive_estimates():
    """Bayes-optimal under squared error: it beats N_W / N and the geometric mean."""
    prior = default_config().params
    draws = oracle_draws(prior, n=20_000, seed=2)
    p = draws.params
    n = p["n_particles"]

    def mse(a, b):
        return float(np.mean((a - b) ** 2))

    # N_W / N is the posterior mean except next to the prior's bounds
    naive = draws.n_wo3 / n
    assert mse(draws.estimate["frac_w"], p["frac_w"]) < mse(naive, p["frac_w"])
    for name in ("radius_ti", "radius_w"):
        geometric = np.exp(draws.mean_log_radius[name])
        assert mse(draws.estimate[name], p[name]) < 0.95 * mse(geometric, p[name])
        low, high = prior.priors[name].low, prior.priors[name].high
        true_norm = np.log(p[name] / low) / math.log(high / low)
        naive_norm = np.log(geometric / low) / math.log(high / low)
        assert mse(draws.estimate_normalized[name], true_norm) < mse(naive_norm, true_norm)
    # the counted N is exact
    np.testing.assert_array_equal(draws.estimate["n_particles"], n)


def test_frac_w_ceiling_matches_an_enumeration_over_n():
    lo_n, hi_n, low, high = 2, 7, 0.1, 0.9
    small = space(
        n_particles={"prior": "log-uniform", "low": lo_n, "high": hi_n},
        frac_w={"prior": "uniform", "low": low, "high": high},
        radius_ti=5.0,
        radius_w=3.0,
    )
    # exact: P(N = n) ∝ log((n + 1) / n); given N, frac_w is uniform on the interval
    # of values that round to each N_W, so the posterior error has variance |I|² / 12
    mse = 0.0
    for n in range(lo_n, hi_n + 1):
        weight = math.log((n + 1) / n) / math.log((hi_n + 1) / lo_n)
        for k in range(n + 1):
            width = max(0.0, min(high, (k + 0.5) / n) - max(low, (k - 0.5) / n))
            mse += weight * (width / (high - low)) * width**2 / 12
    expected = 1 - mse / ((high - low) ** 2 / 12)
    ceiling = oracle_r2(small, n=100_000, seed=3)
    assert ceiling["frac_w"]["r2"] == pytest.approx(expected, abs=0.03 * (1 - expected))
    assert ceiling["frac_w"]["r2_normalized"] == pytest.approx(ceiling["frac_w"]["r2"])


def test_draws_follow_the_space_priors():
    prior = space(radius_ti=5.0, radius_w=3.0)  # no radius posteriors: faster
    draws = oracle_draws(prior, n=50_000, seed=4)
    n = draws.params["n_particles"]
    assert set(np.unique(n)) <= set(range(10, 151)) and n.min() == 10 and n.max() == 150
    # the log-uniform integer prior weighs n by log((n + 1) / n)
    share = np.mean(n <= 20)
    expected = math.log(21 / 10) / math.log(151 / 10)
    assert share == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / n.size))
    # the sampler's count for the first draws
    sampler = [
        ModelParams(n_particles=int(k), frac_w=float(f)).n_wo3
        for k, f in zip(n[:2000], draws.params["frac_w"][:2000], strict=True)
    ]
    np.testing.assert_array_equal(draws.n_wo3[:2000], sampler)
    assert np.all((draws.params["sigma_g"] >= 1.1) & (draws.params["sigma_g"] <= 1.6))


def test_log_uniform_frac_w_posterior():
    prior = Prior("log-uniform", 0.05, 0.5)
    mean, norm = frac_w_posterior(np.array([10, 100]), np.array([1, 30]), prior)
    lo, hi = 0.05, 0.15  # N = 10, N_W = 1: [0.05, 0.15)
    assert mean[0] == pytest.approx((hi - lo) / math.log(hi / lo))
    assert norm[0] == pytest.approx(0.5 * math.log(lo * hi / 0.05**2) / math.log(10))
    assert mean[1] == pytest.approx(0.3, rel=1e-3)


def test_fixed_parameters_get_no_ceiling_and_bad_n_is_refused():
    fixed = space(frac_w=0.3, radius_ti=5.0, n_particles=40)
    ceiling = oracle_r2(fixed, n=1_000)
    assert set(ceiling) == {"radius_w"}
    assert oracle_r2(space(frac_w=0.3, radius_ti=5.0, radius_w=3.0, n_particles=40), n=10) == {}
    for bad in (0, 1, 2.5, True, "100"):
        with pytest.raises(ValueError, match="n must be"):
            oracle_r2(fixed, n=bad)
    with pytest.raises(ValueError, match="seed"):
        oracle_r2(fixed, n=10, seed=-1)


def test_ceilings_are_deterministic_and_bounded():
    prior = default_config().params
    a = oracle_r2(prior, n=5_000, seed=7)
    assert a == oracle_r2(prior, n=5_000, seed=7)
    assert a != oracle_r2(prior, n=5_000, seed=8)
    assert a["n_particles"] == {"r2": 1.0, "r2_normalized": 1.0}
    for name in ("frac_w", "radius_ti", "radius_w"):
        assert 0.5 < a[name]["r2"] < 1.0


def test_nearest_neighbours_recover_the_closed_form_frac_w_posterior():
    """Given (N, N_W), k-NN regression approaches the exact posterior mean's R²."""
    prior = default_config().params
    draws = oracle_draws(prior, n=100_000, seed=3)
    features = np.column_stack([draws.params["n_particles"], draws.n_wo3])
    target = ((draws.params["frac_w"] - 0.05) / 0.45)[:, None]
    knn = nearest_neighbour_r2(features, target, neighbours=32)[0]
    half = len(target) // 2
    exact = 1 - np.mean((draws.estimate_normalized["frac_w"][half:] - target[half:, 0]) ** 2) / (
        np.var(target[half:, 0])
    )
    assert exact - 0.01 < knn <= exact + 0.002
    one = nearest_neighbour_r2(features[:2000], target[:2000], neighbours=1)  # (n, 1) rows
    assert one.shape == (1,) and 0.0 < one[0] < exact
    for bad in (0, 5, 2.5):  # more neighbours than the 4 reference draws, or not a count
        with pytest.raises(ValueError, match="neighbours must be an integer in"):
            nearest_neighbour_r2(features[:8], target[:8], neighbours=bad)


def test_weighing_monodisperse_particles_counts_them():
    """With one radius per material, the volumes give N_W exactly: the 3D oracle's R²."""
    mono = space(sigma_g=1.0, radius_ti=5.0, radius_w=3.0)
    seen = volume_observer_r2(mono, n=60_000, seed=1, neighbours=16)
    assert set(seen) == {"frac_w"}
    exact = oracle_r2(mono)["frac_w"]
    assert seen["frac_w"]["r2_normalized"] == pytest.approx(exact["r2_normalized"], abs=0.01)
    assert seen["frac_w"]["r2"] == pytest.approx(exact["r2"], abs=0.01)


def test_volume_observer_lies_below_the_oracle_under_the_default_prior():
    prior = default_config().params
    seen = volume_observer_r2(prior, n=60_000, seed=2)
    ceiling = oracle_r2(prior)
    assert seen["frac_w"]["r2_normalized"] < 0.5 < ceiling["frac_w"]["r2_normalized"]
    for name in ("radius_ti", "radius_w"):
        for units in ("r2", "r2_normalized"):
            assert 0.3 < seen[name][units] < ceiling[name][units]
    with pytest.raises(ValueError, match="too few"):
        volume_observer_r2(prior, n=100, neighbours=64)
    with pytest.raises(ValueError, match="neighbours"):
        volume_observer_r2(prior, n=1000, neighbours=0)
