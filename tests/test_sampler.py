import time

import numpy as np
import pytest

import heteroagg
from heteroagg import GenerationError, ModelParams
from reference import (
    brute_contacts,
    geometric_mean_radius,
    homo_clusters,
    n_components,
    pair_distances,
    radius_of_gyration,
)

CASES = [
    ModelParams(),
    ModelParams(n_particles=2),
    ModelParams(n_particles=150, sigma_g=1.0, overlap=0.15, segregation=0.5),
    ModelParams(n_particles=90, sigma_g=1.5, frac_w=0.5, fractal_dim=1.3, prefactor=2.0),
    ModelParams(n_particles=120, fractal_dim=2.5, prefactor=1.0, segregation=1.0, overlap=0.05),
    ModelParams(n_particles=60, frac_w=0.0, fractal_dim=2.2),
    ModelParams(n_particles=60, frac_w=1.0, radius_w=2.0),
    ModelParams(n_particles=2000, sigma_g=1.3, segregation=0.2),
]


@pytest.mark.parametrize("params", CASES, ids=range(len(CASES)))
def test_geometry_contacts_overlap_and_connectivity(params):
    for seed in (0, 1, 2):
        agg = heteroagg.sample_aggregate(params, seed)
        n = params.n_particles
        assert agg.centers.shape == (n, 3) and agg.radii.shape == (n,)
        assert agg.n_wo3 == params.n_wo3
        d = pair_distances(agg.centers)
        contact = (1.0 - params.overlap) * (agg.radii[:, None] + agg.radii[None, :])
        ratio = d[np.triu_indices(n, 1)] / contact[np.triu_indices(n, 1)]
        # no pair overlaps beyond the allowed neck overlap
        assert ratio.min() >= 1.0 - 1e-9
        # the exact contacts (within 1e-6 relative) alone connect the aggregate
        exact = np.argwhere(np.triu(d <= contact * (1.0 + 1e-6), 1))
        assert n_components(n, exact) == 1
        assert len(exact) >= n - 1


@pytest.mark.parametrize(
    "params",
    [
        ModelParams(n_particles=400, sigma_g=2.6, fractal_dim=1.6, prefactor=1.0, overlap=0.1),
        ModelParams(
            n_particles=400, sigma_g=1.8, prefactor=1.0, radius_ti=1.0, radius_w=5.0, frac_w=0.06
        ),
    ],
    ids=["wide", "few-large"],
)
def test_very_unequal_radii_are_placed_without_overlaps(params):
    """Radii beyond 4 times the 90th percentile may be searched in classes of their own."""
    for seed in (0, 1, 2):
        agg = heteroagg.sample_aggregate(params, seed)
        assert agg.radii.max() > 4 * np.quantile(agg.radii, 0.9)  # the case the classes serve
        d = pair_distances(agg.centers)
        contact = (1.0 - params.overlap) * (agg.radii[:, None] + agg.radii[None, :])
        upper = np.triu_indices(params.n_particles, 1)
        assert (d[upper] / contact[upper]).min() >= 1.0 - 1e-9
        exact = np.argwhere(np.triu(d <= contact * (1.0 + 1e-6), 1))
        assert n_components(params.n_particles, exact) == 1


def test_radii_ten_million_times_apart_stay_within_the_grid():
    """Cells of the smallest radius class could not count positions a chain of the
    largest spans: such a draw keeps one grid, as all draws did before the classes."""
    params = ModelParams(n_particles=3, frac_w=1 / 3, radius_ti=0.001, radius_w=10000.0,
                         sigma_g=1.0, fractal_dim=1.5, prefactor=4.40055868396697e-07)  # fmt: skip
    agg = heteroagg.sample_aggregate(params, 2)
    assert sorted(agg.radii) == pytest.approx([0.001, 0.001, 10000.0])


@pytest.mark.parametrize("params", CASES, ids=range(len(CASES)))
def test_fractal_law_holds_per_aggregate(params):
    for seed in (3, 4):
        agg = heteroagg.sample_aggregate(params, seed)
        target = heteroagg.fractal_law_rg(
            params.n_particles,
            geometric_mean_radius(agg.radii),
            params.fractal_dim,
            params.prefactor,
        )
        assert radius_of_gyration(agg.centers, agg.radii) == pytest.approx(target, rel=0.05)


def test_centred_on_volume_weighted_centre():
    agg = heteroagg.sample_aggregate(ModelParams(n_particles=80, sigma_g=1.4), 9)
    m = agg.radii**3
    centre = (m[:, None] * agg.centers).sum(0) / m.sum()
    assert np.abs(centre).max() < 1e-9 * np.abs(agg.centers).max()


