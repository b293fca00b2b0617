"""heteroagg.twins: digital twins conditioned on directly estimated descriptors."""

import numpy as np
import pytest
from scipy import stats

from heteroagg import ParameterSpace
from heteroagg.data import default_config
from heteroagg.truncated_normal import normal_behind
from heteroagg.twins import (
    TWIN_DESCRIPTORS,
    descriptor_row,
    draw_within_prior,
    head_weights,
    resample,
    sample_twins,
)

RG = TWIN_DESCRIPTORS.index("radius_of_gyration")
HCN = TWIN_DESCRIPTORS.index("hetero_coordination_number")


def test_head_weights_are_the_normalised_product_of_gaussian_densities():
    rng = np.random.default_rng(0)
    rows = rng.random((50, len(TWIN_DESCRIPTORS))) * 10
    rows[3, HCN] = np.nan
    heads = {"radius_of_gyration": (4.0, 1.5), "hetero_coordination_number": (6.0, 2.0)}
    expected = stats.norm.pdf(rows[:, RG], 4.0, 1.5) * stats.norm.pdf(rows[:, HCN], 6.0, 2.0)
    expected[3] = 0.0  # a descriptor the candidate lacks rules it out
    np.testing.assert_allclose(head_weights(rows, heads), expected / expected.sum(), rtol=1e-10)
    # far from every candidate the weights still sum to one (no underflow to 0/0)
    far = head_weights(rows, {"radius_of_gyration": (1e4, 0.1)})
    assert far.sum() == pytest.approx(1.0) and far[np.argmax(rows[:, RG])] == pytest.approx(1.0)
    lacking = np.full_like(rows, np.nan)
    np.testing.assert_allclose(head_weights(lacking, heads), 1 / len(rows))
    # a spread factor widens every head's standard deviation
    wide = stats.norm.pdf(rows[:, RG], 4.0, 3 * 1.5) * stats.norm.pdf(rows[:, HCN], 6.0, 3 * 2.0)
    wide[3] = 0.0
    np.testing.assert_allclose(head_weights(rows, heads, spread=3.0), wide / wide.sum(), rtol=1e-10)


def test_head_weights_reject_bad_input():
    rows = np.ones((4, len(TWIN_DESCRIPTORS)))
    with pytest.raises(ValueError, match="not one of"):
        head_weights(rows, {"porosity": (1.0, 1.0)})
    with pytest.raises(ValueError, match="must be finite and > 0"):
        head_weights(rows, {"radius_of_gyration": (1.0, 0.0)})
    # one head that is not finite would otherwise silently drop the conditioning of all
    with pytest.raises(ValueError, match="estimate of 'hetero_coordination_number' must be"):
        head_weights(
            rows, {"radius_of_gyration": (1.0, 1.0), "hetero_coordination_number": (np.nan, 1.0)}
        )
    with pytest.raises(ValueError, match="rows must be"):
        head_weights(rows[:, :3], {"radius_of_gyration": (1.0, 1.0)})
    for spread in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="spread must be finite and > 0"):
            head_weights(rows, {"radius_of_gyration": (1.0, 1.0)}, spread=spread)


def test_systematic_resampling_keeps_each_count_within_one_of_its_share():
    rng = np.random.default_rng(1)
    weights = rng.random(20) ** 3
    weights /= weights.sum()
    k = 37
    total = np.zeros(len(weights))
    for seed in range(400):
        counts = np.bincount(resample(weights, k, seed), minlength=len(weights))
        assert counts.sum() == k
        assert np.all(counts >= np.floor(k * weights)) and np.all(counts <= np.ceil(k * weights))
        total += counts
    # unbiased: on average each index is drawn k w times
    np.testing.assert_allclose(total / 400, k * weights, atol=0.08)
    with pytest.raises(ValueError):
        resample(weights * 2, k, 0)
    with pytest.raises(ValueError):
        resample(weights, 0, 0)


def tiny_space() -> ParameterSpace:
    """The default priors with small aggregates, so that sampling is quick."""
    priors = default_config().params.to_config()
    priors["n_particles"] = {"prior": "log-uniform", "low": 8, "high": 40}
    return ParameterSpace(priors)


def test_conditioned_twins_are_candidates_that_agree_with_the_heads():
    space = tiny_space()
    theta = np.full(len(space.varied), 0.5)
    std = np.full_like(theta, 0.3)
    pool, failed = sample_twins(space, theta, std, 48, seed=5)
    assert len(pool) + failed == 48 and len(pool) > 40
    pool_rg = np.array([descriptor_row(t)[RG] for t in pool])
    target = float(np.quantile(pool_rg, 0.1))  # a small aggregate, among the drawn ones
    heads = {"radius_of_gyration": (target, 0.05 * target)}
    twins, none_failed = sample_twins(space, theta, std, 8, seed=5, heads=heads, candidates=48)
    again, _ = sample_twins(space, theta, std, 8, seed=5, heads=heads, candidates=48)
    # a candidate that could not be built is not a twin that failed: all 8 are there
    assert failed > 0 and len(twins) == 8 and none_failed == 0
    twin_rg = np.array([descriptor_row(t)[RG] for t in twins])
    np.testing.assert_array_equal(twin_rg, [descriptor_row(t)[RG] for t in again])
    assert set(np.round(twin_rg, 9)) <= set(np.round(pool_rg, 9))  # resampled from the pool
    # they sit at the heads' estimate, where the plain twins spread over the prior
    assert abs(np.mean(twin_rg) - target) < 0.1 * target
    assert abs(np.mean(pool_rg) - target) > 0.2 * target
    # without candidates the heads play no part
    plain, _ = sample_twins(space, theta, std, 8, seed=5, heads=heads, candidates=0)
    unconditioned, _ = sample_twins(space, theta, std, 8, seed=5)
    assert [t.params for t in plain] == [t.params for t in unconditioned]
    with pytest.raises(ValueError, match="candidates"):
        sample_twins(space, theta, std, 8, seed=5, heads=heads, candidates=4)
    # a spread factor acts as the heads' standard deviation times it: a wider
    # spread keeps more kinds of candidate, and further from the estimate
    wide_heads = {"radius_of_gyration": (target, 4 * 0.05 * target)}
    widened, _ = sample_twins(space, theta, std, 8, 5, heads=heads, candidates=48, spread=4.0)
    wide, _ = sample_twins(space, theta, std, 8, 5, heads=wide_heads, candidates=48)
    widened_rg = [descriptor_row(t)[RG] for t in widened]
    np.testing.assert_array_equal(widened_rg, [descriptor_row(t)[RG] for t in wide])
    assert np.mean(np.abs(np.array(widened_rg) - target)) > np.mean(np.abs(twin_rg - target))


