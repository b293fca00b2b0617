"""heteroagg.learn.train: reproducibility, resume, stopping rules, ensembles and errors."""

import contextlib
import csv
import dataclasses
import importlib
import itertools
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from heteroagg.data.dataset import SyntheticDataset
from heteroagg.learn import TrainConfig, TrainedRun, train
from heteroagg.learn import training as training_module
from heteroagg.learn.image_store import ImageStore
from heteroagg.learn.item_split import split_items
from heteroagg.learn.losses import loss_weight_vector, regression_loss
from heteroagg.learn.networks import (
    LOG_CHANNEL_SCALE,
    LOG_POOLING_OFFSET,
    ParameterRegressor,
    ResNetRegressor,
    centre_crop,
    log_channel,
)
from heteroagg.learn.particle_detector import ParticleDetector
from heteroagg.learn.training import learning_rate
from heteroagg.learn.training_data import check_shape
from learn_data import tiny_config, train_killed_at_step, trainer_of

SMALL = dict(batch_size=32, widths=(8, 16), blocks=(1, 1), val_fraction=0.15, seed=1)


@contextlib.contextmanager
def global_generator_left_alone():
    """Fail unless the block leaves torch's global generator where it found it."""
    torch.manual_seed(5)
    untouched = torch.rand(4)
    torch.manual_seed(5)
    yield
    assert torch.equal(torch.rand(4), untouched), "the caller's torch generator was moved"


def weights(path):
    return torch.load(path, weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_network_shapes_and_input_standardisation():
    net = ResNetRegressor(5, widths=(8, 16, 32), blocks=(1, 2, 1), space_to_depth=4)
    assert net(torch.rand(3, 1, 64, 64)).shape == (3, 5)
    gaussian = ResNetRegressor(5, widths=(8,), blocks=(1,), gaussian=True)
    assert gaussian(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    arch = {"widths": [8], "blocks": [1], "space_to_depth": 2, "gaussian": False}
    model = ParameterRegressor(3, arch, input_mean=0.5, input_std=2.0).eval()
    x = torch.rand(2, 1, 16, 16)
    expected = model.net((x - 0.5) / 2.0)
    assert torch.allclose(model(x), expected)
    assert {"input_mean", "input_std"} <= set(model.state_dict())


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: ParticleDetector((4, 4, 8, 8), seed=seed),
        lambda seed: ParameterRegressor(3, TrainConfig(**SMALL).architecture, seed=seed),
    ],
    ids=["detector", "regressor"],
)
def test_networks_draw_their_initial_weights_from_their_own_seed(build):
    with global_generator_left_alone():
        a, again, other = build(1), build(1), build(2)
    first = [p.detach() for p in a.parameters()]
    assert all(torch.equal(p, q) for p, q in zip(first, again.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(first, other.parameters(), strict=True))


def test_pooled_features_are_what_the_head_reads():
    arch = {"widths": [8, 16], "blocks": [1, 1], "space_to_depth": 2, "gaussian": True}
    model = ParameterRegressor(3, {**arch, "crop": 16}, input_mean=0.5, input_std=2.0).eval()
    x = torch.rand(4, 1, 24, 24)
    with torch.no_grad():
        features = model.pooled(x)
        # By hand: the centred 16² crop, standardised, through the stem and
        # the body, then the global mean and maximum of each channel.
        z = (x[..., 4:20, 4:20] - 0.5) / 2.0
        last = model.net.body(model.net.stem(z))
        expected = torch.cat([last.mean(dim=(2, 3)), last.amax(dim=(2, 3))], dim=1)
        assert features.shape == (4, 32)
        assert torch.allclose(features, expected)
        assert torch.allclose(model.net.head(features), model(x))


def test_full_resolution_stem_convolution_and_the_default_stem():
    plain = ResNetRegressor(5, widths=(8, 16), blocks=(1, 1), space_to_depth=2)
    extra = ResNetRegressor(5, widths=(8, 16), blocks=(1, 1), space_to_depth=2, stem_channels=6)
    # Without it the weights keep their names, so runs saved before it load.
    stem_layers = {k.split(".")[1] for k in plain.state_dict() if k.startswith("stem.")}
    assert stem_layers == {"1", "2"}  # the convolution and its norm, as always
    convs = [m for m in extra.stem if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 6), (24, 8)]
    assert extra(torch.rand(2, 1, 32, 32)).shape == (2, 5)
    # Its features are per pixel of the image, before the folding: they move
    # with the image by single pixels, where a folded grid cell spans two.
    extra.eval()
    x = torch.rand(1, 1, 16, 16)
    features = extra.stem[:3](x)
    assert features.shape == (1, 6, 16, 16)
    shifted = extra.stem[:3](torch.roll(x, 1, dims=3))
    torch.testing.assert_close(shifted[..., 2:-1], features[..., 1:-2])
    assert extra.stem[3](features).shape == (1, 24, 8, 8)
    with pytest.raises(ValueError, match="stem_channels"):
        TrainConfig(stem_channels=-1)


def test_two_full_resolution_stem_convolutions_see_five_pixels():
    torch.manual_seed(0)
    one = ResNetRegressor(5, widths=(8, 16), blocks=(1, 1), space_to_depth=2, stem_channels=6)
    two = ResNetRegressor(
        5, widths=(8, 16), blocks=(1, 1), space_to_depth=2, stem_channels=6, stem_layers=2
    )
    convs = [m for m in two.stem if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 6), (6, 6), (24, 8)]
    # One layer keeps the names its runs were saved with.
    assert {k.split(".")[1] for k in one.state_dict() if k.startswith("stem.")} == {
        "0", "1", "4", "5"
    }  # fmt: skip
    # The full-resolution features reach two pixels out, one layer's one.
    one.eval()
    two.eval()
    x = torch.zeros(1, 1, 16, 16)
    y = x.clone()
    y[..., 8, 8] = 5.0
    for net, depth, reach in ((one, 3, 1), (two, 6, 2)):
        moved = (net.stem[:depth](y) - net.stem[:depth](x)).abs().sum(dim=(0, 1))
        rows, cols = torch.nonzero(moved > 0, as_tuple=True)
        assert max((8 - rows).abs().max(), (8 - cols).abs().max()) == reach
    assert two(torch.rand(2, 1, 32, 32)).shape == (2, 5)
    assert TrainConfig(stem_channels=8, stem_layers=2).architecture["stem_layers"] == 2
    model = ParameterRegressor(3, TrainConfig(stem_channels=4, stem_layers=2).architecture)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.net.stem) == 3
    with pytest.raises(ValueError, match="stem_layers"):
        TrainConfig(stem_layers=0)
    with pytest.raises(ValueError, match="stem_layers"):
        ResNetRegressor(5, widths=(8,), blocks=(1,), stem_channels=4, stem_layers=0)