def test_radii_follow_the_lognormal_laws():
    from scipy import stats

    p = ModelParams(n_particles=400, frac_w=0.5, radius_ti=6.0, radius_w=2.5, sigma_g=1.3)
    aggs = heteroagg.sample_aggregates(p, seeds=5, n=10)
    for code, median in ((0, 6.0), (1, 2.5)):
        r = np.concatenate([a.radii[a.materials == code] for a in aggs])
        z = np.log(r / median) / np.log(1.3)
        assert stats.kstest(z, "norm").pvalue > 1e-3


def test_same_seed_same_aggregate_and_seeds_differ():
    p = ModelParams(n_particles=70, segregation=0.4)
    a, b = heteroagg.sample_aggregate(p, 11), heteroagg.sample_aggregate(p, 11)
    np.testing.assert_array_equal(a.centers, b.centers)
    np.testing.assert_array_equal(a.radii, b.radii)
    np.testing.assert_array_equal(a.materials, b.materials)
    c = heteroagg.sample_aggregate(p, 12)
    assert not np.array_equal(a.radii, c.radii)


def test_sampler_and_renderer_draw_from_other_streams_of_one_seed():
    """One seed given to sample_aggregate and to the renderer (as `heteroagg sample` and
    `heteroagg render` both default to 0) must not make an image's draws the geometry's:
    the renderer draws from streams 1-6 of its seed (and per-pixel ones at or above 256)."""
    from heteroagg.rng import uniform

    def normals(seed, stream, n):  # the first n of philox_stream(seed, stream).normal()
        u = uniform(seed, stream, 2 * n, device="cpu").reshape(n, 2)
        return np.sort(np.sqrt(-2 * np.log(u[:, 0])) * np.cos(2 * np.pi * u[:, 1]))

    p = ModelParams(n_particles=30, sigma_g=1.3, fractal_dim=2.2)
    for seed in range(6):
        agg = heteroagg.sample_aggregate(p, seed)
        median = np.where(agg.materials == 1, p.radius_w, p.radius_ti)
        z = np.sort(np.log(agg.radii / median) / np.log(p.sigma_g))  # the radii's normal draws
        tagged = [(0x61676772 << 32) | attempt for attempt in range(4)]
        assert any(np.allclose(z, normals(seed, s, len(z)), atol=1e-9) for s in tagged)
        for stream in range(8):
            assert not np.allclose(z, normals(seed, stream, len(z)), atol=1e-3), (seed, stream)


def test_batch_equals_single_calls_for_any_thread_count():
    params = [ModelParams(n_particles=n, segregation=s) for n in (5, 40, 90) for s in (0.0, 0.7)]
    one = heteroagg.sample_aggregates(params, seeds=77, threads=1)
    two = heteroagg.sample_aggregates(params, seeds=77, threads=2)
    many = heteroagg.sample_aggregates(params, seeds=77, threads=np.int64(5))
    more_than_items = heteroagg.sample_aggregates(params, seeds=77, threads=2**40)
    for i, p in enumerate(params):
        single = heteroagg.sample_aggregate(p, heteroagg.derive_seed(77, i))
        for batch in (one, two, many, more_than_items):
            np.testing.assert_array_equal(batch[i].centers, single.centers)
            np.testing.assert_array_equal(batch[i].materials, single.materials)
        assert one[i].params is p


def test_full_segregation_gives_one_homo_cluster_per_material():
    p = ModelParams(n_particles=100, frac_w=0.35, segregation=1.0)
    for agg in heteroagg.sample_aggregates(p, seeds=3, n=5):
        pairs = brute_contacts(agg.centers, agg.radii, 1e-6)
        assert homo_clusters(agg.materials, pairs, 0) == 1
        assert homo_clusters(agg.materials, pairs, 1) == 1


INFEASIBLE = ModelParams(n_particles=300, fractal_dim=2.9, prefactor=8.0)


def test_infeasible_parameters_raise_generation_error_in_bounded_time():
    start = time.monotonic()
    with pytest.raises(GenerationError, match="fractal"):
        heteroagg.sample_aggregate(INFEASIBLE, 0)
    assert time.monotonic() - start < 120.0  # a hang guard, not a speed target
    assert issubclass(GenerationError, RuntimeError)


