"""Speed of the learning step: training throughput and prediction latency.

The case: the default network (:class:`heteroagg.learn.TrainConfig`: the
centred 128² crop folded 2 x 2) on batches of 64 images of 256 x 256, with
the default augmentation (shot noise at a dose drawn from the default prior,
and the eight flips) of the pixels the network reads.  Anchors measured in the same run:

- the whole-field network, the default before the crop: the same stages on
  the full 256² image folded 4 x 4 (the same 64² first stage);
- that network with a 5x5 stride-4 convolution on the full image instead of
  the folding, which reaches the same 64² first stage as a strided ResNet
  stem would;
- the whole-field network learning four label maps.

The default network runs in the default arithmetic (``precision = "auto"``:
bfloat16 forward passes where the CPU computes them natively) with the default
optimiser (Muon on the filters), and with AdamW as the anchor of that; every
other case steps AdamW.  It runs again in float32 as a fourth anchor, and with
the noise and flips of the whole field (the data path before the stored images
were cut to the crop) as a fifth.
The default with ``stem_channels = 8`` (eight channels at the full pixel
resolution before the folding) is timed against it, and the network of the
full runs (five stages and that stem) with Muon against the same with AdamW,
and against the same with inverted residual blocks (a 1x1 expansion, a
depthwise 3x3 convolution and a 1x1 projection, as in MobileNetV2) in place
of its basic blocks.  Two anchors of that Muon step show what emulated
bfloat16 costs on a CPU without native bfloat16: the same step with the
Newton-Schulz iterations forced to bfloat16, and the AdamW step with its
forward pass forced to bfloat16.

Figures go to docs/performance.md.

Run with ``pytest benchmarks/test_bench_learn.py``.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heteroagg.data import default_config  # noqa: E402
from heteroagg.learn import TrainConfig  # noqa: E402
from heteroagg.learn.batches import augment, batch_generator  # noqa: E402
from heteroagg.learn.losses import regression_loss  # noqa: E402
from heteroagg.learn.networks import ParameterRegressor, centre_crop  # noqa: E402
from heteroagg.learn.optimizers import make_optimizer  # noqa: E402
from heteroagg.learn.torch_device import forward_autocast, training_dtype  # noqa: E402

BATCH = 64
SHAPE = (256, 256)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = np.zeros((BATCH, 1, *SHAPE), np.float32)
    for k in range(BATCH):  # sparse bright discs, like aggregates in vacuum
        for _ in range(60):
            cy, cx = rng.integers(40, 216, 2)
            r = rng.uniform(2, 10)
            yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1]]
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            images[k, 0][disc] += 0.002 * r
    return torch.from_numpy(images), torch.rand(BATCH, 9)


def step(model, optimizer, x, y, maps=None, dtype=None):
    with forward_autocast(dtype, torch.device("cpu")):
        out, dense = model(x, maps=True) if maps is not None else (model(x), None)
    loss = regression_loss(out.float(), y, False)
    if dense is not None:
        loss = loss + (dense.float() - maps).square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def training_step(model, batch, maps=None, dtype=None, cut_first=True, optimizer="adamw"):
    """One optimiser step on the batch; with ``maps``, the label maps are turned
    with the images and learnt by the dense head, as ``label_maps`` runs do;
    with ``dtype``, the forward pass autocasts to it.  A cropping network's
    batches are cut to its crop before the noise, as the trainer's are (with
    ``cut_first=False`` the whole field is noised and turned, and the network
    cuts it).  ``optimizer`` names the optimiser, as ``TrainConfig`` does."""
    x, y = batch
    if cut_first:
        x = centre_crop(x, getattr(model, "crop", 0)).contiguous()
    optimizer = make_optimizer(optimizer, model, lr=1e-4, weight_decay=1e-2)
    prior = default_config().imaging.dose
    counter = iter(range(10**9))

    def run():
        g = batch_generator(0, 0, next(counter), torch.device("cpu"))
        options = dict(dose_prior=prior, pixel_size_nm=1.0, flips=True, contrast_jitter=0.0,
                       read_noise=0.0)  # fmt: skip
        if maps is None:
            step(model, optimizer, augment(x, g, **options), y, dtype=dtype)
        else:
            noisy, turned = augment(x, g, maps=maps, **options)
            step(model, optimizer, noisy, y, turned, dtype)

    return run


#: The network of the full runs: five stages and the full-resolution stem.
FULL_RUN = TrainConfig(widths=(16, 32, 64, 128, 256), blocks=(1,) * 5, stem_channels=8)
#: The default before the crop: the whole field, folded 4 x 4.
WHOLE_FIELD = {**TrainConfig().architecture, "crop": 0, "space_to_depth": 4}


class PlainStem(torch.nn.Module):
    """The whole-field network with a 5x5 stride-4 stem instead of the folding."""

    def __init__(self):
        super().__init__()
        self.model = ParameterRegressor(9, {**WHOLE_FIELD, "space_to_depth": 1})
        stem = self.model.net.stem
        stem[1] = torch.nn.Conv2d(1, WHOLE_FIELD["widths"][0], 5, 4, 2, bias=False)

    def forward(self, x):
        return self.model(x)


def default_step(batch, optimizer):
    """A training step of the default network in the default arithmetic."""
    model = ParameterRegressor(9, TrainConfig().architecture)
    model = model.to(memory_format=torch.channels_last)
    dtype = training_dtype(TrainConfig().precision, torch.device("cpu"))
    return training_step(model, batch, dtype=dtype, optimizer=optimizer), dtype


def test_train_step_default(benchmark, batch):
    """The default network in the default arithmetic (bfloat16 where native) and
    with the default optimiser (Muon on the filters)."""
    run, dtype = default_step(batch, TrainConfig().optimizer)
    benchmark.extra_info["dtype"] = str(dtype or torch.float32)
    benchmark.extra_info["optimizer"] = TrainConfig().optimizer
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


def test_train_step_default_adamw(benchmark, batch):
    """Its anchor: the same network and arithmetic with AdamW throughout, the
    optimiser of every other step timed here."""
    run, _ = default_step(batch, "adamw")
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


def test_train_step_full_resolution_stem(benchmark, batch):
    """The default with eight channels at the full pixel resolution before the folding."""
    model = ParameterRegressor(9, TrainConfig(stem_channels=8).architecture)
    model = model.to(memory_format=torch.channels_last)
    dtype = training_dtype(TrainConfig().precision, torch.device("cpu"))
    benchmark.pedantic(training_step(model, batch, dtype=dtype), rounds=5, warmup_rounds=1)


def full_run_step(batch, optimizer):
    """A training step of the network of the full runs (five stages, the stem)."""
    config = FULL_RUN
    model = ParameterRegressor(9, config.architecture).to(memory_format=torch.channels_last)
    dtype = training_dtype(config.precision, torch.device("cpu"))
    return training_step(model, batch, dtype=dtype, optimizer=optimizer)


def test_train_step_full_resolution_stem_muon(benchmark, batch):
    """The network of the full runs (five stages, the full-resolution stem) with Muon."""
    benchmark.pedantic(full_run_step(batch, "muon"), rounds=5, warmup_rounds=1)


def test_train_step_full_resolution_stem_five_stages(benchmark, batch):
    """Its anchor: the same network with AdamW."""
    benchmark.pedantic(full_run_step(batch, "adamw"), rounds=5, warmup_rounds=1)


def test_train_step_full_resolution_stem_muon_bfloat16_iterations(benchmark, batch, monkeypatch):
    """The Muon step with its Newton-Schulz iterations forced to bfloat16, as they ran
    everywhere before they chose the arithmetic by the device (anchor:
    ``..._stem_muon``; the two are the same step on a CPU with native bfloat16)."""
    from heteroagg.learn import optimizers

    forced = functools.partial(optimizers.orthogonalize, dtype=torch.bfloat16)
    monkeypatch.setattr(optimizers, "orthogonalize", forced)
    benchmark.pedantic(full_run_step(batch, "muon"), rounds=5, warmup_rounds=1)


def test_train_step_full_resolution_stem_bfloat16_forced(benchmark, batch):
    """The network of the full runs with AdamW and ``precision = "bfloat16"`` whatever
    the CPU (anchor: ``..._five_stages``, in the default arithmetic; the two are the
    same step on a CPU with native bfloat16)."""
    model = ParameterRegressor(9, FULL_RUN.architecture).to(memory_format=torch.channels_last)
    benchmark.pedantic(training_step(model, batch, dtype=torch.bfloat16), rounds=5, warmup_rounds=1)


class InvertedResidual(torch.nn.Module):
    """A 1x1 expansion by ``expand``, a depthwise 3x3 convolution and a 1x1 projection."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 4):
        super().__init__()
        nn, hidden = torch.nn, c_in * expand
        self.branch = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        return torch.relu(self.branch(x) + self.shortcut(x))