def test_image_store_serves_the_stored_images_in_every_mode(tiny_train):
    dataset = SyntheticDataset(tiny_train)
    items = np.arange(3, len(dataset), 7)
    chosen = items[[5, 0, 17, 17, 40]]
    scale = float(dataset.index["image_scale"])
    expected = np.stack([dataset.stored_image(int(i)) / scale for i in chosen])
    cpu = torch.device("cpu")
    side = expected.shape[-1]
    for where, workers in [("memory", 0), ("memory", 2), ("stream", 0), ("device", 0)]:
        store = ImageStore(dataset, items, where, cpu, workers, show_progress=False)
        got = store(chosen)
        assert got.shape == (len(chosen), 1, *expected.shape[1:]) and got.dtype == torch.float32
        np.testing.assert_allclose(got[:, 0].numpy(), expected, rtol=1e-6, err_msg=where)
        # A store for a cropping network keeps only the centred pixels it reads.
        crop = side // 2
        cropped = ImageStore(dataset, items, where, cpu, workers, False, crop=crop)
        margin = (side - crop) // 2
        inner = expected[:, margin : margin + crop, margin : margin + crop]
        np.testing.assert_allclose(cropped(chosen)[:, 0].numpy(), inner, rtol=1e-6, err_msg=where)
        if where != "stream":
            assert cropped.cache.shape == (len(items), crop, crop)
    # Stored values above int16's range survive the int16 cache and its widening.
    high = np.linspace(40000, 65535, store.cache[0].numel()).astype(np.uint16)
    store.cache[0] = torch.from_numpy(high.view(np.int16).reshape(store.cache[0].shape))
    np.testing.assert_allclose(store(items[:1])[0, 0].numpy().ravel(), high / scale, rtol=1e-6)


def test_group_norm_network_is_batch_independent_and_sqrt_input_is_applied():
    arch = {"widths": [8, 16], "blocks": [1, 1], "space_to_depth": 2, "gaussian": False,
            "norm": "group", "input_transform": "sqrt"}  # fmt: skip
    torch.manual_seed(0)
    model = ParameterRegressor(3, arch, input_mean=0.1, input_std=0.2).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(4, 1, 16, 16)
    alone = torch.cat([model(x[k : k + 1]) for k in range(4)])
    torch.testing.assert_close(model(x), alone)  # training mode, yet no batch coupling
    torch.testing.assert_close(model(x), model.net((x.sqrt() - 0.1) / 0.2))
    batch_arch = {**arch, "norm": "batch"}
    batch_model = ParameterRegressor(3, batch_arch).train()
    assert not torch.allclose(batch_model(x)[:1], batch_model(x[:1]))
    with pytest.raises(ValueError, match="norm"):
        TrainConfig(norm="layer")
    with pytest.raises(ValueError, match="input_transform"):
        TrainConfig(input_transform="log")


def test_log_channel_network_reads_the_image_and_its_logarithm():
    arch = {"widths": [8, 16], "blocks": [1, 1], "space_to_depth": 2, "gaussian": False,
            "stem_channels": 4, "input_transform": "linear+log"}  # fmt: skip
    torch.manual_seed(0)
    model = ParameterRegressor(3, arch, input_mean=0.01, input_std=0.02).eval()
    assert model.net.stem[0].in_channels == 2
    x = torch.rand(4, 1, 16, 16) * 0.05
    x[0, 0, :2] = -1e-3  # shot noise below zero is clipped in the logarithm alone
    scale = LOG_CHANNEL_SCALE
    logarithm = torch.log(1 + torch.clamp(x, min=0) / scale)
    assert float(logarithm[0, 0, 0, 0]) == 0.0
    # where the image is faint the channel is linear in it, where bright logarithmic
    torch.testing.assert_close(log_channel(torch.tensor([1e-6])), torch.tensor([1e-6 / scale]),
                               rtol=1e-3, atol=0)  # fmt: skip
    torch.testing.assert_close(
        log_channel(torch.tensor([1e3 * scale])) - log_channel(torch.tensor([1e2 * scale])),
        torch.tensor([np.log(1001 / 101)], dtype=torch.float32),
    )
    expected = model.net(torch.cat([(x - 0.01) / 0.02, logarithm], dim=1))
    torch.testing.assert_close(model(x), expected)
    assert TrainConfig(input_transform="linear+log").architecture["input_transform"] == "linear+log"


def test_pooling_more_stages_and_log_pooling_feed_the_head_each_stage_in_order():
    torch.manual_seed(0)
    model = ResNetRegressor(3, widths=(8, 16, 32), blocks=(1, 2, 1), space_to_depth=2,
                            pool_stages=2, log_pooling=True).eval()  # fmt: skip
    assert model.pooled_depths == (3, 4)
    assert model.head[0].in_features == 3 * (16 + 32)
    x = torch.rand(2, 1, 32, 32)
    middle = model.body[:3](model.stem(x))  # after the second stage's two blocks
    last = model.body[3](middle)

    def pooled(y):
        mean = y.mean(dim=(2, 3))
        return [mean, y.amax(dim=(2, 3)), torch.log(mean + LOG_POOLING_OFFSET)]

    torch.testing.assert_close(model(x), model.head(torch.cat(pooled(middle) + pooled(last), 1)))
    # A feature that counts two kinds of particle: the difference of the two
    # log entries is the log of their ratio, whatever the total.
    logs = torch.log(torch.tensor([[3.0, 9.0], [30.0, 90.0]]) + LOG_POOLING_OFFSET)
    torch.testing.assert_close(logs[:, 1] - logs[:, 0], torch.full((2,), np.log(3.0)),
                               rtol=1e-2, atol=0)  # fmt: skip
    assert TrainConfig(log_pooling=True).architecture["log_pooling"] is True
    with pytest.raises(ValueError, match="log_pooling"):
        TrainConfig(log_pooling="yes")
    # One stage keeps the parameters of the plain network, so its saved weights load.
    plain = ResNetRegressor(3, widths=(8, 16, 32), blocks=(1, 2, 1), space_to_depth=2)
    one = ResNetRegressor(3, widths=(8, 16, 32), blocks=(1, 2, 1), space_to_depth=2,
                          pool_stages=1)  # fmt: skip
    one.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="pool_stages"):
        ResNetRegressor(3, widths=(8, 16), blocks=(1, 1), pool_stages=3)
    with pytest.raises(ValueError, match="pool_stages"):
        TrainConfig(widths=(8, 16), blocks=(1, 1), pool_stages=3)


def test_network_without_normalisation_starts_as_its_shortcuts_and_scales_with_brightness():
    torch.manual_seed(0)
    model = ResNetRegressor(3, widths=(8, 16), blocks=(1, 1), space_to_depth=2,
                            norm="none", stem_channels=4).train()  # fmt: skip
    norms = (torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in model.modules())
    x = torch.rand(4, 1, 16, 16)
    alone = torch.cat([model(x[k : k + 1]) for k in range(4)])
    torch.testing.assert_close(model(x), alone)  # training mode, yet no batch coupling
    # With the residual gains at zero every block is its (ReLU'd) shortcut.
    features = model.stem(x)
    for block in model.body:
        torch.testing.assert_close(block(features), torch.relu(block.shortcut(features)))
        features = block(features)
    # Biases start at zero, so the features are positively homogeneous in the
    # image: twice as bright gives twice the features (no normalisation
    # divides the brightness out), now with the residual branches open too.
    with torch.no_grad():
        for block in model.body:
            block.gain.fill_(0.7)
    deep = model.body(model.stem(x))
    torch.testing.assert_close(model.body(model.stem(2 * x)), 2 * deep)
    batch_model = ResNetRegressor(3, widths=(8, 16), blocks=(1, 1), space_to_depth=2).train()
    assert not torch.allclose(batch_model.body(batch_model.stem(2 * x)),
                              2 * batch_model.body(batch_model.stem(x)))  # fmt: skip


