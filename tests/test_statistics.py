"""Statistical evidence that the model is right (ensemble tests, marked slow)."""

import itertools

import numpy as np
import pytest

import heteroagg
from heteroagg import ModelParams
from reference import brute_contacts, geometric_mean_radius, radius_of_gyration

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("fractal_dim", "prefactor", "sigma_g"),
    [(1.8, 1.3, 1.2), (1.5, 2.0, 1.0), (2.2, 1.0, 1.3), (2.6, 0.9, 1.1)],
)
def test_ensemble_fit_recovers_fractal_dimension_and_prefactor(fractal_dim, prefactor, sigma_g):
    log_n, log_ratio = [], []
    for n in (16, 32, 64, 128, 256):
        p = ModelParams(
            n_particles=n,
            fractal_dim=fractal_dim,
            prefactor=prefactor,
            sigma_g=sigma_g,
            frac_w=0.3,
            segregation=0.3,
        )
        for agg in heteroagg.sample_aggregates(p, seeds=1000 + n, n=8):
            rg = radius_of_gyration(agg.centers, agg.radii)
            log_n.append(np.log(n))
            log_ratio.append(np.log(rg / geometric_mean_radius(agg.radii)))
    # least squares of log N = log k_f + D_f log(R_g / r_geo)
    slope, intercept = np.polyfit(log_ratio, log_n, 1)
    assert slope == pytest.approx(fractal_dim, abs=0.05)
    assert np.exp(intercept) == pytest.approx(prefactor, rel=0.15)


def hetero_fractions(params: ModelParams, count: int, root: int) -> np.ndarray:
    out = []
    for agg in heteroagg.sample_aggregates(params, seeds=root, n=count):
        pairs = brute_contacts(agg.centers, agg.radii, 1e-6)
        m = agg.materials
        out.append(np.mean(m[pairs[:, 0]] != m[pairs[:, 1]]))
    return np.array(out)


@pytest.mark.parametrize(("n", "frac_w"), [(40, 0.3), (100, 0.5), (25, 0.12)])
def test_random_mixing_matches_random_labelling(n, frac_w):
    p = ModelParams(n_particles=n, frac_w=frac_w, radius_ti=4.0, radius_w=4.0, segregation=0.0)
    nw = p.n_wo3
    expected = 2.0 * nw * (n - nw) / (n * (n - 1))
    f = hetero_fractions(p, 400, root=n)
    stderr = f.std(ddof=1) / np.sqrt(len(f))
    assert abs(f.mean() - expected) < 4.0 * stderr + 1e-3


def test_hetero_fraction_falls_monotonically_with_segregation():
    levels = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    means = []
    for k, s in enumerate(levels):
        p = ModelParams(n_particles=80, frac_w=0.4, segregation=s)
        means.append(hetero_fractions(p, 150, root=500 + k).mean())
    assert all(a > b for a, b in itertools.pairwise(means)), means
    assert means[0] > 3 * means[-1]