def test_train_step_full_resolution_stem_inverted_residual(benchmark, batch):
    """The network of the full runs with inverted residual blocks for its basic
    blocks, with AdamW (anchor: ``..._five_stages``)."""
    config = FULL_RUN
    model = ParameterRegressor(9, config.architecture)
    widths = (config.widths[0], *config.widths)
    model.net.body = torch.nn.Sequential(
        *(
            InvertedResidual(c_in, c_out, 1 if stage == 0 else 2)
            for stage, (c_in, c_out) in enumerate(itertools.pairwise(widths))
        )
    )
    model = model.to(memory_format=torch.channels_last)
    dtype = training_dtype(config.precision, torch.device("cpu"))
    benchmark.extra_info["parameters"] = sum(p.numel() for p in model.parameters())
    benchmark.pedantic(training_step(model, batch, dtype=dtype), rounds=5, warmup_rounds=1)


def test_train_step_default_noise_on_whole_field(benchmark, batch):
    """The default, with the whole field noised and turned before the network cuts it."""
    model = ParameterRegressor(9, TrainConfig().architecture)
    model = model.to(memory_format=torch.channels_last)
    dtype = training_dtype(TrainConfig().precision, torch.device("cpu"))
    whole_field_noise = training_step(model, batch, dtype=dtype, cut_first=False)
    benchmark.pedantic(whole_field_noise, rounds=5, warmup_rounds=1)