def test_cropped_network_reads_the_centred_square_alone():
    arch = {"widths": [8, 16], "blocks": [1, 1], "space_to_depth": 2, "gaussian": False,
            "crop": 6}  # fmt: skip
    torch.manual_seed(0)
    model = ParameterRegressor(3, arch, input_mean=0.1, input_std=0.2).eval()
    x = torch.rand(2, 1, 10, 12)
    centre = x[:, :, 2:8, 3:9]  # rows 2..7 and columns 3..8 of 10 x 12
    torch.testing.assert_close(model(x), model.net((centre - 0.1) / 0.2))
    outside = x.clone()
    outside[:, :, :2] = 5.0
    outside[:, :, :, 9:] = -3.0
    torch.testing.assert_close(model(outside), model(x))
    # The crop commutes with the quarter turns and mirrors that symmetrizing uses.
    square = torch.rand(1, 1, 12, 12)
    for turn in (lambda t: t.rot90(1, (2, 3)), lambda t: t.flip(3), lambda t: t.transpose(2, 3)):
        torch.testing.assert_close(centre_crop(turn(square), 6), turn(centre_crop(square, 6)))
    # A crop reads at most the image: each axis keeps min(crop, its length) pixels.
    assert torch.equal(centre_crop(square, 14), square)
    assert torch.equal(centre_crop(x, 10), x[..., :, 1:11])
    for bad in ({"crop": 5, "space_to_depth": 1}, {"crop": 6, "space_to_depth": 4}, {"crop": -4}):
        with pytest.raises(ValueError, match="crop"):
            TrainConfig(**bad)


def test_loss_masks_missing_targets_and_gaussian_nll_matches_formula():
    out = torch.tensor([[0.2, 0.5]])
    target = torch.tensor([[0.0, float("nan")]])
    assert float(regression_loss(out, target, False)) == pytest.approx(0.04)
    out = torch.tensor([[0.2, 0.5, np.log(0.25), 0.0]])
    target = torch.tensor([[0.0, 1.0]])
    nll = [0.5 * (np.log(0.25) + 0.04 / 0.25), 0.5 * (0.0 + 0.25)]
    assert float(regression_loss(out, target, True)) == pytest.approx(np.mean(nll), rel=1e-6)


def test_loss_weights_scale_each_column_and_keep_the_variance_calibrated():
    out = torch.tensor([[0.2, 0.5, np.log(0.25), 0.0]])
    target = torch.tensor([[0.0, 1.0]])
    nll = np.array([0.5 * (np.log(0.25) + 0.04 / 0.25), 0.5 * (0.0 + 0.25)])
    weighted = regression_loss(out, target, True, torch.tensor([3.0, 1.0]))
    assert float(weighted) == pytest.approx(np.mean(nll * [3.0, 1.0]), rel=1e-6)
    assert float(regression_loss(out[:, :2], target, False, torch.tensor([1.0, 2.0]))) == (
        pytest.approx((0.04 + 2 * 0.25) / 2)
    )
    # the weighted NLL is stationary in the log variance at the squared error, as the plain one
    log_var = torch.tensor([np.log(0.04), np.log(0.25)], requires_grad=True)
    loss = regression_loss(
        torch.cat([out[:, :2], log_var[None]], 1), target, True, torch.tensor([5.0, 0.5])
    )
    loss.backward()
    assert np.abs(log_var.grad.numpy()).max() < 1e-6
    names = ["n_particles", "frac_w", "radius_w"]
    assert loss_weight_vector({}, names) is None
    assert loss_weight_vector({"frac_w": 2.5}, names).tolist() == [1.0, 2.5, 1.0]
    with pytest.raises(ValueError, match="does not learn"):
        loss_weight_vector({"frac_W": 2.0}, names)
    for bad in ({"frac_w": 0}, {"frac_w": -1.0}, {"frac_w": float("nan")}, {"frac_w": True}):
        with pytest.raises(ValueError, match=r"loss_weights\.frac_w"):
            TrainConfig(loss_weights=bad)
    with pytest.raises(ValueError, match="table of names"):
        TrainConfig(loss_weights=[2.0])


def test_loss_weights_reach_the_training_loss(tiny_train, tmp_path):
    plain = TrainConfig(epochs=2, **SMALL)
    train(tiny_train, tmp_path / "plain", plain, progress=False, device="cpu")
    ones = dataclasses.replace(plain, loss_weights={"frac_w": 1.0})
    train(tiny_train, tmp_path / "ones", ones, progress=False, device="cpu")
    assert_same_weights(
        weights(tmp_path / "plain/member-0/best.pt"), weights(tmp_path / "ones/member-0/best.pt")
    )
    heavy = dataclasses.replace(plain, loss_weights={"frac_w": 4.0, "radius_w": 4.0})
    train(tiny_train, tmp_path / "heavy", heavy, progress=False, device="cpu")
    with open(tmp_path / "plain/member-0/metrics.csv") as f:
        first = float(next(csv.DictReader(f))["train_loss"])
    with open(tmp_path / "heavy/member-0/metrics.csv") as f:
        assert float(next(csv.DictReader(f))["train_loss"]) != pytest.approx(first, rel=1e-3)
    info = json.loads((tmp_path / "heavy/run.json").read_text())
    assert info["train"]["loss_weights"] == {"frac_w": 4.0, "radius_w": 4.0}
    assert TrainConfig.from_saved(info["train"]) == heavy
    with pytest.raises(ValueError, match="does not learn"):
        train(tiny_train, tmp_path / "bad", dataclasses.replace(plain, loss_weights={"fracw": 2.0}))
    assert not (tmp_path / "bad/run.json").exists()


