"""Augmentations and load-time noise of training batches, against numpy and Poisson laws."""

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
from scipy import stats

from heteroagg.data.space import Prior
from heteroagg.learn import TrainConfig
from heteroagg.learn.batches import (
    GAUSSIAN_COUNTS,
    augment,
    batch_generator,
    dihedral,
    doses_from_unit,
    shot_noise,
)


def numpy_dihedral(image, k):
    y = np.rot90(image, k % 4)
    return np.fliplr(y) if k >= 4 else y


def test_dihedral_matches_numpy_and_gives_eight_distinct_images():
    rng = np.random.default_rng(0)
    image = rng.random((5, 7, 7))
    x = torch.from_numpy(np.tile(image, (8, 1, 1))[:, None])
    k = torch.arange(8).repeat_interleave(5)
    out = dihedral(x, k).numpy()
    for j in range(40):
        np.testing.assert_array_equal(out[j, 0], numpy_dihedral(image[j % 5], j // 5))
    distinct = {out[j, 0].tobytes() for j in range(0, 40, 5)}
    assert len(distinct) == 8


@pytest.mark.parametrize(("shape", "count"), [((6, 6), 8), ((4, 6), 4)])
def test_flips_draw_every_symmetry_the_shape_has(shape, count):
    """A square batch is turned by all eight elements, a rectangle by the four that
    keep its shape (half turns and mirrors), each image by one of them."""
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    x = torch.from_numpy(np.tile(image, (400, 1, 1, 1)))
    options = dict(dose_prior=None, pixel_size_nm=1.0, flips=True, contrast_jitter=0, read_noise=0)
    out = augment(x, batch_generator(0, 0, 0, torch.device("cpu")), **options).numpy()
    assert out.shape == x.shape
    allowed = {numpy_dihedral(image, k).tobytes() for k in range(8) if
               numpy_dihedral(image, k).shape == shape}  # fmt: skip
    seen = {o[0].tobytes() for o in out}
    assert seen == allowed and len(seen) == count


def test_shot_noise_is_exact_poisson_at_low_counts():
    g = torch.Generator()
    g.manual_seed(1)
    mean = 3.5
    draws = shot_noise(torch.full((200_000,), mean, dtype=torch.float64), g).numpy()
    assert np.all(draws == np.round(draws))
    values, counts = np.unique(draws, return_counts=True)
    expected = stats.poisson.pmf(values, mean) * draws.size
    keep = expected > 20
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


@pytest.mark.parametrize("mean", [GAUSSIAN_COUNTS + 1, 1e4])
def test_shot_noise_has_poisson_moments_at_high_counts(mean):
    g = torch.Generator()
    g.manual_seed(2)
    draws = shot_noise(torch.full((400_000,), mean, dtype=torch.float64), g).numpy()
    n = draws.size
    assert abs(draws.mean() - mean) < 5 * np.sqrt(mean / n)
    assert abs(draws.var() / mean - 1) < 5 * np.sqrt(2 / n)


def test_shot_noise_keeps_vacuum_dark():
    g = torch.Generator()
    g.manual_seed(3)
    counts = torch.tensor([0.0, 0.0, 50.0, 0.0])
    assert shot_noise(counts, g)[[0, 1, 3]].tolist() == [0.0, 0.0, 0.0]


def test_doses_follow_the_prior():
    u = torch.linspace(0, 1, 5, dtype=torch.float64)
    log_prior = Prior("log-uniform", 1e3, 1e5)
    np.testing.assert_allclose(doses_from_unit(log_prior, u).numpy(), np.geomspace(1e3, 1e5, 5))
    lin = doses_from_unit(Prior("uniform", 10.0, 30.0), u).numpy()
    np.testing.assert_allclose(lin, np.linspace(10, 30, 5))
    assert doses_from_unit(Prior("fixed", 7.0, 7.0), u).tolist() == [7.0] * 5


def test_augmented_batches_are_pure_functions_of_seed_epoch_batch():
    x = torch.rand(6, 1, 16, 16) * 0.05
    prior = Prior("log-uniform", 1e3, 1e5)
    options = dict(
        dose_prior=prior, pixel_size_nm=1.0, flips=True, contrast_jitter=0.1, read_noise=1e-3
    )
    a = augment(x, batch_generator(5, 2, 7, torch.device("cpu")), **options)
    b = augment(x, batch_generator(5, 2, 7, torch.device("cpu")), **options)
    c = augment(x, batch_generator(5, 3, 7, torch.device("cpu")), **options)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_black_level_jitter_shifts_each_whole_image():
    x = torch.rand(4000, 1, 8, 8) * 0.05
    options = dict(dose_prior=None, pixel_size_nm=1.0, flips=False, contrast_jitter=0, read_noise=0)
    g = batch_generator(1, 0, 0, torch.device("cpu"))
    y = augment(x, g, black_level_jitter=2e-4, **options)
    shift = (y - x).flatten(1)
    # one shift per image, the same at every pixel, Gaussian with the asked spread
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), rtol=0, atol=1e-7)
    assert float(shift[:, 0].std()) == pytest.approx(2e-4, rel=0.05)
    assert abs(float(shift[:, 0].mean())) < 4 * 2e-4 / np.sqrt(4000)
    # off, the images are left as they are
    plain = augment(x, batch_generator(1, 0, 0, torch.device("cpu")), **options)
    assert torch.equal(plain, x)
    with pytest.raises(ValueError, match="black_level_jitter"):
        TrainConfig(black_level_jitter=-1.0)
    # on by default; runs stored before the setting existed trained, and resume, without it
    assert TrainConfig().black_level_jitter == 5e-4
    assert TrainConfig.from_saved({"epochs": 3}).black_level_jitter == 0.0


def test_read_noise_has_a_uniform_spread_per_image():
    x = torch.rand(2000, 1, 32, 32) * 0.05
    options = dict(dose_prior=None, pixel_size_nm=1.0, flips=False, contrast_jitter=0)
    g = batch_generator(2, 0, 0, torch.device("cpu"))
    y = augment(x, g, read_noise=1e-3, black_level_jitter=0.0, **options)
    noise = (y - x).flatten(1).double()
    spread = noise.std(dim=1).numpy()  # each image's own standard deviation, uniform on [0, 1e-3]
    assert spread.max() < 1e-3 * 1.1 and abs(float(noise.mean())) < 1e-6
    quantiles = np.quantile(spread, [0.1, 0.25, 0.5, 0.75, 0.9])
    np.testing.assert_allclose(quantiles, 1e-3 * np.array([0.1, 0.25, 0.5, 0.75, 0.9]), atol=3e-5)
    # on by default; runs stored before the default changed resume without it
    assert TrainConfig().read_noise == 1e-3
    assert TrainConfig.from_saved({"epochs": 3}).read_noise == 0.0
    assert TrainConfig.from_saved({"read_noise": 2e-4}).read_noise == 2e-4


def test_noise_scales_with_dose():
    # at dose D e/Å² on 1 nm pixels a pixel of intensity I counts I * D * 100 electrons
    x = torch.full((2, 1, 64, 64), 0.02)
    relative = []
    for dose in (1e3, 1e5):
        prior = Prior("fixed", dose, dose)
        y = augment(
            x,
            batch_generator(0, 0, 0, torch.device("cpu")),
            dose_prior=prior,
            pixel_size_nm=1.0,
            flips=False,
            contrast_jitter=0,
            read_noise=0,
        )
        relative.append(float(y.std() / y.mean()))
        expected = 1 / np.sqrt(0.02 * dose * 100)
        assert relative[-1] == pytest.approx(expected, rel=0.05)


def _trainer_stub(config, rank=0, world=1):
    """What :meth:`_MemberTrainer._augment` reads of its trainer."""
    import types

    from heteroagg.learn.distributed import Distributed

    prior = Prior("log-uniform", 1e3, 1e5)
    return types.SimpleNamespace(
        config=config, seed=7, dev=torch.device("cpu"), dist=Distributed(rank, world),
        noise_prior=prior, pixel_size=1.0,
    )  # fmt: skip


def test_label_maps_of_a_square_crop_of_a_wide_field_turn_with_its_images():
    from heteroagg.learn.training import _MemberTrainer

    config = TrainConfig(crop=32, label_maps=("path_tio2",), read_noise=0.0,
                         black_level_jitter=0.0)  # fmt: skip
    trainer = _trainer_stub(config)
    trainer.noise_prior = None  # clean images: their block means are the maps
    block = config.map_block
    x = torch.rand(16, 1, 32, 64)
    maps = torch.nn.functional.avg_pool2d(x, block)
    for batch in range(4):  # quarter turns are among the draws: the crop is square
        images, turned = _MemberTrainer._augment(trainer, x, 0, batch, True, maps)
        assert images.shape == (16, 1, 32, 32) and turned.shape == (16, 1, 32 // block, 32 // block)
        torch.testing.assert_close(turned, torch.nn.functional.avg_pool2d(images, block))


def test_processes_draw_their_own_augmentations():
    from heteroagg.learn.training import _MemberTrainer

    config = TrainConfig(contrast_jitter=0.1, crop=0)
    image = torch.zeros(4, 1, 32, 32)
    image[:, :, 4:12, 2:6] = 0.3
    ranks = [
        _MemberTrainer._augment(_trainer_stub(config, r, 2), image, 0, 5, True) for r in (0, 1)
    ]
    assert not torch.equal(*ranks)
    # one process draws as before: batch 5 of the member's stream
    alone = _MemberTrainer._augment(_trainer_stub(config), image, 0, 5, True)
    direct = augment(image, batch_generator(7, 0, 5, torch.device("cpu")), dose_prior=Prior(
        "log-uniform", 1e3, 1e5), pixel_size_nm=1.0, flips=True, contrast_jitter=0.1,
        read_noise=config.read_noise, black_level_jitter=config.black_level_jitter)  # fmt: skip
    assert torch.equal(alone, direct)
    # process 1 of 2 draws what a single process draws at the global position 2 * 5 + 1
    second = _MemberTrainer._augment(_trainer_stub(config), image, 0, 11, True)
    assert torch.equal(ranks[1], second)