def test_batch_error_handling():
    params = [ModelParams(n_particles=20), INFEASIBLE]
    with pytest.raises(GenerationError, match="item 1"):
        heteroagg.sample_aggregates(params, seeds=[1, 2])
    out = heteroagg.sample_aggregates(params, seeds=[1, 2], on_error="none")
    assert out[0] is not None and out[1] is None
    # "return" hands back the error with the message a single call raises
    returned = heteroagg.sample_aggregates(params, seeds=[1, 2], on_error="return")
    assert isinstance(returned[0], heteroagg.Aggregate)
    assert isinstance(returned[1], GenerationError)
    with pytest.raises(GenerationError) as single:
        heteroagg.sample_aggregate(INFEASIBLE, 2)
    assert str(returned[1]) == str(single.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": ModelParams(), "seeds": -1, "n": 2}, "seed"),
        ({"params": ModelParams(), "seeds": 1}, "give n"),
        ({"params": [ModelParams()] * 2, "seeds": [1, 2, 3]}, "2 params for 3 seeds"),
        ({"params": [ModelParams(), "x"], "seeds": [1, 2]}, r"params\[1\]"),
        ({"params": ModelParams(), "seeds": 1, "n": 2, "threads": 0}, "threads"),
        ({"params": ModelParams(), "seeds": 1, "n": 2, "on_error": "skip"}, "on_error"),
        ({"params": ModelParams(), "seeds": 3.0, "n": 2}, r"seeds must be an integer .* got 3\.0"),
        ({"params": ModelParams(), "seeds": True, "n": 2}, "seeds must be an integer"),
        ({"params": ModelParams(), "seeds": "7", "n": 2}, "seeds must be an integer"),
    ],
)
def test_batch_input_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        heteroagg.sample_aggregates(**kwargs)


@pytest.mark.parametrize("seed", [-1, 2**64, 0.5, None])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        heteroagg.sample_aggregate(ModelParams(), seed)


def test_bad_params_type():
    with pytest.raises(ValueError, match="ModelParams"):
        heteroagg.sample_aggregate({"n_particles": 3}, 0)  # type: ignore[arg-type]


def test_sampler_options_validation():
    with pytest.raises(ValueError, match="pair_tries"):
        heteroagg.SamplerOptions(pair_tries=0)
    with pytest.raises(ValueError, match="max_rg_error"):
        heteroagg.SamplerOptions(max_rg_error=0.0)
    strict = heteroagg.SamplerOptions(max_rg_error=1e-4)
    agg = heteroagg.sample_aggregate(ModelParams(n_particles=64), 1, options=strict)
    target = heteroagg.fractal_law_rg(64, geometric_mean_radius(agg.radii), 1.8, 1.3)
    assert radius_of_gyration(agg.centers, agg.radii) == pytest.approx(target, rel=1e-4)


def test_long_batches_are_chunked_without_changing_results(capsys):
    from heteroagg import aggregate

    p = ModelParams(n_particles=4)
    n = aggregate._CHUNK + 7
    batch = heteroagg.sample_aggregates(p, seeds=21, n=n, progress=True)
    assert len(batch) == n
    for i in (0, aggregate._CHUNK - 1, aggregate._CHUNK, n - 1):
        single = heteroagg.sample_aggregate(p, heteroagg.derive_seed(21, i))
        np.testing.assert_array_equal(batch[i].centers, single.centers)
    assert heteroagg.sample_aggregates([], []) == []


def test_large_hierarchical_aggregates_meet_the_law_on_the_first_attempt():
    # merges of ten thousand particles on each side: drawn pairs lie mostly buried
    params = ModelParams(n_particles=20000, fractal_dim=2.0)
    single_attempt = heteroagg.SamplerOptions(aggregate_tries=1)
    for seed in range(3):
        agg = heteroagg.sample_aggregate(params, seed, options=single_attempt)
        target = heteroagg.fractal_law_rg(
            params.n_particles, geometric_mean_radius(agg.radii), 2.0, params.prefactor
        )
        assert radius_of_gyration(agg.centers, agg.radii) == pytest.approx(target, rel=0.05)


# sequential growth at D_f 2.5: tens of seconds for 40 000 particles; a wide radius law
# takes seconds to fail even with few particles
LONG = ModelParams(n_particles=40000, fractal_dim=2.5)
WIDE = ModelParams(n_particles=2500, sigma_g=3.0)


@pytest.mark.parametrize(
    ("batch", "params"), [(False, LONG), (True, LONG), (False, WIDE)],
    ids=["single", "batch", "single-few-wide-radii"],
)  # fmt: skip
def test_a_signal_stops_long_sampling(batch, params):
    import os
    import signal
    import threading

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped

    previous = signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        start = time.monotonic()
        timer.start()
        with pytest.raises(Stopped):
            if batch:
                heteroagg.sample_aggregates([params, params], [1, 2], threads=2)
            else:
                heteroagg.sample_aggregate(params, 1)
        assert time.monotonic() - start < 5.0
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