def test_learning_rate_warms_up_then_follows_a_cosine():
    config = TrainConfig(epochs=5, lr=1e-3)
    lrs = [learning_rate(config, s, 10) for s in range(50)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[30] == pytest.approx(0.5e-3 * (1 + np.cos(np.pi * 20 / 40)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_split_is_by_item_and_stable():
    failed = np.zeros(1000, bool)
    failed[::10] = True
    tr, va = split_items(1000, failed, seed=4, val_fraction=0.2)
    assert not set(tr) & set(va)
    assert set(tr) | set(va) == set(np.flatnonzero(~failed))
    assert 0.15 < len(va) / 900 < 0.25
    _, va2 = split_items(500, failed[:500], seed=4, val_fraction=0.2)
    np.testing.assert_array_equal(va2, va[va < 500])  # adding items never moves old ones


def test_training_learns_and_is_reproducible(tiny_train, tmp_path):
    # Bit-identical on the CPU; CUDA convolutions pick non-deterministic kernels.
    config = TrainConfig(epochs=4, **SMALL)
    with global_generator_left_alone():
        train(tiny_train, tmp_path / "a", config, progress=False, device="cpu")
    train(tiny_train, tmp_path / "b", config, progress=False, device="cpu")
    assert_same_weights(
        weights(tmp_path / "a/member-0/best.pt"), weights(tmp_path / "b/member-0/best.pt")
    )
    with open(tmp_path / "a/member-0/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.6 * losses[0]
    info = json.loads((tmp_path / "a/run.json").read_text())
    assert info["parameters"][0] == "n_particles" and info["train"]["epochs"] == 4


def learnt_and_reloaded(data, out, config):
    """Train ``config`` on ``data``, check that it learns, and reload it with one image."""
    train(data, out, config, progress=False, device="cpu")
    with open(out / "member-0/metrics.csv") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < 0.7 * losses[0]
    run = TrainedRun(out, device="cpu")
    dataset = SyntheticDataset(data)
    images = (dataset.stored_image(0) / float(dataset.index["image_scale"]))[None]
    return run, run.models[0], images.astype(np.float32)


def test_group_norm_sqrt_run_learns_and_reloads_with_its_architecture(tiny_train, tmp_path):
    config = TrainConfig(epochs=3, norm="group", input_transform="sqrt", **SMALL)
    run, model, images = learnt_and_reloaded(tiny_train, tmp_path / "g", config)
    assert model.input_transform == "sqrt"
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    with torch.no_grad():
        direct = model.net((torch.from_numpy(images[:, None]).sqrt() - model.input_mean)
                           / model.input_std)  # fmt: skip
    np.testing.assert_allclose(run.raw_outputs(images)[0], direct.numpy(), rtol=1e-5, atol=1e-6)
    assert np.isfinite(run.predict(images).params["frac_w"]).all()


def test_run_without_normalisation_learns_and_reloads(tiny_train, tmp_path):
    config = TrainConfig(epochs=3, norm="none", stem_channels=4, **SMALL)
    run, model, images = learnt_and_reloaded(tiny_train, tmp_path / "n", config)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    gains = [block.gain.item() for block in model.net.body]
    assert all(g != 0.0 for g in gains)  # the residual branches have opened
    with torch.no_grad():
        direct = model.net((torch.from_numpy(images[:, None]) - model.input_mean)
                           / model.input_std)  # fmt: skip
    np.testing.assert_allclose(run.raw_outputs(images)[0], direct.numpy(), rtol=1e-5, atol=1e-6)


def test_adamw_run_learns_and_reloads(tiny_train, tmp_path):
    config = TrainConfig(epochs=3, optimizer="adamw", **SMALL)
    run, _, images = learnt_and_reloaded(tiny_train, tmp_path / "a", config)
    assert run.info["train"]["optimizer"] == "adamw"
    assert np.isfinite(run.predict(images).normalized).all()


def test_muon_is_the_default_and_older_runs_resume_as_adamw(tiny_train, tmp_path):
    assert TrainConfig().optimizer == "muon"
    assert TrainConfig.from_saved({"epochs": 3, "optimizer": "muon"}).optimizer == "muon"
    older = TrainConfig(epochs=1, optimizer="adamw", **SMALL)
    train(tiny_train, tmp_path / "r", older, progress=False, device="cpu")
    info_path = tmp_path / "r/run.json"
    info = json.loads(info_path.read_text())
    del info["train"]["optimizer"]  # as stored before the setting existed
    info_path.write_text(json.dumps(info))
    assert TrainConfig.from_saved(info["train"]) == older
    with pytest.raises(ValueError, match="optimizer: 'adamw' there, 'muon' here"):
        train(tiny_train, tmp_path / "r", TrainConfig(epochs=1, **SMALL), resume=True)
    train(tiny_train, tmp_path / "r", older, resume=True, progress=False, device="cpu")


def test_cropped_run_learns_and_reloads_with_its_crop(tiny_train, tmp_path):
    config = TrainConfig(epochs=3, crop=32, **SMALL)
    run, model, images = learnt_and_reloaded(tiny_train, tmp_path / "c", config)
    assert model.crop == 32
    centre = torch.from_numpy(images[:, None, 16:48, 16:48])  # 32 of 64 pixels, centred
    with torch.no_grad():
        direct = model.net((centre - model.input_mean) / model.input_std)
    np.testing.assert_allclose(run.raw_outputs(images)[0], direct.numpy(), rtol=1e-5, atol=1e-6)
    # A run stored before the crop existed has no "crop" setting: it read the whole field.
    info = json.loads((tmp_path / "c/run.json").read_text())
    assert TrainConfig.from_saved(info["train"]).crop == 32
    del info["train"]["crop"]
    (tmp_path / "c/run.json").write_text(json.dumps(info))
    assert TrainedRun(tmp_path / "c", device="cpu").models[0].crop == 0
    # The input standardisation is measured on what the network reads.
    dataset = SyntheticDataset(tiny_train)
    every = np.stack([dataset.stored_image(i) for i in range(len(dataset))])
    every = every / float(dataset.index["image_scale"])
    centre_mean, field_mean = every[:, 16:48, 16:48].mean(), every.mean()
    assert centre_mean > 1.5 * field_mean
    assert abs(float(model.input_mean) / centre_mean - 1) < 0.25


def test_cropping_trainer_keeps_and_augments_only_its_crop(tiny_train, tmp_path, monkeypatch):
    clean = dict(SMALL, noise=False, epochs=1, black_level_jitter=0.0, read_noise=0.0)
    cropped = trainer_of(tiny_train, tmp_path / "c", TrainConfig(**clean, crop=32), monkeypatch)
    whole = trainer_of(tiny_train, tmp_path / "w", TrainConfig(**clean, crop=0), monkeypatch)
    assert cropped.store.cache.shape == (len(cropped.store.rows), 32, 32)
    items = cropped.train_items[:16]
    for training in (True, False):
        images = cropped._batch(items, 2, 5, training)[0]
        full = whole._batch(items, 2, 5, training)[0]  # the same flips, then cut
        assert images.shape == (16, 1, 32, 32)
        torch.testing.assert_close(images, full[..., 16:48, 16:48], rtol=0, atol=0)
    noisy = trainer_of(tiny_train, tmp_path / "n", TrainConfig(**SMALL, crop=32), monkeypatch)
    flat = TrainConfig(**clean, crop=32, flips=False)
    plain = trainer_of(tiny_train, tmp_path / "p", flat, monkeypatch)._batch(items, 0, 0, True)[0]
    shot = noisy._batch(items, 0, 0, False)[0]  # validation batches are not flipped
    assert shot.shape == plain.shape and not torch.equal(shot, plain)
    assert torch.all(shot[plain == 0] == 0)  # vacuum stays dark
    lit = plain > 0
    assert abs(float(shot[lit].mean() / plain[lit].mean()) - 1) < 0.05  # unbiased counts


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_killed_run_resumes_to_the_uninterrupted_result(
    tiny_train, tmp_path, monkeypatch, optimizer
):
    config = TrainConfig(epochs=3, checkpoint_minutes=1e-9, optimizer=optimizer, **SMALL)
    train(tiny_train, tmp_path / "full", config, progress=False, device="cpu")

    train_killed_at_step(13, tiny_train, tmp_path / "cut", config, monkeypatch)
    saved = torch.load(tmp_path / "cut/member-0/checkpoint.pt", weights_only=True)
    assert (saved["state"]["epoch"], saved["state"]["batch"]) != (0, 0)
    with pytest.raises(ValueError, match="not empty"):
        train(tiny_train, tmp_path / "cut", config, progress=False, device="cpu")
    assert saved["state"]["epoch"] >= 1  # so it has a best.pt: cut short, it loads but says so
    with pytest.warns(RuntimeWarning, match="member 0 .* has not finished training"):
        TrainedRun(tmp_path / "cut", device="cpu")
    train(tiny_train, tmp_path / "cut", config, resume=True, progress=False, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainedRun(tmp_path / "cut", device="cpu")  # finished: nothing to say
    for name in ("best.pt", "checkpoint.pt"):
        a, b = weights(tmp_path / "full/member-0" / name), weights(tmp_path / "cut/member-0" / name)
        assert_same_weights(
            a if name == "best.pt" else a["model"], b if name == "best.pt" else b["model"]
        )
    full = (tmp_path / "full/member-0/metrics.csv").read_text().splitlines()
    cut = (tmp_path / "cut/member-0/metrics.csv").read_text().splitlines()
    assert [r.split(",")[:3] for r in full] == [r.split(",")[:3] for r in cut]


def test_resume_refuses_other_settings(tiny_train, tmp_path):
    train(tiny_train, tmp_path / "r", TrainConfig(epochs=1, **SMALL), progress=False)
    with pytest.raises(ValueError, match=r"other settings \(epochs: 1 there, 2 here, seed"):
        train(
            tiny_train,
            tmp_path / "r",
            TrainConfig(epochs=2, **{**SMALL, "seed": 9}),
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="no run to resume"):
        train(tiny_train, tmp_path / "none", TrainConfig(epochs=1, **SMALL), resume=True)


def test_resume_refuses_what_would_change_its_steps(tiny_train, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_train, data)
    config = TrainConfig(epochs=1, **SMALL)
    train(data, tmp_path / "r", config, progress=False)
    info_path = tmp_path / "r" / "run.json"
    info = json.loads(info_path.read_text())
    assert info["processes"] == 1 and info["training_dtype"] == "float32"

    def resumed(**changes):
        info_path.write_text(json.dumps({**info, **changes}))
        train(data, tmp_path / "r", config, resume=True, progress=False)

    with pytest.raises(ValueError, match="trained in 2 processes; resume it in as many"):
        resumed(processes=2)
    with pytest.raises(ValueError, match="computed in bfloat16, here they would be in float32"):
        resumed(training_dtype="bfloat16")
    # the folder generated anew: another seed, another size
    index_path = data / "dataset.json"
    index = json.loads(index_path.read_text())
    for key, value in (("seed", 99), ("n", index["n"] - 1)):
        index_path.write_text(json.dumps({**index, key: value}))
        with pytest.raises(ValueError, match=rf"another dataset .*{key} {index[key]} then"):
            resumed()
    index_path.write_text(json.dumps(index))
    resumed()  # as it was: resumes (and has nothing left to do)


def test_resume_grows_an_ensemble_as_one_run_would_have(tiny_train, tmp_path):
    files = ("best.pt", "checkpoint.pt", "metrics.csv")
    one = TrainConfig(epochs=1, **SMALL)
    two = dataclasses.replace(one, ensemble=2)
    train(tiny_train, tmp_path / "whole", two, progress=False, device="cpu")
    train(tiny_train, tmp_path / "grown", one, progress=False, device="cpu")
    kept = [(tmp_path / "grown/member-0" / name).stat().st_mtime_ns for name in files]
    train(tiny_train, tmp_path / "grown", two, resume=True, progress=False, device="cpu")
    after = [(tmp_path / "grown/member-0" / name).stat().st_mtime_ns for name in files]
    assert after == kept  # the finished member is not touched, let alone retrained
    for member in ("member-0", "member-1"):
        whole = weights(tmp_path / "whole" / member / "best.pt")
        assert_same_weights(whole, weights(tmp_path / "grown" / member / "best.pt"))
    info = json.loads((tmp_path / "grown/run.json").read_text())
    assert info["train"]["ensemble"] == 2
    assert len(TrainedRun(tmp_path / "grown", device="cpu").models) == 2
    with pytest.raises(ValueError, match="at least"):
        train(tiny_train, tmp_path / "grown", one, resume=True, progress=False, device="cpu")
    with pytest.raises(ValueError, match="other settings"):
        other = dataclasses.replace(two, ensemble=3, epochs=2)
        train(tiny_train, tmp_path / "grown", other, resume=True, progress=False, device="cpu")
    # growing it on data it cannot use fails, and leaves the finished run as it was
    three = dataclasses.replace(two, ensemble=3)
    with pytest.raises(ValueError, match="no heteroagg dataset"):
        train(tmp_path / "whole", tmp_path / "grown", three, resume=True, progress=False)
    assert json.loads((tmp_path / "grown/run.json").read_text()) == info


def test_a_diverging_run_stops_with_an_error(tiny_train, tmp_path, monkeypatch):
    calls = iter(range(10**6))
    plain = training_module.regression_loss

    def diverging(*args, **kwargs):  # finite for three batches, then NaN
        loss = plain(*args, **kwargs)
        return loss if next(calls) < 3 else loss * float("nan")

    monkeypatch.setattr(training_module, "regression_loss", diverging)
    with pytest.raises(RuntimeError, match=r"after 4 batches of epoch 0: the training loss is nan"):
        train(tiny_train, tmp_path / "nan", TrainConfig(epochs=2, **SMALL), progress=False)


def test_early_stopping_and_time_budget(tiny_train, tmp_path, monkeypatch):
    worse = iter(range(100))
    monkeypatch.setattr(
        training_module._MemberTrainer, "validate", lambda self: {"val_loss": float(next(worse))}
    )
    summary = train(
        tiny_train, tmp_path / "early", TrainConfig(epochs=10, patience=2, **SMALL), progress=False
    )
    assert summary.stopped == ["early stopping"] and summary.epochs == [3]
    monkeypatch.undo()
    summary = train(
        tiny_train,
        tmp_path / "budget",
        TrainConfig(epochs=50, max_minutes=1e-6, **SMALL),
        progress=False,
    )
    assert summary.stopped == ["time budget"] and summary.epochs == [1]
    assert (tmp_path / "budget/member-0/best.pt").exists()


def test_ensemble_with_gaussian_heads_predicts_uncertainty(tiny_run, tiny_test):
    from heteroagg.data import open_dataset

    with global_generator_left_alone():  # loading draws no initial weights globally
        run = TrainedRun(tiny_run, device="cpu")
    assert len(run.models) == 2 and run.has_uncertainty
    a, b = (m.state_dict()["net.head.2.weight"] for m in run.models)
    assert not torch.equal(a, b)
    ds = open_dataset(tiny_test)
    images = ds.images[:5]
    p = run.predict(images)
    assert p.normalized.shape == p.normalized_std.shape == (5, len(run.parameters))
    assert np.all(p.normalized_std > 0)
    for name in run.parameters:
        assert np.all(p.params_low[name] <= p.params[name] + 1e-12)
        assert np.all(p.params[name] <= p.params_high[name] + 1e-12)
    assert set(p.descriptors) == {"hetero_coordination_number"}
    single = run.predict(images[0])
    np.testing.assert_allclose(single.normalized[0], p.normalized[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        run.predict(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="NaN"):
        run.predict(np.full((64, 64), np.nan))
    with pytest.raises(ValueError, match="one or more images"):
        run.predict(np.zeros((0, 64, 64)))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        run.predict(np.zeros((2, 64, 64)), batch_size=0)


def test_bad_settings_give_clear_errors(tiny_train, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="descriptor_heads"):
        TrainConfig(descriptor_heads=("volume",))
    for option, name in (("descriptor_heads", "coordination_number"), ("label_maps", "path_wo3")):
        with pytest.raises(ValueError, match=f"{option} repeats a name"):
            TrainConfig(**{option: (name, name)})
    with pytest.raises(ValueError, match=r"workers must lie in \[0, 256\]"):
        TrainConfig(workers=1_000_000)
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="multiple of space_to_depth"):
        train(tiny_train, tmp_path / "x", TrainConfig(**{**SMALL, "space_to_depth": 5}))
    # label maps are cut with the image in blocks of 2 * space_to_depth = 4 pixels: a
    # 36² crop of 64² images leaves margins of 14
    misaligned = TrainConfig(**{**SMALL, "space_to_depth": 2}, crop=36, label_maps=("path_wo3",))
    with pytest.raises(ValueError, match="cropped with the image"):
        train(tiny_train, tmp_path / "w", misaligned)
    config = tiny_config()
    odd = dataclasses.replace(config, imaging=dataclasses.replace(config.imaging, shape=(65, 65)))
    with pytest.raises(ValueError, match="same margin"):
        check_shape(odd, TrainConfig(**SMALL, crop=32, space_to_depth=1))
    check_shape(odd, TrainConfig(**SMALL, crop=0, space_to_depth=1))
    with pytest.raises(ValueError, match="too few") as refused:
        train(tiny_train, tmp_path / "y", TrainConfig(**{**SMALL, "batch_size": 4096}))
    assert "processes" not in str(refused.value)
    # under torchrun every process takes a whole batch: the message says how many there are
    from heteroagg.learn.distributed import Distributed
    from heteroagg.learn.training_data import stored_data

    stored = SyntheticDataset(tiny_train)
    split = split_items(len(stored), stored.failed[:], SMALL["seed"], SMALL["val_fraction"])
    n_train = len(split[0])
    per_process = TrainConfig(**{**SMALL, "batch_size": n_train // 2 + 1})
    with pytest.raises(ValueError, match="in each of 2 processes"):
        stored_data(tiny_train, per_process, torch.device("cpu"), Distributed(0, 2), None, False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            train(tiny_train, tmp_path / "z", TrainConfig(**SMALL), device="cuda")
    with pytest.raises(ValueError, match="no trained run"):
        TrainedRun(tmp_path)
    try:
        importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        with pytest.raises(ValueError, match="tensorboard package"):
            train(tiny_train, tmp_path / "tb", TrainConfig(**SMALL, tensorboard=True))


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("gaussian", "false", "gaussian must be true or false"),  # a string would read as true
        ("flips", 0, "flips must be true or false"),
        ("lr", True, "lr must be a number"),
        ("workers", "2", "workers must be an integer"),
        ("workers", 1.5, "workers must be an integer"),
        ("val_fraction", "0.1", "val_fraction must be a number"),
        ("max_minutes", "5", "max_minutes must be a number"),
        ("widths", 16, "widths must be a list of integers"),
        ("widths", [8.5, 16], "widths must be a list of integers"),
        ("label_maps", "path_wo3", "label_maps must be a list of names"),
    ],
)
def test_mistyped_settings_are_refused_before_a_run_starts(tmp_path, setting, value, message):
    path = tmp_path / "run.toml"
    path.write_text(f"[train]\n{setting} = {json.dumps(value)}\n")
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_toml(path)
    path.write_text("train = 5\n")
    with pytest.raises(ValueError, match="train must be a table"):
        TrainConfig.from_toml(path)


def test_config_round_trips_through_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nepochs = 7\nwidths = [8, 16]\nblocks = [1, 2]\ngaussian = true\n")
    config = TrainConfig.from_toml(path)
    assert config.epochs == 7 and config.widths == (8, 16) and config.gaussian
    assert TrainConfig.from_dict(config.to_dict()) == config
    # numpy numbers, as a script may take them from arrays, are Python's in the config
    config = TrainConfig(seed=np.int64(3), lr=np.float32(0.5), widths=(np.int64(8), 16, 32, 64))
    assert config.seed == 3 and type(config.seed) is int and type(config.lr) is float
    assert type(config.widths[0]) is int
    json.dumps(config.to_dict())  # run.json holds it


def torchrun_two(path, script: str, *args) -> subprocess.CompletedProcess:
    """Run ``script`` (written to ``path``) in two CPU processes under torchrun."""
    path.write_text(script)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(path), *map(str, args)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_torchrun_trains_with_two_processes(tiny_train, tmp_path):
    script = (
        "import sys; from heteroagg.learn import TrainConfig, train; "
        "train(sys.argv[1], sys.argv[2], TrainConfig(epochs=2, batch_size=16, widths=(8, 16), "
        "blocks=(1, 1), val_fraction=0.15, label_maps=('path_wo3', 'centres_wo3')), "
        "device='cpu', progress=False)"
    )
    torchrun_two(tmp_path / "ddp.py", script, tiny_train, tmp_path / "run")
    with open(tmp_path / "run/member-0/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert (tmp_path / "run/member-0/best.pt").exists()
    # rank 0 drew the label maps; both ranks learnt them (the loss is all-reduced)
    side = 64 // TrainConfig().map_block  # 64² images, the default space-to-depth
    assert np.load(tmp_path / "run/label_maps.npy").shape[1:] == (2, side, side)
    assert float(rows[-1]["val_map_loss"]) > 0


@pytest.mark.slow
def test_torchrun_ranks_stop_together_on_a_time_budget(tiny_train, tmp_path):
    """Rank 0 alone spends time in its progress bar, so the ranks' clocks part; the
    time budget must still end both at the same step, or one waits for the other."""
    script = (
        "import contextlib, os, sys, time\n"
        "import heteroagg.learn.training as training\n"
        "from heteroagg.learn import TrainConfig, train\n"
        "if os.environ['RANK'] == '0':\n"
        "    training.progress_bar = contextlib.contextmanager(\n"
        "        lambda *a, **k: (yield lambda *b: time.sleep(0.03)))\n"
        "config = TrainConfig(epochs=50, batch_size=8, widths=(8, 16), blocks=(1, 1),\n"
        "                     val_fraction=0.2, max_minutes=0.03)\n"
        "summary = train(sys.argv[1], sys.argv[2], config, device='cpu', progress=False)\n"
        "with open(f'{sys.argv[2]}.rank{os.environ[\"RANK\"]}', 'w') as f:\n"
        "    f.write(summary.stopped[0])\n"
    )
    torchrun_two(tmp_path / "budget.py", script, tiny_train, tmp_path / "run")
    stopped = [(tmp_path / f"run.rank{rank}").read_text() for rank in (0, 1)]
    assert stopped == ["time budget", "time budget"]


@pytest.mark.slow
def test_torchrun_logs_the_mean_loss_and_stops_every_rank_on_any_divergence(tiny_train, tmp_path):
    """Each rank records its own losses; rank 1's turns infinite at one step when asked."""
    script = (
        "import json, os, sys\n"
        "import heteroagg.learn.training as training\n"
        "from heteroagg.learn import TrainConfig, train\n"
        "rank, losses = os.environ['RANK'], []\n"
        "plain = training._MemberTrainer._loss\n"
        "def loss(self, x, y, maps):\n"
        "    value = plain(self, x, y, maps)\n"
        "    losses.append((self.state['epoch'], float(value)))\n"
        "    if sys.argv[3] == 'diverge' and rank == '1' and len(losses) == 9:\n"
        "        return value * float('inf')\n"
        "    return value\n"
        "training._MemberTrainer._loss = loss\n"
        "config = TrainConfig(epochs=2, batch_size=8, widths=(8, 16), blocks=(1, 1),\n"
        "                     val_fraction=0.2)\n"
        "try:\n"
        "    train(sys.argv[1], sys.argv[2], config, device='cpu', progress=False)\n"
        "    outcome = 'finished'\n"
        "except RuntimeError as err:\n"
        "    outcome = str(err)\n"
        "with open(f'{sys.argv[2]}.rank{rank}', 'w') as f:\n"
        "    json.dump({'losses': losses, 'outcome': outcome}, f)\n"
    )
    torchrun_two(tmp_path / "mean.py", script, tiny_train, tmp_path / "run", "plain")
    ranks = [json.loads((tmp_path / f"run.rank{r}").read_text()) for r in (0, 1)]
    assert [r["outcome"] for r in ranks] == ["finished", "finished"]
    with open(tmp_path / "run/member-0/metrics.csv") as f:
        logged = [float(row["train_loss"]) for row in csv.DictReader(f)]
    for epoch, value in enumerate(logged):
        mine = [[v for e, v in r["losses"] if e == epoch] for r in ranks]
        assert len(mine[0]) == len(mine[1]) > 0
        assert value == pytest.approx(np.mean(mine[0] + mine[1]), rel=1e-6)
        assert value != pytest.approx(np.mean(mine[0]), rel=1e-6)  # not rank 0's alone

    torchrun_two(tmp_path / "mean.py", script, tiny_train, tmp_path / "bad", "diverge")
    for r in (0, 1):
        outcome = json.loads((tmp_path / f"bad.rank{r}").read_text())["outcome"]
        assert "diverged after" in outcome and "loss is inf" in outcome, outcome


def test_validation_batches_and_noise_do_not_depend_on_the_process_count(
    tiny_train, tmp_path, monkeypatch
):
    """Two ranks' validation sums, added as all_reduce adds them, give one process's metrics."""
    from heteroagg.learn.distributed import Distributed

    config = TrainConfig(epochs=1, bn_batches=0, **{**SMALL, "batch_size": 8})
    trainer = trainer_of(tiny_train, tmp_path / "v", config, monkeypatch)
    alone = trainer.validate()
    assert len(trainer.val_items) > 3 * config.batch_size  # several batches on each rank
    sent: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    for rank in (0, 1):  # record what each rank contributes
        trainer.dist = Distributed(rank, 2)
        monkeypatch.setattr(torch.distributed, "all_reduce", sent[rank].append)
        trainer.validate()
    for rank in (0, 1):  # then reduce: add the other rank's contribution
        trainer.dist = Distributed(rank, 2)
        other = iter(sent[1 - rank])
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, o=other: t.add_(next(o)))
        together = trainer.validate()
        assert together.keys() == alone.keys()
        for name, value in alone.items():
            assert together[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_item_rows_look_up_as_a_dict_would():
    from heteroagg.learn.item_split import ItemRows

    items = np.array([40, 3, 17, 8])
    rows = ItemRows(items)
    as_dict = {int(i): k for k, i in enumerate(items)}
    picks = np.array([17, 17, 40, 3, 8])
    np.testing.assert_array_equal(rows(picks), [as_dict[int(i)] for i in picks])
    assert len(rows) == 4 and rows(np.array([], int)).shape == (0,)
    for missing in ([5], [41], [-1], [3, 1000]):  # never another item's row
        with pytest.raises(KeyError):
            rows(np.array(missing))


def test_batch_norm_statistics_are_plain_averages_before_validation(
    tiny_train, tmp_path, monkeypatch
):
    config = TrainConfig(epochs=1, bn_batches=3, **SMALL)
    trainer = trainer_of(tiny_train, tmp_path / "bn", config, monkeypatch)
    conv, norm = trainer.model.net.stem[1], trainer.model.net.stem[2]
    norm.running_mean.fill_(123.0)
    seen = []
    hook = conv.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    trainer.recalibrate_batch_norm()
    hook.remove()
    assert len(seen) == 3
    expected_mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in seen]).mean(0)
    expected_var = torch.stack([o.var(dim=(0, 2, 3)) for o in seen]).mean(0)
    # float32 sums over 32 x 32 x 32 values per channel: rounding of about 1e-5 of the spread
    spread = expected_var.sqrt()
    assert torch.all((norm.running_mean - expected_mean).abs() < 1e-4 * spread)
    assert torch.allclose(norm.running_var, expected_var, rtol=1e-3)
    assert norm.momentum == 0.1


def test_weight_average_follows_its_recursion():
    assert training_module.average_decay(0.0, 100, 5000) == 0.0
    assert training_module.average_decay(0.5, 100, 0) == pytest.approx(1 / 10)  # warm-up
    assert training_module.average_decay(0.5, 100, 5000) == pytest.approx(1 - 1 / 50)
    assert training_module.average_decay(1e-9, 100, 5000) == 0.0  # under one step: no average
    torch.manual_seed(0)
    averaged, model = ResNetRegressor(3, (8,), (1,), 2), ResNetRegressor(3, (8,), (1,), 2)
    before = {k: v.clone() for k, v in averaged.state_dict().items()}
    model.stem[2].running_mean.fill_(7.0)
    training_module.update_average(averaged, model, 0.9)
    for (name, mean), weight in zip(averaged.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(mean, 0.9 * before[name] + 0.1 * weight)
    assert torch.equal(averaged.stem[2].running_mean, torch.full((8,), 7.0))


def test_weight_average_off_in_effect_changes_nothing(tiny_train, tmp_path):
    plain = TrainConfig(epochs=2, **SMALL)
    train(tiny_train, tmp_path / "plain", plain, progress=False, device="cpu")
    instant = dataclasses.replace(plain, ema_epochs=1e-9)  # decay 0: the average is the weights
    train(tiny_train, tmp_path / "instant", instant, progress=False, device="cpu")
    assert_same_weights(
        weights(tmp_path / "plain/member-0/best.pt"), weights(tmp_path / "instant/member-0/best.pt")
    )
    a = (tmp_path / "plain/member-0/metrics.csv").read_text()
    b = (tmp_path / "instant/member-0/metrics.csv").read_text()
    assert [r.split(",")[:4] for r in a.splitlines()] == [r.split(",")[:4] for r in b.splitlines()]


def test_weight_average_is_validated_and_resumes_exactly(tiny_train, tmp_path, monkeypatch):
    config = TrainConfig(epochs=3, ema_epochs=0.5, checkpoint_minutes=1e-9, **SMALL)
    train(tiny_train, tmp_path / "full", config, progress=False, device="cpu")
    saved = weights(tmp_path / "full/member-0/checkpoint.pt")
    assert any(not torch.equal(saved["averaged"][k], saved["model"][k]) for k in saved["model"])
    train_killed_at_step(13, tiny_train, tmp_path / "cut", config, monkeypatch)
    train(tiny_train, tmp_path / "cut", config, resume=True, progress=False, device="cpu")
    resumed = weights(tmp_path / "cut/member-0/checkpoint.pt")
    assert_same_weights(saved["averaged"], resumed["averaged"])
    assert_same_weights(
        weights(tmp_path / "full/member-0/best.pt"), weights(tmp_path / "cut/member-0/best.pt")
    )
    # what is validated (and kept as best.pt) is the average: its batch-norm statistics are
    # the ones re-estimated, the live weights' are left alone
    trainer = trainer_of(tiny_train, tmp_path / "kept", config, monkeypatch)
    assert trainer.evaluated is trainer.averaged
    live, mean = trainer.model.net.stem[2], trainer.averaged.net.stem[2]
    live.running_mean.fill_(123.0)
    mean.running_mean.fill_(123.0)
    trainer.recalibrate_batch_norm()
    assert torch.all(live.running_mean == 123.0) and torch.all(mean.running_mean != 123.0)


def test_training_dtype_follows_the_precision_setting(monkeypatch):
    from heteroagg.learn import torch_device

    cpu = torch.device("cpu")
    assert torch_device.training_dtype("float32", cpu) is None
    # a GPU stays in float32 under "auto" (TF32 convolutions measured faster)
    assert not torch_device.native_bfloat16(torch.device("cuda"))
    assert torch_device.training_dtype("auto", torch.device("cuda")) is None
    assert torch_device.training_dtype("bfloat16", torch.device("cuda")) is torch.bfloat16
    for native in (True, False):
        monkeypatch.setattr(torch_device, "native_bfloat16", lambda dev, n=native: n)
        expected = torch.bfloat16 if native else None
        assert torch_device.training_dtype("auto", cpu) is expected
        assert torch_device.fast_bfloat16(cpu) is native
        # an explicit bfloat16 is kept, with a warning where it is emulated
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert torch_device.training_dtype("bfloat16", cpu) is torch.bfloat16
        assert [str(w.message).count("emulated") for w in caught] == ([] if native else [1])
    with pytest.raises(ValueError, match="precision"):
        torch_device.training_dtype("float16", cpu)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="half")
    # runs stored before the setting existed trained in float32
    assert TrainConfig.from_saved({"epochs": 3}).precision == "float32"
    assert TrainConfig().precision == "auto"


@pytest.mark.filterwarnings("ignore:precision=.bfloat16. on a CPU:UserWarning")
def test_bfloat16_steps_autocast_the_forward_pass_alone(tiny_train, tmp_path, monkeypatch):
    config = TrainConfig(epochs=1, gaussian=True, **SMALL)
    steps = {}
    for precision in ("float32", "bfloat16"):
        trainer = trainer_of(
            tiny_train,
            tmp_path / precision,
            dataclasses.replace(config, precision=precision),
            monkeypatch,
        )
        x, y, _ = trainer._batch(trainer.train_items[:32], 0, 0, True)
        loss = trainer._loss(x, y, None)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters()])
        steps[precision] = (trainer, loss, grads)
    (t32, loss32, g32), (t16, loss16, g16) = steps["float32"], steps["bfloat16"]
    same_start = zip(t32.model.parameters(), t16.model.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in same_start)
    # the forward pass ran in bfloat16 (8-bit mantissa), the loss in float32
    assert loss16.dtype == torch.float32 and loss16.item() != loss32.item()
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.03)
    assert float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)) > 0.98
    assert all(p.dtype == torch.float32 for p in t16.model.parameters())


@pytest.mark.filterwarnings("ignore:precision=.bfloat16. on a CPU:UserWarning")
def test_bfloat16_run_learns_and_reloads_in_float32(tiny_train, tmp_path):
    config = TrainConfig(epochs=3, precision="bfloat16", **SMALL)
    run, model, images = learnt_and_reloaded(tiny_train, tmp_path / "bf16", config)
    assert run.info["train"]["precision"] == "bfloat16"
    assert run.info["training_dtype"] == "bfloat16"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert np.isfinite(run.predict(images).normalized).all()


def test_narrow_networks_train_on_the_cpu(tiny_train, tmp_path):
    """torch 2.13's strided 1x1 convolution hangs in its CPU backward pass on channels-last
    batches of 4 channels (training widths = (4, 8) never ended); the shortcuts compute the
    same map another way."""
    from heteroagg.learn.networks import StridedPointwise

    torch.manual_seed(0)
    strided = torch.nn.Conv2d(4, 8, 1, 2, bias=True)
    pointwise = StridedPointwise(4, 8, 2, True)
    pointwise.load_state_dict(strided.state_dict())
    x = torch.rand(3, 4, 33, 32)
    torch.testing.assert_close(pointwise(x), strided(x))
    script = (
        "import sys\n"
        "from heteroagg.learn import TrainConfig, train\n"
        "config = TrainConfig(batch_size=4, epochs=1, widths=(4, 8), blocks=(1, 1), crop=0,\n"
        "                     bn_batches=0, val_fraction=0.2, optimizer='adamw',\n"
        "                     precision='float32', workers=0, cache='memory')\n"
        "train(sys.argv[1], sys.argv[2], config, device='cpu', progress=False)\n"
        "print('trained')\n"
    )
    args = [sys.executable, "-c", script, str(tiny_train), str(tmp_path / "run")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr
