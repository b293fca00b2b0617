"""heteroagg.learn.brightness_observer: θ from the particles' radii and brightness alone."""

import itertools
import math

import numpy as np
import pytest

pytest.importorskip("torch")  # heteroagg.learn imports torch; this module does not

from heteroagg import ModelParams
from heteroagg.data import default_config
from heteroagg.data.space import ParameterSpace
from heteroagg.learn.brightness_observer import (
    ObserverGrid,
    _LogBrightnessLaw,
    _particle_terms,
    brightness_observer_draws,
    brightness_observer_r2,
    observe_particles,
    particle_ln_brightness,
    subset_likelihoods,
)
from heteroagg.learn.ceiling import frac_w_posterior, log_median_posterior


def space(**overrides) -> ParameterSpace:
    """The default priors with some fields replaced."""
    priors = default_config().params.to_config()
    priors.update(overrides)
    return ParameterSpace(priors)


class SharpLut:
    """A LUT whose materials differ 4.5-fold in brightness with a tiny spread."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, t_nm, extrapolate=False):
        return self.scale * (1.0 - np.exp(-0.004 * np.asarray(t_nm)))

    def spread(self, t_nm, extrapolate=False):
        return 1e-4 * self(t_nm)


SHARP = {"TiO2": SharpLut(1.0), "WO3": SharpLut(4.5)}


def test_subset_sums_match_enumeration():
    rng = np.random.default_rng(4)
    log_t, log_w = rng.normal(0, 3, (7, 3)), rng.normal(0, 3, (7, 3))
    got = subset_likelihoods(log_t, log_w, 7)
    for k in range(8):
        for c in range(3):
            total = 0.0
            for chosen in itertools.combinations(range(7), k):
                w = np.isin(np.arange(7), chosen)
                total += math.exp(np.where(w, log_w[:, c], log_t[:, c]).sum())
            assert got[c, k] == pytest.approx(math.log(total), abs=1e-10)
    # a particle that can only be TiO2 leaves no way to pick all seven as WO3
    log_w[0] = -np.inf
    assert np.all(subset_likelihoods(log_t, log_w, 7)[:, 7] == -np.inf)


def test_known_materials_give_the_closed_form_frac_w():
    s = default_config().params
    draws = brightness_observer_draws(s, 10, 3, materials_known=True, nodes=6, sigma_nodes=2)
    n = draws.params["n_particles"].astype(int)
    expected, expected_norm = frac_w_posterior(n, draws.n_wo3, s.priors["frac_w"])
    np.testing.assert_allclose(draws.estimate["frac_w"], expected, rtol=1e-12)
    np.testing.assert_allclose(draws.estimate_normalized["frac_w"], expected_norm, rtol=1e-12)


@pytest.mark.parametrize("kind", ["log-uniform", "uniform"])
@pytest.mark.parametrize("radius_error", [0.0, 0.2])
def test_known_materials_give_the_sufficient_statistic_posterior(kind, radius_error):
    # sigma_g fixed: the mean log radius of each material is sufficient, and the
    # measured log radii are normal with variance ln²sigma_g + radius_error²
    s = space(
        sigma_g=1.3,
        radius_w={"prior": kind, "low": 2.0, "high": 8.0},
        radius_ti={"prior": kind, "low": 2.0, "high": 10.0},
    )
    grid = ObserverGrid.from_space(s, nodes=600, sigma_nodes=1)
    ln_r = np.log([2.4, 3.1, 5.0, 2.2, 2.9, 6.5, 7.0, 4.4, 3.3])
    is_w = np.array([1, 0, 1, 0, 0, 1, 0, 0, 1], dtype=bool)
    got = observe_particles(grid, ln_r, is_wo3=is_w, radius_error=radius_error)
    spread = math.sqrt(math.log(1.3) ** 2 + radius_error**2)
    for name, mask in (("radius_w", is_w), ("radius_ti", ~is_w)):
        median, norm = log_median_posterior(
            np.array([ln_r[mask].mean()]),
            np.array([spread / math.sqrt(mask.sum())]),
            s.priors[name],
        )
        assert got[name][0] == pytest.approx(median[0], rel=2e-4)
        assert got[name][1] == pytest.approx(norm[0], abs=2e-4)


def test_brightness_that_never_misleads_tells_the_materials():
    s = default_config().params
    kwargs = {"nodes": 8, "sigma_nodes": 2, "luts": SHARP}
    known = brightness_observer_draws(s, 6, 7, materials_known=True, **kwargs)
    bright = brightness_observer_draws(s, 6, 7, **kwargs)
    for name in ("frac_w", "radius_ti", "radius_w"):
        np.testing.assert_allclose(bright.estimate[name], known.estimate[name], rtol=1e-9)


def test_brightness_of_a_known_material_tells_only_about_its_true_radius():
    s = default_config().params
    grid = ObserverGrid.from_space(s, nodes=12, sigma_nodes=3)
    ln_r = np.log([2.4, 3.1, 5.0, 2.2, 2.9, 6.5, 7.0, 4.4, 3.3])
    is_w = np.array([1, 0, 1, 0, 0, 1, 0, 0, 1], dtype=bool)
    ln_b = np.log([0.012, 0.002, 0.02, 0.0015, 0.003, 0.03, 0.007, 0.004, 0.014])
    for error in (0.0, 0.2):
        alone = observe_particles(grid, ln_r, is_wo3=is_w, radius_error=error)
        both = observe_particles(grid, ln_r, is_wo3=is_w, ln_brightness=ln_b, radius_error=error)
        for name in ("frac_w", "radius_ti", "radius_w"):
            if error == 0:
                # the radius is known, so the brightness adds nothing
                assert both[name][0] == pytest.approx(alone[name][0], rel=1e-9)
            elif name != "frac_w":
                # a measured radius: the brightness, drawn at the true size, moves the estimate
                assert abs(both[name][0] - alone[name][0]) > 1e-3


def test_particles_that_look_alike_leave_the_count_at_its_prior():
    # equal medians and equal LUTs: neither radius nor brightness tells the
    # materials apart, so the posterior of the WO3 count is its prior
    same = {"TiO2": SharpLut(1.0), "WO3": SharpLut(1.0)}
    grid = ObserverGrid.from_space(space(radius_ti=4.0, radius_w=4.0), sigma_nodes=3)
    ln_r = np.log([2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 3.2, 4.4, 2.8, 5.2])
    ln_b = np.log(same["TiO2"](2.0 * np.exp(ln_r)))
    got = observe_particles(grid, ln_r, ln_brightness=ln_b, luts=same)
    n = ln_r.size
    k = np.arange(n + 1)
    lo, hi = np.maximum(0.05, (k - 0.5) / n), np.minimum(0.5, (k + 0.5) / n)
    mass = np.clip(hi - lo, 0, None)
    prior_mean = float((mass * 0.5 * (lo + np.maximum(lo, hi))).sum() / mass.sum())
    assert got["frac_w"][0] == pytest.approx(prior_mean, rel=1e-9)
    assert got["frac_w"][0] == pytest.approx(0.275, abs=0.01)  # near the prior's centre


def test_integral_over_the_true_radius_matches_dense_integration():
    s = default_config().params
    grid = ObserverGrid.from_space(s, nodes=5, sigma_nodes=3)
    law = _LogBrightnessLaw(_shipped_luts())
    rng = np.random.default_rng(0)
    # particles as the model makes them: TiO2 and WO3 in turn, brightness drawn at the true size
    ln_r = np.log(rng.uniform(1.5, 10.0, 6))
    material = np.arange(6) % 2
    laws = [law(m, 2.0 * np.exp(ln_r)) for m in (0, 1)]
    mean = np.where(material == 1, laws[1][0], laws[0][0])
    var = np.where(material == 1, laws[1][1], laws[0][1])
    ln_b = mean + np.sqrt(var) * rng.standard_normal(6)
    x = np.linspace(-0.8, 4.0, 48001)
    for e in (0.05, 0.3):
        ln_seen = ln_r + e * rng.standard_normal(6)
        got = np.stack(
            [
                _particle_terms(ln_seen, ln_b, grid.ln_median_wo3, grid.ln_sigma, e, law, m)
                for m in (0, 1)
            ]
        )
        dense = np.empty_like(got)
        for m in (0, 1):
            mu, var = law(m, 2.0 * np.exp(x))
            for i, a, b in itertools.product(range(6), range(5), range(3)):
                u, ls = grid.ln_median_wo3[a], grid.ln_sigma[b]
                f = _normal(ln_seen[i], x, e**2) * _normal(x, u, ls**2) * _normal(ln_b[i], mu, var)
                # the module drops the two factors 1 / sqrt(2 pi)
                dense[m, i, a, b] = math.log(_trapezoid(f, x)) + math.log(2 * math.pi)
        best = dense.max(axis=(0, 2, 3), keepdims=True)
        # where a particle's likelihood matters, to 3 %; far below, far below
        near = dense > best - 15
        np.testing.assert_allclose(got[near], dense[near], atol=0.03)
        assert np.all(got[~near] < best.repeat(5, 2).repeat(3, 3).repeat(2, 0)[~near] - 10)


def _trapezoid(f, x):
    return float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(x)))


def _normal(x, mean, var):
    return np.exp(-0.5 * (x - mean) ** 2 / var) / np.sqrt(2 * math.pi * var)


def _shipped_luts():
    from heteroagg.stem import default_lut

    return {m: default_lut(m) for m in ("TiO2", "WO3")}


def test_draws_are_a_pure_function_of_the_seed():
    s = default_config().params
    a = brightness_observer_r2(s, 3, 11, nodes=5, sigma_nodes=2, radius_error=0.1)
    b = brightness_observer_r2(s, 3, 11, nodes=5, sigma_nodes=2, radius_error=0.1)
    assert a == b
    assert sorted(a) == ["frac_w", "radius_ti", "radius_w"]
    c = brightness_observer_r2(s, 3, 12, nodes=5, sigma_nodes=2, radius_error=0.1)
    assert a != c


def test_hidden_particles_count_but_tell_nothing():
    # materials known for the seen particles: given N_W = k, the seen pattern
    # has probability C(hidden, k - seen WO3) / C(N, k), whatever the radii
    s = default_config().params
    grid = ObserverGrid.from_space(s, nodes=200, sigma_nodes=1)
    ln_r = np.log([2.4, 3.1, 5.0, 2.2, 2.9] + [np.nan] * 7)
    is_w = np.array([1, 0, 1, 0, 0] + [0] * 7, dtype=bool)
    hidden = np.arange(12) >= 5
    got = observe_particles(grid, ln_r, is_wo3=is_w, hidden=hidden)
    low, high = s.priors["frac_w"].low, s.priors["frac_w"].high
    weight, mean = [], []
    for k in range(13):
        a, b = max((k - 0.5) / 12, low), min((k + 0.5) / 12, high)
        if b <= a or not 2 <= k <= 9:
            continue
        weight.append((b - a) * math.comb(7, k - 2) / math.comb(12, k))
        mean.append(0.5 * (a + b))
    expected = np.dot(weight, mean) / np.sum(weight)
    assert got["frac_w"][0] == pytest.approx(expected, rel=1e-9)
    # the median radii follow the seen particles of each material alone
    seen = observe_particles(grid, ln_r[:5], is_wo3=is_w[:5])
    for name in ("radius_ti", "radius_w"):
        assert got[name] == pytest.approx(seen[name], rel=1e-9)


def test_hiding_a_particle_ignores_its_values_and_moves_frac_w_its_way():
    s = default_config().params
    grid = ObserverGrid.from_space(s, nodes=8, sigma_nodes=2)
    is_w = np.arange(10) < 3
    ln_r = np.log(np.linspace(2.5, 5.0, 10))
    law = _LogBrightnessLaw(SHARP)
    ln_b = np.where(is_w, law(1, 2 * np.exp(ln_r))[0], law(0, 2 * np.exp(ln_r))[0])
    seen = observe_particles(grid, ln_r, ln_brightness=ln_b, luts=SHARP)["frac_w"][0]
    for index, direction in ((0, -1), (9, 1)):  # a WO3 particle, a TiO2 one
        hidden = np.arange(10) == index
        got = observe_particles(grid, ln_r, ln_brightness=ln_b, luts=SHARP, hidden=hidden)
        r, b = ln_r.copy(), ln_b.copy()
        r[index], b[index] = np.nan, np.nan
        assert observe_particles(grid, r, ln_brightness=b, luts=SHARP, hidden=hidden) == got
        assert direction * (got["frac_w"][0] - seen) > 0.005


def test_drawn_brightness_has_the_luts_mean_and_orientation_spread():
    from heteroagg.stem import default_lut

    z = np.random.default_rng(2).standard_normal(200_000)
    for material, is_w in (("TiO2", False), ("WO3", True)):
        lut = default_lut(material)
        for radius in (2.5, 6.0):
            b = np.exp(particle_ln_brightness(np.full(z.size, radius), np.full(z.size, is_w), z))
            assert b.mean() == pytest.approx(float(lut(2 * radius, extrapolate=True)), rel=0.005)
            spread = float(lut.spread(2 * radius, extrapolate=True))
            assert b.std() == pytest.approx(spread, rel=0.03)


def test_bad_input_is_refused():
    s = default_config().params
    grid = ObserverGrid.from_space(s, nodes=4, sigma_nodes=2)
    ln_r = np.log([3.0, 4.0])
    with pytest.raises(ValueError, match="give ln_brightness"):
        observe_particles(grid, ln_r)
    with pytest.raises(ValueError, match="radius_error"):
        observe_particles(grid, ln_r, is_wo3=[0, 1], radius_error=-0.1)
    with pytest.raises(ValueError, match="radius_error"):
        observe_particles(grid, ln_r, is_wo3=[0, 1], radius_error=True)
    with pytest.raises(ValueError, match="shape"):
        observe_particles(grid, ln_r, is_wo3=[0, 1, 1])
    with pytest.raises(ValueError, match="ln_radius"):
        observe_particles(grid, np.array([np.nan]), is_wo3=[0])
    with pytest.raises(ValueError, match="hidden"):
        observe_particles(grid, ln_r, is_wo3=[0, 1], hidden=[True, True])
    with pytest.raises(ValueError, match="hidden"):
        observe_particles(grid, ln_r, is_wo3=[0, 1], hidden=[0, 1])
    with pytest.raises(ValueError, match="seen particles' ln_brightness"):
        observe_particles(grid, ln_r, ln_brightness=[np.nan, -4.0])
    with pytest.raises(ValueError, match="luts needs"):
        observe_particles(grid, ln_r, ln_brightness=[-4.0, -4.0], luts={"TiO2": SHARP["TiO2"]})
    with pytest.raises(ValueError, match="impossible"):
        # eight WO3 particles of ten: frac_w <= 0.5 allows at most five
        observe_particles(grid, np.log(np.full(10, 4.0)), is_wo3=np.arange(10) < 8)
    with pytest.raises(ValueError, match="sigma_g > 1"):
        ObserverGrid.from_space(space(sigma_g=1.0))
    with pytest.raises(ValueError, match="nodes"):
        ObserverGrid.from_space(s, nodes=0)
    # numpy numbers are numbers
    from_numpy = ObserverGrid.from_space(s, nodes=np.int64(4), sigma_nodes=np.int32(2))
    np.testing.assert_array_equal(from_numpy.ln_median_tio2, grid.ln_median_tio2)
    np.testing.assert_array_equal(
        observe_particles(grid, ln_r, is_wo3=[0, 1], radius_error=np.float32(0.25))["frac_w"],
        observe_particles(grid, ln_r, is_wo3=[0, 1], radius_error=0.25)["frac_w"],
    )
    with pytest.raises(ValueError, match="n must be"):
        brightness_observer_draws(s, 1)


def test_a_fixed_frac_w_counts_its_wo3_particles_as_the_sampler_does():
    # 0.29 x 50 rounds to 15 WO3 particles (a decimal half, rounded up), not 14
    from heteroagg.learn.brightness_observer import brightness_observer_draws

    fields = ModelParams().as_dict()
    fields.update(
        n_particles=50,
        frac_w=0.29,
        radius_ti={"prior": "uniform", "low": 3.0, "high": 6.0},
        radius_w={"prior": "uniform", "low": 3.0, "high": 6.0},
        sigma_g={"prior": "uniform", "low": 1.1, "high": 1.4},
    )
    space = ParameterSpace(fields)
    assert ModelParams(n_particles=50, frac_w=0.29).n_wo3 == 15
    draws = brightness_observer_draws(
        space, n=2, seed=0, materials_known=True, nodes=8, sigma_nodes=3
    )
    assert np.all(np.isfinite(draws.estimate["radius_w"]))