def test_twin_parameters_have_the_predicted_mean_and_spread_within_the_prior():
    rng = np.random.default_rng(3)
    mu = np.array([0.1, 0.5, 1.3, 0.7])  # near a bound, central, beyond the prior, fixed
    sd = np.array([0.05, 0.1, 0.3, 0.0])
    drawn = draw_within_prior(mu, sd, rng.random((20000, 4)))
    assert drawn.shape == (20000, 4) and ((drawn >= 0) & (drawn <= 1)).all()
    np.testing.assert_array_equal(drawn[:, 3], 0.7)
    # the twins' θ has the posterior's reported mean and deviation, at a bound too
    for j in range(2):
        assert abs(drawn[:, j].mean() - mu[j]) < 4 * sd[j] / np.sqrt(len(drawn))
        assert drawn[:, j].std() == pytest.approx(sd[j], rel=0.03)
    # against rejection sampling of the normal behind it: no mass piled on the bounds
    loc, scale = normal_behind(mu[:3], sd[:3])
    assert loc[0] < 0.1 and scale[0] > 0.05  # the normal behind lies further out, wider
    for j in range(3):
        z = loc[j] + scale[j] * rng.standard_normal(800000)
        kept = z[(z >= 0) & (z <= 1)][:20000]
        assert stats.ks_2samp(drawn[:, j], kept).pvalue > 1e-3
        assert np.mean(drawn[:, j] == 0) + np.mean(drawn[:, j] == 1) == 0
    # far in a tail the draws still lie inside, at the nearer bound
    far = draw_within_prior(np.array([30.0]), np.array([0.01]), np.array([[0.5]]))
    assert 0.999 < far[0, 0] <= 1
    # the twins' own θ lie within the prior, even for an estimate beyond it
    space = tiny_space()
    theta = np.full(len(space.varied), 1.2)
    twins, failed = sample_twins(space, theta, np.full_like(theta, 0.3), 6, seed=2)
    assert len(twins) + failed == 6 and twins
    for twin in twins:
        normalized = space.normalize(twin.params)
        assert normalized.min() > -1e-9 and normalized.max() < 1 + 1e-9


def test_an_interrupted_twins_file_leaves_the_earlier_one(tmp_path, monkeypatch):
    import h5py

    from heteroagg import twins as twins_module
    from heteroagg.twins import write_twins

    space = tiny_space()
    made, _ = sample_twins(space, np.full(len(space.varied), 0.5), None, 2, seed=1)
    record = {"source": "a.dm4", "index": 0, "params": {"frac_w": 0.3}, "twins": made, "failed": 0}
    path = tmp_path / "twins.h5"
    write_twins(path, [record] * 3)
    # an image whose twins all failed has the same summary shape, NaN throughout
    empty = tmp_path / "empty.h5"
    write_twins(empty, [record, {**record, "twins": [], "failed": 2}])
    with h5py.File(empty, "r") as f:
        for key in ("mean", "std"):
            assert f["image-0/descriptors"].attrs[key].shape == (len(TWIN_DESCRIPTORS),)
            assert np.isnan(f["image-1/descriptors"].attrs[key]).all()
            assert f["image-1/descriptors"].attrs[key].shape == (len(TWIN_DESCRIPTORS),)
    empty.unlink()
    calls = []

    def interrupted(aggregate):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return descriptor_row(aggregate)

    monkeypatch.setattr(twins_module, "descriptor_row", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_twins(path, [record] * 5)
    with h5py.File(path, "r") as f:  # the earlier file, whole
        assert sorted(f) == ["image-0", "image-1", "image-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twins.h5"]


def test_conditioned_twins_all_fail_only_when_every_candidate_does(monkeypatch):
    import heteroagg.aggregate as aggregate_module
    from heteroagg.aggregate import GenerationError

    def unbuildable(*args, **kwargs):
        raise GenerationError("no room")

    monkeypatch.setattr(aggregate_module, "sample_aggregate", unbuildable)
    space = tiny_space()
    theta = np.full(len(space.varied), 0.5)
    heads = {"radius_of_gyration": (5.0, 0.5)}
    twins, failed = sample_twins(space, theta, None, 4, seed=1, heads=heads, candidates=12)
    assert twins == [] and failed == 4
