"""Speed of the 3D model: sampler, batch sampler and descriptors.

Run with ``pytest benchmarks``; figures are recorded in docs/performance.md.
The cKDTree benchmark is the anchor for the descriptors, measured in the same
run on the same aggregate.
"""

import itertools

import pytest

import heteroagg
from heteroagg import ModelParams

REFERENCE = {"fractal_dim": 1.8, "prefactor": 1.3, "sigma_g": 1.2}


@pytest.mark.parametrize("n", [100, 1000])
def test_sample_aggregate(benchmark, n):
    params = ModelParams(n_particles=n, **REFERENCE)
    seeds = itertools.count()
    benchmark(lambda: heteroagg.sample_aggregate(params, next(seeds)))


@pytest.mark.parametrize("threads", [1, 2])
def test_sample_aggregates_batch_of_64(benchmark, threads):
    params = ModelParams(n_particles=100, **REFERENCE)
    roots = itertools.count()
    benchmark(lambda: heteroagg.sample_aggregates(params, next(roots), n=64, threads=threads))


@pytest.fixture(scope="module")
def aggregate_1000():
    return heteroagg.sample_aggregate(ModelParams(n_particles=1000, **REFERENCE), 1)


def test_descriptors_n1000(benchmark, aggregate_1000):
    benchmark(heteroagg.descriptors, aggregate_1000)


def test_anchor_ckdtree_query_pairs_n1000(benchmark, aggregate_1000):
    from scipy.spatial import cKDTree

    reach = 2.0 * aggregate_1000.radii.max() * (1.0 + 1e-3)

    def pairs():
        return cKDTree(aggregate_1000.centers).query_pairs(reach, output_type="ndarray")

    benchmark(pairs)


def _dense_spheres(giant: bool) -> heteroagg.Aggregate:
    """80 000 random spheres of radius 1 nm, about one per 8 nm^3, and optionally one of radius
    a third of the box (docs/model.md, "Descriptors")."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = 80_000
    side = (8.0 * n) ** (1 / 3)
    radii = np.ones(n)
    if giant:
        radii[0] = side / 3
    return heteroagg.Aggregate(rng.uniform(0, side, (n, 3)), radii, rng.integers(0, 2, n))


@pytest.mark.parametrize("giant", [False, True], ids=["uniform", "one-giant"])
def test_descriptors_80000_dense_spheres(benchmark, giant):
    aggregate = _dense_spheres(giant)
    benchmark(heteroagg.descriptors, aggregate)
