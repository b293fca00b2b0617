"""Settings of a training run (``heteroagg train --config run.toml``)."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._numbers import is_count, is_real
from heteroagg.data.generation import DESCRIPTOR_NAMES
from heteroagg.rng import check_uint64

CACHE_MODES = ("auto", "memory", "device", "stream")
FAILURE_POLICIES = ("skip", "redraw")
NORMS = ("batch", "group", "none")
INPUT_TRANSFORMS = ("linear", "sqrt", "linear+log")
#: Arithmetic of the training forward passes (heteroagg.learn.torch_device.training_dtype).
PRECISIONS = ("float32", "bfloat16", "auto")
OPTIMIZERS = ("adamw", "muon")
#: The label maps a run can learn; paths in nm, centres as counts per block.
LABEL_MAPS = ("path_tio2", "path_wo3", "centres_tio2", "centres_wo3")
#: Most worker processes that read a stored dataset (each is a copy of the training process).
MAX_WORKERS = 256


def map_block(space_to_depth: int, stages: int) -> int:
    """Pixels per side of the image block that one value of the dense head covers."""
    return space_to_depth * (2 if stages > 1 else 1)


def _plain(value: Any) -> Any:
    """numpy scalars (and tuples of them) as Python's, which run.json can hold."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


#: What each annotated type of a :class:`TrainConfig` field accepts, and how to say it.
_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (is_count, "an integer"),
    "float": (is_real, "a number"),
    "float | None": (lambda v: v is None or is_real(v), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "tuple[int, ...]": (
        lambda v: isinstance(v, tuple) and all(map(is_count, v)),
        "a list of integers",
    ),
    "tuple[str, ...]": (
        lambda v: isinstance(v, tuple) and all(isinstance(x, str) for x in v),
        "a list of names",
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    """How to train a regressor of the model parameters.

    Parameters
    ----------
    seed
        Root seed: initial weights, the validation split, the batch order,
        the augmentations and the load-time noise are pure functions of it
        (and of the epoch and batch), so a run and its resumed copy agree.
    epochs
        Most epochs; the learning rate follows a cosine from ``lr`` to zero
        over them (after a one-epoch linear warm-up).
    batch_size, lr, weight_decay
        Optimiser settings (``batch_size`` per process under DDP).
    optimizer
        ``"muon"`` (the default): Muon on the convolution filters and
        AdamW on the rest, at the same learning rate
        (:mod:`heteroagg.learn.optimizers`); or ``"adamw"`` throughout.
    val_fraction
        Share of the aggregates held out for validation and early stopping.
        Each dataset item is one aggregate, so the split is by aggregate.
    patience
        Stop after this many epochs without a better validation loss.
    max_minutes
        Stop (after checkpointing) once a member has trained this long.
    widths, blocks, space_to_depth
        The ResNet: channels and basic blocks per stage, and the pixel
        blocks folded into channels at the input (image sides must be
        multiples of it).
    stem_channels
        Channels of a convolution on the image at its full pixel resolution,
        before the folding (0: none); it forms nonlinear features of single
        pixels (see :class:`~heteroagg.learn.networks.ResNetRegressor`).
    stem_layers
        How many such convolutions follow one another at the full pixel
        resolution (used only with ``stem_channels``).
    log_pooling
        Feed the head the logarithm of the mean-pooled features too (see
        :class:`~heteroagg.learn.networks.ResNetRegressor`).
    pool_stages
        How many of the last stages are pooled into the head (1: the last).
    crop
        The network reads at most the centred ``crop`` x ``crop`` pixels of
        an image (0: the whole field).  Most aggregates fill a small part of
        the field, so a crop spends the network's work, and its resolution,
        on them; aggregates that reach past the crop are seen in part.  Even,
        and a multiple of ``space_to_depth``.  Label maps are cropped with
        the image, so with them the crop and its margins must be multiples of
        :attr:`map_block`.
    norm
        ``"batch"`` or ``"group"`` normalisation layers, or ``"none"``: no
        normalisation, with biased convolutions and each residual branch
        scaled by a learnt gain that starts at zero.
    input_transform
        ``"linear"``, ``"sqrt"`` or ``"linear+log"``: what the network sees
        of an image (see :func:`heteroagg.learn.networks.transform_input`;
        ``"linear+log"`` adds a second, logarithmic channel).
    gaussian
        Predict a variance per output and train on the Gaussian NLL.
    ensemble
        Independently seeded members (a deep ensemble); the spread of their
        predictions is the epistemic uncertainty.
    descriptor_heads
        Descriptors regressed directly, next to the parameters (names from
        the dataset's stored descriptors).
    label_maps
        Label maps (names from :data:`LABEL_MAPS`)
        that a dense head learns as an auxiliary target, drawn from each
        item's aggregate (see :mod:`heteroagg.learn.label_maps`).  The head is
        used in training alone: predictions and exported models do not change.
    label_map_weight
        Weight of the label maps' mean squared error (maps standardised per
        map) in the training loss.
    loss_weights
        Weights of single targets' terms in the loss, by parameter or
        descriptor-head name (others: 1), e.g. ``{frac_w = 2.0}``.  They shift
        the shared layers' effort between targets; a Gaussian head's
        intervals stay calibrated (see
        :func:`~heteroagg.learn.losses.regression_loss`).
    flips
        Augment with the 90° rotations and flips of the image: the eight of a
        square, the four (half turns and mirrors) that keep a rectangle.
    noise
        Shot noise at a dose drawn from the dataset's dose prior, new for
        every epoch (ignored for datasets with noise baked in).
    contrast_jitter
        Standard deviation of a log-normal gain per image (0: off).
    read_noise
        Largest standard deviation of Gaussian read noise on every pixel, in
        fractions of the beam, drawn uniformly per image (0: off): the noise
        a real detector reads in vacuum, where a simulation reads exactly 0.
        A network trained without it fails on noise of 1e-4; with the
        default 1e-3 it takes 5e-4 (docs/results.md, "Intensity
        calibration").
    black_level_jitter
        Standard deviation of a Gaussian shift of each whole image, in
        fractions of the beam (0: off): a black level not quite subtracted.
        A network trained without it reads vacuum as exactly 0 and fails on
        shifts of 5e-5; with the default 5e-4 it takes shifts of 1e-3 at
        the same test R² (docs/results.md, "Intensity calibration").
    cache
        ``"memory"`` keeps the stored uint16 images (their ``crop``, which is
        all the network reads) in RAM, ``"device"`` in
        the GPU's memory (batches are gathered there; on a CPU it is
        ``"memory"``), ``"stream"`` reads every batch from the shards, and
        ``"auto"`` uses memory when they take under ``cache_gb``.
    cache_gb
        See ``cache``.
    workers
        Processes that decompress the shards while the cache fills.
    bn_batches
        Training batches over which the batch-norm statistics are
        re-estimated before each validation (0: keep the running averages).
    precision
        Arithmetic of the training steps' forward passes: ``"float32"``,
        ``"bfloat16"`` (autocast: convolutions and matrix products in
        bfloat16, the loss, the weights and the optimiser in float32), or
        ``"auto"``: bfloat16 on a CPU that computes it natively (AVX-512 BF16
        or AMX), float32 elsewhere, GPUs included (their float32
        convolutions already run on tensor cores, and measured faster).
        Validation, batch-norm recalibration and every prediction stay in
        float32.  Runs stored before this setting existed trained in float32.
    ema_epochs
        Time constant, in epochs, of an exponential moving average of the
        weights that is validated and kept instead of the weights themselves
        (0: off).  It smooths the step-to-step noise of the weights, most
        visibly while the learning rate is high.
    checkpoint_minutes
        Also checkpoint within an epoch this often, so a killed run loses
        at most that much work.
    tensorboard
        Also log to TensorBoard (needs the ``tensorboard`` package).
    on_the_fly
        Train on items generated and rendered while training, from a
        dataset config, instead of a stored dataset (see
        :mod:`heteroagg.learn.on_the_fly`); every epoch sees new items.
    items_per_epoch
        On the fly: training items per epoch (a multiple of ``batch_size``
        is used: ``items_per_epoch // batch_size`` steps).
    val_items
        On the fly, without a validation dataset: validation items generated
        once (from the validation split of the same item stream) and kept in
        memory.
    data_seed
        On the fly: root seed of the item stream, as ``heteroagg generate
        --seed``: item ``i`` is the item ``i`` of a dataset generated with it.
    on_failure
        On the fly: ``"skip"`` or ``"redraw"`` parameter draws that cannot be
        built, as ``heteroagg generate`` does (``--redraw``).
    threads
        On the fly: CPU threads that build and render items (0: every core).
    prefetch_batches
        On the fly: batches built ahead of the training loop.
    """

    seed: int = 0
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "muon"
    val_fraction: float = 0.05
    patience: int = 4
    max_minutes: float | None = None
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    space_to_depth: int = 2
    stem_channels: int = 0
    stem_layers: int = 1
    log_pooling: bool = False
    pool_stages: int = 1
    crop: int = 128
    norm: str = "batch"
    input_transform: str = "linear"
    gaussian: bool = False
    ensemble: int = 1
    descriptor_heads: tuple[str, ...] = ()
    label_maps: tuple[str, ...] = ()
    label_map_weight: float = 1.0
    loss_weights: dict[str, float] = field(default_factory=dict)
    flips: bool = True
    noise: bool = True
    contrast_jitter: float = 0.0
    read_noise: float = 1e-3
    black_level_jitter: float = 5e-4
    cache: str = "auto"
    cache_gb: float = 12.0
    workers: int = 2
    bn_batches: int = 32
    precision: str = "auto"
    ema_epochs: float = 0.0
    checkpoint_minutes: float = 5.0
    tensorboard: bool = False
    on_the_fly: bool = False
    items_per_epoch: int = 16384
    val_items: int = 1024
    data_seed: int = 0
    on_failure: str = "skip"
    threads: int = 0
    prefetch_batches: int = 4
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check_types()
        check_uint64("seed", self.seed)
        check_uint64("data_seed", self.data_seed)
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "ensemble": self.ensemble,
            "patience": self.patience,
            "space_to_depth": self.space_to_depth,
            "items_per_epoch": self.items_per_epoch,
            "val_items": self.val_items,
            "prefetch_batches": self.prefetch_batches,
            "stem_layers": self.stem_layers,
            "pool_stages": self.pool_stages,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "cache_gb", "checkpoint_minutes", "label_map_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in (
            "weight_decay",
            "contrast_jitter",
            "read_noise",
            "black_level_jitter",
            "ema_epochs",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes!r}")
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError("widths and blocks need one entry per stage")
        if self.pool_stages > len(self.widths):
            raise ValueError(
                f"pool_stages={self.pool_stages} exceeds the {len(self.widths)} stages"
            )
        if any(w < 1 for w in (*self.widths, *self.blocks)):
            raise ValueError("widths and blocks must be positive integers")
        for name in ("crop", "stem_channels"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.crop % self.space_to_depth or self.crop % 2:
            raise ValueError(
                f"crop={self.crop} must be even and a multiple of "
                f"space_to_depth={self.space_to_depth}"
            )
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.input_transform not in INPUT_TRANSFORMS:
            raise ValueError(
                f"input_transform must be one of {INPUT_TRANSFORMS}, got {self.input_transform!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {self.cache!r}")
        if self.bn_batches < 0:
            raise ValueError(f"bn_batches must be an integer >= 0, got {self.bn_batches!r}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must lie in [0, {MAX_WORKERS}], got {self.workers!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {self.threads!r}")
        if self.on_failure not in FAILURE_POLICIES:
            raise ValueError(
                f"on_failure must be one of {FAILURE_POLICIES}, got {self.on_failure!r}"
            )
        if self.on_the_fly and self.items_per_epoch < self.batch_size:
            raise ValueError(
                f"items_per_epoch={self.items_per_epoch} is less than one batch "
                f"(batch_size={self.batch_size})"
            )
        unknown = [d for d in self.descriptor_heads if d not in DESCRIPTOR_NAMES]
        if unknown:
            raise ValueError(f"unknown descriptor_heads {unknown}; choose from {DESCRIPTOR_NAMES}")
        unknown = [n for n in self.label_maps if n not in LABEL_MAPS]
        if unknown:
            raise ValueError(f"unknown label_maps {unknown}; choose from {LABEL_MAPS}")
        for option in ("label_maps", "descriptor_heads"):
            names = list(getattr(self, option))
            if len(set(names)) != len(names):
                raise ValueError(f"{option} repeats a name: {names}")
        if not isinstance(self.loss_weights, Mapping):
            raise ValueError(f"loss_weights must be a table of names, got {self.loss_weights!r}")
        for name, value in self.loss_weights.items():
            if not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value > 0
            ):
                raise ValueError(f"loss_weights.{name} must be a positive number, got {value!r}")
        if self.extra:
            raise ValueError(f"unknown training settings: {sorted(self.extra)}")

    def _check_types(self) -> None:
        """Refuse a setting whose value is not of its field's type: a string for a
        number or a switch (``"false"`` would read as true), a bool for a number,
        a fraction for a count, a single value for a list."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = _FIELD_TYPES.get(str(f.type))
            if expected is not None and not expected[0](value):
                raise ValueError(f"{f.name} must be {expected[1]}, got {value!r}")
            if expected is not None:
                object.__setattr__(self, f.name, _plain(value))

    @property
    def architecture(self) -> dict[str, Any]:
        """What :func:`~heteroagg.learn.networks.build_network` needs."""
        return {
            "widths": list(self.widths),
            "blocks": list(self.blocks),
            "space_to_depth": self.space_to_depth,
            "stem_channels": self.stem_channels,
            "stem_layers": self.stem_layers,
            "log_pooling": self.log_pooling,
            "pool_stages": self.pool_stages,
            "crop": self.crop,
            "gaussian": self.gaussian,
            "norm": self.norm,
            "input_transform": self.input_transform,
            "map_outputs": len(self.label_maps),
        }

    @property
    def map_block(self) -> int:
        """Pixels per side of the image block that one label-map value covers."""
        return map_block(self.space_to_depth, len(self.widths))

    @property
    def map_crop(self) -> int:
        """Label-map values per side of the network's crop (0: the whole field)."""
        return self.crop // self.map_block

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("extra")
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
        return cls(**known, extra={k: v for k, v in values.items() if k not in names})

    @classmethod
    def from_saved(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The settings a run stored in its ``run.json``.

        Runs stored before ``crop`` existed read the whole field, those
        stored before ``precision`` trained in float32, those stored
        before ``optimizer`` trained with AdamW, and those stored before
        ``black_level_jitter`` without it; a run that does not state its
        ``read_noise`` trained without read noise.
        """
        legacy = {
            "crop": 0,
            "precision": "float32",
            "optimizer": "adamw",
            "black_level_jitter": 0.0,
            "read_noise": 0.0,
        }
        return cls.from_dict({**legacy, **values})

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read the ``[train]`` table (or the top level) of a TOML file."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        data = tomllib.loads(Path(path).read_text())
        table = data.get("train", data)
        if not isinstance(table, Mapping):
            raise ValueError(f"{path}: train must be a table ([train]), got {table!r}")
        return cls.from_dict(table)
