"""ResNet-style regressors of the model parameters from one HAADF image."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from heteroagg.learn.config import INPUT_TRANSFORMS, NORMS, map_block

Images = TypeVar("Images", torch.Tensor, np.ndarray)

#: Range (low, high) the Gaussian heads' log-variances are clamped to.
LOG_VARIANCE_RANGE = (-14.0, 6.0)
#: Offset of the logarithm of the mean-pooled features (``log_pooling``).
LOG_POOLING_OFFSET = 1e-2
#: Brightness (fraction of the beam) at which the logarithmic input channel
#: turns from linear to logarithmic: a fifth of a typical particle's.
LOG_CHANNEL_SCALE = 2e-3


@contextmanager
def seeded_weights(seed: int) -> Iterator[None]:
    """Draw the initial weights of the modules built inside from ``seed`` alone.

    The draws come from torch's CPU generator, seeded here and restored on
    exit: building a network leaves the caller's random state as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def normalisation(kind: str, channels: int) -> nn.Module:
    """Batch norm, group norm over groups of 8 channels (one group if fewer
    divide), or nothing (``"none"``)."""
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(channels // 8 if channels % 8 == 0 else 1, channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def transform_input(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The network's (first) view of an image in fractions of the beam.

    ``"sqrt"`` takes the square root (clipped at zero), which makes shot
    noise of roughly constant variance and compresses the bright tail of
    thick tungsten-oxide columns; ``"linear"`` and ``"linear+log"`` pass the
    image on (the latter adds :func:`log_channel` after standardisation).
    """
    if kind == "sqrt":
        return torch.sqrt(torch.clamp(x, min=0))
    if kind in ("linear", "linear+log"):
        return x
    raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {kind!r}")


def log_channel(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + I / LOG_CHANNEL_SCALE)`` of images ``I`` (clipped at zero).

    A particle's brightness is its material's brightness per nm times its
    path length, so in this channel the material is an additive offset on
    the particle's shape: a linear filter reads it, where on the linear
    image it takes a ratio.
    """
    return torch.log1p(torch.clamp(x, min=0) / LOG_CHANNEL_SCALE)


def centre_crop(x: Images, side: int) -> Images:
    """At most the centred ``side`` x ``side`` pixels of ``(..., H, W)`` images
    (a tensor or an array; a view of it).

    Each axis keeps ``min(side, length)`` pixels, so a crop at least as large
    as the images (or ``side = 0``) returns them whole.
    """
    height, width = x.shape[-2:]
    rows, columns = cropped_shape((height, width), side)
    if (rows, columns) == (height, width):
        return x
    top, left = (height - rows) // 2, (width - columns) // 2
    return x[..., top : top + rows, left : left + columns]


def cropped_shape(shape: Sequence[int], side: int) -> tuple[int, int]:
    """Sides that :func:`centre_crop` leaves of ``shape = (H, W)`` images."""
    height, width = (int(length) for length in shape)
    if side == 0:
        return height, width
    return min(side, height), min(side, width)


class StridedPointwise(nn.Conv2d):
    """A 1x1 convolution of stride ``stride``, computed as the stride-1 one on every
    ``stride``-th pixel: the same map with the same weights.  torch 2.13's strided 1x1
    kernel hangs or crashes in its CPU backward pass on channels-last batches of 2 or 4
    channels (widths = (4, 8) trained for ever)."""

    def __init__(self, c_in: int, c_out: int, stride: int, bias: bool) -> None:
        super().__init__(c_in, c_out, 1, 1, bias=bias)
        self.step = int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[..., :: self.step, :: self.step])


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with normalisation and an identity (or 1x1) shortcut.

    Without normalisation (``norm="none"``) the convolutions carry biases and
    the residual branch is multiplied by a learnt scalar gain that starts at
    zero, so that at initialisation the block passes its shortcut on and
    activations keep their scale through the depth.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str = "batch") -> None:
        super().__init__()
        biased = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=biased)
        self.bn1 = normalisation(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=biased)
        self.bn2 = normalisation(norm, c_out)
        self.gain: nn.Parameter | None = nn.Parameter(torch.zeros(())) if biased else None
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                StridedPointwise(c_in, c_out, stride, biased), normalisation(norm, c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.gain is not None:
            y = self.gain * y
        return torch.relu(y + self.shortcut(x))


class ResNetRegressor(nn.Module):
    """A one-channel ResNet with a regression head.

    Parameters
    ----------
    n_outputs
        Regressed quantities (normalised parameters, then any descriptors).
    widths
        Channels of the stages; every stage after the first halves the
        resolution.
    blocks
        Basic blocks per stage.
    space_to_depth
        Side of the pixel blocks folded into channels before the stem (4
        turns a 256² image into 16 channels of 64², 2 a 128² crop into 4
        channels of 64²): a lossless and cheap downsampling that keeps every
        pixel of small particles.
    gaussian
        Also predict a log-variance per output (a Gaussian head).
    stem_channels
        Channels of a 3x3 convolution (with normalisation and ReLU) on the
        image at its full pixel resolution, before the folding; 0: none.  It
        forms nonlinear features of single pixels (small particles' edges
        and peaks) that the folded stem's one linear convolution cannot, and
        the folding then keeps each of them.
    stem_layers
        How many such convolutions follow one another at the full pixel
        resolution (each with ``stem_channels`` channels); ignored without
        ``stem_channels``.  Two see 5 x 5 pixels and combine the first's
        features nonlinearly.
    norm
        ``"batch"`` or ``"group"`` normalisation, or ``"none"``.  Group norm
        does not depend on the batch, so evaluation needs no running
        statistics; without normalisation the network also keeps the
        absolute brightness scale of every image (see :class:`BasicBlock`).
    map_outputs
        Label maps predicted by a dense head on the second stage's features
        (the first stage's with one stage), one value per block of
        :attr:`map_block` pixels; 0: no dense head.  It serves as an
        auxiliary training target (:mod:`heteroagg.learn.label_maps`).
    in_channels
        Channels of the input images (2 with :func:`log_channel`).
    log_pooling
        Also feed the head the logarithm of the mean-pooled features (plus
        :data:`LOG_POOLING_OFFSET`).  Features that count particles of one
        kind then enter as log counts, so a ratio such as the WO3 fraction
        N_W / (N_W + N_Ti) = sigmoid(log N_W - log N_Ti) is a difference the
        head's first linear layer forms directly.
    pool_stages
        How many of the last stages are pooled into the head (1: the last
        alone).  Earlier stages see the image at a finer grid, where small
        particles are still apart.

    Notes
    -----
    ``forward`` returns ``(B, n_outputs)`` means, or ``(B, 2 * n_outputs)``
    means then log-variances for a Gaussian head.  Global average *and*
    maximum pooling feed the head: the mean carries extensive quantities
    (total projected mass over the fixed field or crop), the maximum the
    brightest columns.  ``forward(x, maps=True)`` also returns the dense head's
    ``(B, map_outputs, h, w)`` maps.
    """

    def __init__(
        self,
        n_outputs: int,
        widths: Sequence[int] = (16, 32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1, 1),
        space_to_depth: int = 4,
        gaussian: bool = False,
        norm: str = "batch",
        map_outputs: int = 0,
        stem_channels: int = 0,
        stem_layers: int = 1,
        in_channels: int = 1,
        log_pooling: bool = False,
        pool_stages: int = 1,
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError("widths and blocks need one entry per stage")
        if n_outputs < 1:
            raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
        self.n_outputs = int(n_outputs)
        self.gaussian = bool(gaussian)
        self.space_to_depth = int(space_to_depth)
        if stem_channels < 0:
            raise ValueError(f"stem_channels must be >= 0, got {stem_channels}")
        if stem_layers < 1:
            raise ValueError(f"stem_layers must be >= 1, got {stem_layers}")
        stem: list[nn.Module] = []
        c_in = int(in_channels)
        for _ in range(stem_layers if stem_channels else 0):
            stem += self._conv_norm_relu(c_in, stem_channels, norm)
            c_in = stem_channels
        stem.append(nn.PixelUnshuffle(self.space_to_depth))
        stem += self._conv_norm_relu(c_in * self.space_to_depth**2, widths[0], norm)
        self.stem = nn.Sequential(*stem)
        c_in = widths[0]
        layers: list[nn.Module] = []
        for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for k in range(count):
                stride = 2 if (stage > 0 and k == 0) else 1
                layers.append(BasicBlock(c_in, width, stride, norm))
                c_in = width
        #: body layers up to (and including) the stage that feeds the dense head
        self.map_depth = sum(blocks[: min(2, len(blocks))])
        #: pixels along each side of the image block one dense-head value covers
        self.map_block = map_block(self.space_to_depth, len(blocks))
        self.body = nn.Sequential(*layers)
        self.map_outputs = int(map_outputs)
        self.dense: nn.Module | None = None
        if self.map_outputs:
            tapped = widths[min(1, len(widths) - 1)]
            self.dense = nn.Sequential(
                nn.Conv2d(tapped, tapped, 3, 1, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(tapped, self.map_outputs, 1),
            )
        if not 1 <= pool_stages <= len(widths):
            raise ValueError(f"pool_stages must be between 1 and {len(widths)}, got {pool_stages}")
        ends = np.cumsum(blocks)
        #: body depths (layer counts) after which the features are pooled for the head
        self.pooled_depths = tuple(int(d) for d in ends[len(ends) - pool_stages :])
        self.log_pooling = bool(log_pooling)
        pooled_channels = sum(widths[len(widths) - pool_stages :])
        self.head = nn.Sequential(
            nn.Linear((3 if self.log_pooling else 2) * pooled_channels, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, self.n_outputs * (2 if gaussian else 1)),
        )
        if norm == "none":
            self._initialise_without_normalisation()

    def _initialise_without_normalisation(self) -> None:
        """He initialisation of every convolution, biases at zero: with no
        normalisation to restore it, this keeps the activations' scale
        through the stem and the shortcuts."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @staticmethod
    def _conv_norm_relu(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
        conv = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=norm == "none")
        return [conv, normalisation(norm, c_out), nn.ReLU(inplace=True)]

    def forward(
        self, x: torch.Tensor, maps: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if maps and self.dense is None:
            raise ValueError("this network has no dense head (map_outputs=0)")
        features, dense = self._features(x, maps)
        out = self.head(features)
        return (out, dense) if maps else out

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, F)`` pooled features that the head reads (its input)."""
        return self._features(x, False)[0]

    def _features(self, x: torch.Tensor, maps: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled features, and the dense head's maps when ``maps`` (else None)."""
        y = self.stem(x)
        pooled: list[torch.Tensor] = []
        dense = None
        for depth, layer in enumerate(self.body, start=1):
            y = layer(y)
            if maps and depth == self.map_depth:
                dense = self.dense(y)
            if depth in self.pooled_depths:
                pooled += self._pool(y)
        return torch.cat(pooled, dim=1), dense

    def _pool(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Global mean and maximum of ``(B, C, h, w)`` features (and the log of the mean)."""
        mean = y.mean(dim=(2, 3))
        pooled = [mean, y.amax(dim=(2, 3))]
        if self.log_pooling:
            pooled.append(torch.log(mean.float() + LOG_POOLING_OFFSET).to(mean.dtype))
        return pooled


class ParameterRegressor(nn.Module):
    """A :class:`ResNetRegressor` that standardises its input itself.

    Parameters
    ----------
    n_outputs
        Regressed quantities.
    architecture
        ``widths``, ``blocks``, ``space_to_depth`` and ``gaussian``, and
        optionally ``crop`` (default 0, the whole field; see
        :func:`centre_crop`), ``norm`` (default ``"batch"``),
        ``input_transform`` (default ``"linear"``, see :func:`transform_input`;
        ``"linear+log"`` feeds the standardised image and its
        :func:`log_channel` as two channels),
        ``map_outputs`` and ``stem_channels`` (default 0 each),
        ``stem_layers`` and ``pool_stages`` (default 1 each) and
        ``log_pooling`` (default false).
    input_mean, input_std
        Standardisation of the transformed images (training-set statistics),
        stored as buffers so that saved weights and exported models carry
        them.
    seed
        Seed of the initial weights (:func:`seeded_weights`).
    """

    def __init__(
        self,
        n_outputs: int,
        architecture: dict,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        with seeded_weights(seed):
            self.net = ResNetRegressor(
                n_outputs,
                widths=tuple(architecture["widths"]),
                blocks=tuple(architecture["blocks"]),
                space_to_depth=int(architecture["space_to_depth"]),
                gaussian=bool(architecture["gaussian"]),
                norm=str(architecture.get("norm", "batch")),
                map_outputs=int(architecture.get("map_outputs", 0)),
                stem_channels=int(architecture.get("stem_channels", 0)),
                stem_layers=int(architecture.get("stem_layers", 1)),
                in_channels=2 if architecture.get("input_transform") == "linear+log" else 1,
                log_pooling=bool(architecture.get("log_pooling", False)),
                pool_stages=int(architecture.get("pool_stages", 1)),
            )
        self.crop = int(architecture.get("crop", 0))
        self.input_transform = str(architecture.get("input_transform", "linear"))
        transform_input(torch.zeros(1), self.input_transform)  # rejects unknown kinds
        self.register_buffer("input_mean", torch.tensor(float(input_mean)))
        self.register_buffer("input_std", torch.tensor(float(input_std)))

    def forward(
        self, x: torch.Tensor, maps: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.net(self._standardised(x), maps)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features of images ``x`` (B, 1, H, W) that the head reads.

        ``net.head(model.pooled(x))`` equals ``model(x)``; a head refitted on
        these features (``benchmarks/head_refit.py``) replaces it.
        """
        return self.net.pooled(self._standardised(x))

    def _standardised(self, x: torch.Tensor) -> torch.Tensor:
        """The cropped, transformed and standardised input of the network."""
        x = centre_crop(x, self.crop)
        z = (transform_input(x, self.input_transform) - self.input_mean) / self.input_std
        if self.input_transform == "linear+log":
            z = torch.cat([z, log_channel(x)], dim=1)
        return z