def test_train_step_default_float32(benchmark, batch):
    model = ParameterRegressor(9, TrainConfig().architecture)
    model = model.to(memory_format=torch.channels_last)
    benchmark.pedantic(training_step(model, batch), rounds=5, warmup_rounds=1)


def test_train_step_anchor_whole_field(benchmark, batch):
    model = ParameterRegressor(9, WHOLE_FIELD).to(memory_format=torch.channels_last)
    benchmark.pedantic(training_step(model, batch), rounds=5, warmup_rounds=1)


def test_train_step_with_label_maps(benchmark, batch):
    """The whole-field network that also learns four label maps (8 x 8 pixel blocks)."""
    model = ParameterRegressor(9, {**WHOLE_FIELD, "map_outputs": 4})
    model = model.to(memory_format=torch.channels_last)
    maps = torch.rand(BATCH, 4, SHAPE[0] // 8, SHAPE[1] // 8)
    benchmark.pedantic(training_step(model, batch, maps), rounds=5, warmup_rounds=1)


def test_train_step_anchor_plain_stem(benchmark, batch):
    model = PlainStem().to(memory_format=torch.channels_last)
    benchmark.pedantic(training_step(model, batch), rounds=5, warmup_rounds=1)


def test_predict_one_image(benchmark, batch):
    model = ParameterRegressor(9, TrainConfig().architecture).eval()
    x = batch[0][:1]
    with torch.no_grad():
        benchmark(model, x)
