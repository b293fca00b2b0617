"""Training a regressor of the model parameters on a generated dataset.

The items come from a stored dataset folder, or, with ``on_the_fly = true``,
are generated and rendered while training (:mod:`heteroagg.learn.on_the_fly`).
A run folder holds ``run.json`` (settings, dataset, normalisations), one
``member-k/`` per ensemble member with ``checkpoint.pt`` (resumable state),
``best.pt`` (weights of the best validation epoch) and ``metrics.csv``.
"""

from __future__ import annotations

import copy
import csv
import importlib
import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from heteroagg._atomic import replaced_on_success, write_text_atomic
from heteroagg._progress import progress_bar
from heteroagg.data.config import DatasetConfig
from heteroagg.learn.batches import VALIDATION_EPOCH, Targets, augment, batch_generator
from heteroagg.learn.config import TrainConfig
from heteroagg.learn.distributed import Distributed, init_distributed
from heteroagg.learn.image_store import ImageStore
from heteroagg.learn.losses import loss_weight_vector, regression_loss
from heteroagg.learn.networks import (
    ParameterRegressor,
    centre_crop,
    transform_input,
)
from heteroagg.learn.optimizers import make_optimizer
from heteroagg.learn.torch_device import forward_autocast, torch_device, training_dtype
from heteroagg.learn.training_data import (
    label_maps_of_stored_items,
    on_the_fly_data,
    stored_data,
)
from heteroagg.rng import derive_seed

#: Stream of the batches that re-estimate batch-norm statistics ("bn").
BN_STREAM = 0x626E << 32
RUN_FORMAT_VERSION = 1


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """One epoch of linear warm-up, then a cosine to zero at the last epoch."""
    warmup = steps_per_epoch
    total = config.epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * config.lr * (1 + math.cos(math.pi * progress))


def _save_atomic(state: dict, path: Path) -> None:
    with replaced_on_success(path) as tmp:
        torch.save(state, tmp)


def _left_by_a_killed_write(path: Path) -> bool:
    """Whether ``path`` is the temporary file of a write that never finished."""
    return path.is_file() and ".part." in path.name


def _write_json_atomic(info: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(info, indent=2))


def _run_info(
    dataset_info: dict[str, Any],
    dataset_config: DatasetConfig,
    config: TrainConfig,
    targets: Any,
    input_stats: tuple[float, float],
    dev: torch.device,
    processes: int,
) -> dict[str, Any]:
    import heteroagg

    dtype = training_dtype(config.precision, dev)
    return {
        "format_version": RUN_FORMAT_VERSION,
        "heteroagg_version": heteroagg.__version__,
        "train": config.to_dict(),
        "training_dtype": _dtype_name(dtype),
        "processes": processes,
        "dataset": dataset_info,
        "dataset_config": dataset_config.to_dict(),
        "parameters": list(dataset_config.params.varied),
        "descriptor_heads": list(targets.descriptor_names),
        "descriptor_stats": targets.stats,
        "input_mean": input_stats[0],
        "input_std": input_stats[1],
        "image_shape": list(dataset_config.imaging.shape),
        "pixel_size_nm": dataset_config.imaging.pixel_size,
    }


def _dtype_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def _check_resumable_here(saved: dict[str, Any], config: TrainConfig, dev: Any, dist: Any) -> None:
    """Refuse to resume where the steps would differ from those before: another number of
    processes (another global batch) or another arithmetic."""
    before = saved.get("processes")
    if before is not None and before != dist.world:
        raise ValueError(
            f"the run was trained in {before} process{'es' if before > 1 else ''}; resume it "
            f"in as many (here {dist.world}): the global batch would change"
        )
    dtype = _dtype_name(training_dtype(config.precision, dev))
    if saved.get("training_dtype", dtype) != dtype:
        raise ValueError(
            f"the run's steps were computed in {saved['training_dtype']}, here they would be in "
            f"{dtype} (precision = {config.precision!r} on this device): resume it on a device "
            "like the first, or set precision to that type"
        )


def training_images_per_second(
    config: TrainConfig,
    shape: tuple[int, int],
    n_outputs: int,
    device: str = "auto",
    seconds: float = 5.0,
) -> float:
    """Training throughput of ``config``'s network on random batches (images/s).

    Forward, backward and optimiser steps at ``config.batch_size`` after a few
    warm-up steps; the data path (noise, flips) is not included.  Used to
    size the epochs of a run to a time budget.
    """
    dev = torch_device(device)
    model = ParameterRegressor(n_outputs, config.architecture).to(
        dev, memory_format=torch.channels_last
    )
    optimizer = make_optimizer(config.optimizer, model, config.lr, config.weight_decay)
    g = torch.Generator(dev).manual_seed(0)
    x = torch.rand(config.batch_size, 1, *shape, generator=g, device=dev)
    dtype = training_dtype(config.precision, dev)
    warmup, steps, start = 3, 0, 0.0
    while True:
        with forward_autocast(dtype, dev):
            out = model(x)
        loss = out.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())
        steps += 1
        if steps == warmup:
            start = time.perf_counter()
        elapsed = time.perf_counter() - start
        if steps > warmup and elapsed > seconds:
            return (steps - warmup) * config.batch_size / elapsed


@dataclass
class TrainSummary:
    """What :func:`train` did, per member."""

    run: Path
    epochs: list[int]
    best_val_loss: list[float]
    stopped: list[str]
    seconds: float


def train(
    data: Any,
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    validation: str | Path | None = None,
) -> TrainSummary:
    """Train a CNN regressor of the normalised parameters θ (and descriptor heads).

    Parameters
    ----------
    data
        A dataset folder written by :func:`heteroagg.data.generate`.  With
        ``config.on_the_fly``: the dataset config whose items are generated
        while training, a :class:`~heteroagg.data.DatasetConfig` or a TOML
        file (None: :func:`~heteroagg.data.default_config`).
    out
        The run folder (created; must be empty unless ``resume``).
    config
        Training settings (default :class:`TrainConfig()`).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (an explicit ``"cuda"`` without a
        device raises).  Under ``torchrun`` with several processes each
        process trains on its share of every batch (DDP).
    resume
        Continue an interrupted run from its checkpoints.  The settings must
        match; the resumed run reproduces the uninterrupted one.  Only
        ``ensemble`` may grow: the finished members are kept and the new
        ones train, exactly as they would have in one run.
    progress
        Show a progress bar.
    validation
        On the fly only: a dataset folder to validate on (generated with the
        same dataset config and another root seed) instead of ``val_items``
        generated items.

    Returns
    -------
    TrainSummary
    """
    config = config or TrainConfig()
    out = Path(out)
    if config.tensorboard:
        try:
            importlib.import_module("torch.utils.tensorboard")
        except ImportError as err:
            raise ValueError(f"tensorboard = true needs the tensorboard package: {err}") from None
    if not config.on_the_fly:
        if validation is not None:
            raise ValueError("validation= is for on_the_fly runs; a dataset is split instead")
        if isinstance(data, DatasetConfig) or (
            isinstance(data, (str, os.PathLike)) and Path(data).suffix.lower() == ".toml"
        ):
            what = "a DatasetConfig" if isinstance(data, DatasetConfig) else str(data)
            raise ValueError(
                f"{what} is a dataset config: set on_the_fly = true (heteroagg train "
                "--on-the-fly) to train on items generated while training, or give a dataset folder"
            )
        if data is None:
            raise ValueError("give a dataset folder to train on (or set on_the_fly = true)")
    dev = torch_device(device)
    dist = init_distributed(dev)
    if config.on_the_fly and dist.world > 1:
        raise ValueError("on_the_fly trains in one process; several processes are not supported")
    if dev.type == "cuda" and dist.world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    info_path = out / "run.json"
    saved = None
    if resume:
        if not info_path.exists():
            raise ValueError(f"{out} holds no run to resume (no run.json)")
        saved = json.loads(info_path.read_text())
        started = TrainConfig.from_saved(saved["train"])
        if replace(started, ensemble=config.ensemble) != config:
            given, kept = config.to_dict(), started.to_dict()
            differ = ", ".join(
                f"{k}: {kept.get(k)!r} there, {given.get(k)!r} here"
                for k in sorted(given.keys() | kept.keys())
                if k != "ensemble" and given.get(k) != kept.get(k)
            )
            raise ValueError(
                f"{out} was started with other settings ({differ}); resume with the same "
                "config (or a larger ensemble) or train into a new folder"
            )
        if config.ensemble < started.ensemble:
            raise ValueError(
                f"{out} holds an ensemble of {started.ensemble}; resume with at least "
                f"as many members, not {config.ensemble}"
            )
        _check_resumable_here(saved, config, dev, dist)
    elif out.exists() and any(not _left_by_a_killed_write(p) for p in out.iterdir()):
        raise ValueError(f"{out} is not empty; pass resume=True (--resume) to continue a run there")

    show = progress and dist.main
    if config.on_the_fly:
        source = on_the_fly_data(data, validation, config, dev, saved, show)
    else:
        source = stored_data(Path(data), config, dev, dist, saved, show)
    # before anything is written to the run folder, so a misnamed weight leaves it empty
    columns = [*source.config.params.varied, *config.descriptor_heads]
    loss_weights = loss_weight_vector(config.loss_weights, columns)
    if saved is not None:
        input_stats = (saved["input_mean"], saved["input_std"])
        if config.ensemble > saved["train"]["ensemble"] and dist.main:  # the data passed
            saved["train"]["ensemble"] = config.ensemble
            _write_json_atomic(saved, info_path)
    else:
        sample = source.store(source.train_items[: min(len(source.train_items), 512)])
        sample = transform_input(centre_crop(sample, config.crop), config.input_transform)
        input_stats = (float(sample.mean()), float(sample.std()) or 1.0)
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
            info = _run_info(
                source.info, source.config, config, source.targets, input_stats, dev, dist.world
            )
            _write_json_atomic(info, info_path)
    if dist.world > 1:
        torch.distributed.barrier()
    if config.label_maps and source.stream is None:
        items = np.concatenate([source.train_items, source.val_items])
        cache = out / "label_maps.npy"
        source.maps = label_maps_of_stored_items(
            source.store.dataset, items, config, dist, cache, show
        )
        source.val_maps = source.maps
    elif config.label_maps and source.val_maps is None:  # on the fly, a stored validation set
        cache = out / "validation_label_maps.npy"
        dataset = source.val_store.dataset
        source.val_maps = label_maps_of_stored_items(
            dataset, source.val_items, config, dist, cache, show
        )

    imaging = source.config.imaging
    noise_prior = imaging.dose if config.noise and not imaging.bake_noise else None
    summary = TrainSummary(out, [], [], [], 0.0)
    start = time.perf_counter()
    for member in range(config.ensemble):
        trainer = _MemberTrainer(
            config,
            member,
            out / f"member-{member}",
            dev,
            dist,
            source.store,
            source.targets,
            source.train_items,
            source.val_items,
            input_stats,
            noise_prior,
            imaging.pixel_size,
            show,
            val_store=source.val_store,
            val_targets=source.val_targets,
            stream=source.stream,
            maps=source.maps,
            val_maps=source.val_maps,
            loss_weights=loss_weights,
        )
        epoch, best, stopped = trainer.run()
        summary.epochs.append(epoch)
        summary.best_val_loss.append(best)
        summary.stopped.append(stopped)
    summary.seconds = time.perf_counter() - start
    return summary


def average_decay(ema_epochs: float, steps_per_epoch: int, step: int) -> float:
    """Per-step decay of the weights' moving average at (0-based) ``step``.

    The time constant is ``ema_epochs`` epochs; over the first steps the
    decay is at most ``(1 + step) / (10 + step)``, so the average soon
    forgets the initial weights.  0 when the average is off.
    """
    if ema_epochs == 0:
        return 0.0
    decay = 1.0 - 1.0 / max(1.0, ema_epochs * steps_per_epoch)
    return min(decay, (1.0 + step) / (10.0 + step))


def update_average(averaged: nn.Module, model: nn.Module, decay: float) -> None:
    """``averaged <- decay * averaged + (1 - decay) * model``, parameter by
    parameter; buffers (batch-norm statistics) are copied."""
    with torch.no_grad():
        for mean, weight in zip(averaged.parameters(), model.parameters(), strict=True):
            mean.lerp_(weight, 1.0 - decay)
        for mine, theirs in zip(averaged.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)


class _MemberTrainer:
    """One ensemble member: its model, optimiser, checkpoints and log."""

    def __init__(
        self,
        config: TrainConfig,
        member: int,
        folder: Path,
        dev: torch.device,
        dist: Distributed,
        store: ImageStore,
        targets: Targets,
        train_items: np.ndarray,
        val_items: np.ndarray,
        input_stats: tuple[float, float],
        noise_prior: Any,
        pixel_size: float,
        show: bool,
        *,
        val_store: Any = None,
        val_targets: Any = None,
        stream: Any = None,
        maps: Any = None,
        val_maps: Any = None,
        loss_weights: torch.Tensor | None = None,
    ) -> None:
        self.config, self.folder, self.dev, self.dist = config, folder, dev, dist
        self.loss_weights = None if loss_weights is None else loss_weights.to(dev)
        self.store, self.targets, self.show = store, targets, show
        self.val_store = store if val_store is None else val_store
        self.val_targets = targets if val_targets is None else val_targets
        self.train_items, self.val_items = train_items, val_items
        self.stream = stream
        self.maps, self.val_maps = maps, val_maps
        if maps is None:
            self.map_scale = None
        else:
            self.map_scale = maps.scale(train_items, config.map_crop).to(dev)
        self.noise_prior, self.pixel_size = noise_prior, pixel_size
        self.seed = derive_seed(config.seed, member)
        self.model = ParameterRegressor(
            targets.width, config.architecture, *input_stats, seed=self.seed >> 1
        )
        self.model = self.model.to(dev, memory_format=torch.channels_last)
        self.net: nn.Module = self.model
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dev.index] if dev.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = make_optimizer(
            config.optimizer, self.model, config.lr, config.weight_decay
        )
        #: the moving average of the weights (ema_epochs > 0), validated and kept as best.pt
        self.averaged: nn.Module | None = None
        if config.ema_epochs > 0:
            self.averaged = copy.deepcopy(self.model).requires_grad_(False)
        self.global_batch = config.batch_size * dist.world
        #: autocast type of the training forward passes (None: float32)
        self.dtype = training_dtype(config.precision, dev)
        if stream is not None:
            self.steps_per_epoch = config.items_per_epoch // self.global_batch
        else:
            self.steps_per_epoch = len(train_items) // self.global_batch
        self.state = {
            "epoch": 0,
            "batch": 0,
            "cursor": 0,
            "best_val": math.inf,
            "bad_epochs": 0,
            "elapsed": 0.0,
            "loss_sum": 0.0,
            "loss_count": 0,
            "stopped": "",
        }

    # -- checkpoints -------------------------------------------------------
    def _load(self) -> None:
        path = self.folder / "checkpoint.pt"
        if not path.exists():
            return
        saved = torch.load(path, map_location=self.dev, weights_only=True)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.averaged is not None:
            self.averaged.load_state_dict(saved["averaged"])
        self.state.update(saved["state"])

    def _save(self) -> None:
        if self.dist.main:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": dict(self.state),
            }
            if self.averaged is not None:
                state["averaged"] = self.averaged.state_dict()
            _save_atomic(state, self.folder / "checkpoint.pt")
        if self.dist.world > 1:
            torch.distributed.barrier()

    def _log(self, row: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        path = self.folder / "metrics.csv"
        rows = []
        if path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
        rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        with replaced_on_success(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(rows)
        if self.config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(self.folder / "tensorboard")) as writer:
                for key, value in row.items():
                    if key != "epoch":
                        writer.add_scalar(key, float(value), row["epoch"])

    # -- batches -----------------------------------------------------------
    def _batch(self, items: np.ndarray, epoch: int, index: int, training: bool):
        """Images, targets and label maps (or None) of stored (or calibration)
        items, or of validation items."""
        store = self.store if training else self.val_store
        targets = self.targets if training else self.val_targets
        maps = None
        source = self.maps if training else self.val_maps
        if source is not None:
            maps = source(items).to(self.dev) / self.map_scale
        x = self._augment(store(items).to(self.dev), epoch, index, training, maps)
        if maps is not None:
            x, maps = x
        return x, targets(items).to(self.dev), maps

    def _fresh_batch(self, batch: Any, epoch: int, index: int):
        """A batch from the on-the-fly producer, with the noise of a stored one."""
        from heteroagg.learn.on_the_fly import target_values

        y = target_values(
            batch.params, batch.descriptors, self.targets.descriptor_names, self.targets.stats
        )
        maps = None
        if batch.maps is not None:
            maps = torch.from_numpy(batch.maps).to(self.dev) / self.map_scale
        x = self._augment(batch.clean(self.dev), epoch, index, True, maps)
        if maps is not None:
            x, maps = x
        return x, torch.from_numpy(y).to(self.dev), maps

    def _augment(
        self,
        x: torch.Tensor,
        epoch: int,
        index: int,
        training: bool,
        maps: torch.Tensor | None = None,
    ) -> Any:
        """Noise and flips of the network's crop of the images; label maps are
        cut to the blocks of the crop and turned with the images.

        The images and maps are cut first (stored images come cut already):
        the crop's shape, not the field's, says which turns are symmetries.
        A training batch's draws depend on its position among all processes'
        batches (``index * world + rank``), so no two processes draw alike.
        """
        c = self.config
        if training:
            index = index * self.dist.world + self.dist.rank
        g = batch_generator(self.seed if training else c.seed, epoch, index, self.dev)
        return augment(
            centre_crop(x, c.crop),
            g,
            dose_prior=self.noise_prior,
            pixel_size_nm=self.pixel_size,
            flips=c.flips and training,
            contrast_jitter=c.contrast_jitter if training else 0,
            read_noise=c.read_noise if training else 0,
            black_level_jitter=c.black_level_jitter if training else 0,
            maps=None if maps is None else centre_crop(maps, c.map_crop),
        )

    def _order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng(derive_seed(self.seed, epoch))
        return self.train_items[rng.permutation(len(self.train_items))]

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and kept: their moving average, or themselves."""
        return self.model if self.averaged is None else self.averaged

    def recalibrate_batch_norm(self) -> None:
        """Re-estimate the batch-norm statistics of :attr:`evaluated`.

        The running averages lag the weights while the learning rate is high,
        and the images' heavy-tailed brightness makes them noisy: in eval mode
        that alone raised the validation loss sevenfold mid-run.  So before
        every validation the statistics are recomputed as plain averages over
        ``bn_batches`` seeded training batches, without gradients.
        """
        model = self.evaluated
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not norms or self.config.bn_batches == 0:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        rng = np.random.default_rng(derive_seed(self.seed, BN_STREAM + self.state["epoch"]))
        size = self.config.batch_size
        order = self.train_items[rng.permutation(len(self.train_items))]
        mine = order[self.dist.rank :: self.dist.world]
        model.train()
        with torch.no_grad():
            for k in range(min(self.config.bn_batches, len(mine) // size)):
                x = self._batch(mine[k * size : (k + 1) * size], self.state["epoch"], k, True)[0]
                model(x)
        if self.dist.world > 1:
            for m in norms:
                torch.distributed.all_reduce(m.running_mean)
                torch.distributed.all_reduce(m.running_var)
                m.running_mean /= self.dist.world
                m.running_var /= self.dist.world
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum

    def validate(self) -> dict[str, float]:
        """Validation loss and per-output R² (normalised units), fixed noise;
        with label maps also their mean squared error (standardised maps)."""
        self.recalibrate_batch_norm()
        model = self.evaluated
        model.eval()
        n_out = self.val_targets.width
        sums = torch.zeros(5, n_out, dtype=torch.float64)
        map_error = torch.zeros(2, dtype=torch.float64)
        # Batch k of the validation items, and its noise, are the same for any
        # number of processes: process r takes the batches k = r, r + world, ...
        size = self.config.batch_size
        firsts = range(self.dist.rank * size, len(self.val_items), size * self.dist.world)
        with torch.no_grad():
            for start in firsts:
                x, y, maps = self._batch(
                    self.val_items[start : start + size], VALIDATION_EPOCH, start // size, False
                )
                if maps is None:
                    pred = model(x)
                else:
                    pred, dense = model(x, maps=True)
                    map_error[0] += float((dense - maps).square().sum())
                    map_error[1] += maps.numel()
                pred = pred[:, :n_out].double().cpu()
                y = y.double().cpu()
                ok = ~torch.isnan(y)
                y0 = torch.nan_to_num(y)
                sums += torch.stack(
                    [
                        ok.sum(0),
                        (y0 * ok).sum(0),
                        (y0**2 * ok).sum(0),
                        (((pred - y0) ** 2) * ok).sum(0),
                        torch.zeros(n_out),
                    ]
                )
        if self.dist.world > 1:
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(map_error)
        count, sy, syy, sse = sums[0], sums[1], sums[2], sums[3]
        variance = syy - sy**2 / count.clamp(min=1)
        r2 = 1 - sse / variance.clamp(min=1e-12)
        n_params = n_out - len(self.val_targets.descriptor_names)
        out = {"val_loss": float(sse[:n_params].sum() / count[:n_params].sum())}
        names = self._output_names()
        out.update({f"r2_{name}": float(r2[k]) for k, name in enumerate(names)})
        if self.maps is not None:
            out["val_map_loss"] = float(map_error[0] / map_error[1].clamp(min=1))
        model.train()
        return out

    def _output_names(self) -> list[str]:
        info = json.loads((self.folder.parent / "run.json").read_text())
        return [*info["parameters"], *info["descriptor_heads"]]

    # -- the loop ------------------------------------------------------------
    def run(self) -> tuple[int, float, str]:
        c, s = self.config, self.state
        if self.dist.main:
            self.folder.mkdir(parents=True, exist_ok=True)
        if self.dist.world > 1:
            torch.distributed.barrier()
        self._load()
        if s["stopped"]:
            return s["epoch"], s["best_val"], s["stopped"]
        self.model.train()
        total = c.epochs * self.steps_per_epoch
        done = s["epoch"] * self.steps_per_epoch + s["batch"]
        last_checkpoint = time.perf_counter()
        description = f"training member {self.folder.name[-1]}"
        producer = None
        if self.stream is not None:
            from heteroagg.learn.on_the_fly import BatchProducer

            producer = BatchProducer(self.stream, s["cursor"], c.batch_size, c.prefetch_batches)
        try:
            with progress_bar(self.show, total, description, completed=done) as advance:
                self._loop(producer, advance, last_checkpoint)
        finally:
            if producer is not None:
                producer.close()
        if not s["stopped"]:
            s["stopped"] = "last epoch"
            self._save()
        return s["epoch"], s["best_val"], s["stopped"]

    def _loop(self, producer: Any, advance: Any, last_checkpoint: float) -> None:
        """Epochs of batches from the stored items, or from ``producer`` on the fly."""
        c, s = self.config, self.state
        while s["epoch"] < c.epochs and not s["stopped"]:
            epoch_start = time.perf_counter()
            order = self._order(s["epoch"]) if producer is None else None
            images = 0
            data = {"wait": 0.0, "work": 0.0, "images": 0}
            while s["batch"] < self.steps_per_epoch:
                tick = time.perf_counter()
                step = s["epoch"] * self.steps_per_epoch + s["batch"]
                if producer is None:
                    lo = s["batch"] * self.global_batch + self.dist.rank * c.batch_size
                    items = order[lo : lo + c.batch_size]
                    x, y, maps = self._batch(items, s["epoch"], s["batch"], True)
                else:
                    fresh = producer.get()
                    data["wait"] += time.perf_counter() - tick
                    data["work"] += fresh.seconds
                    data["images"] += len(fresh.items)
                    x, y, maps = self._fresh_batch(fresh, s["epoch"], s["batch"])
                lr = learning_rate(c, step, self.steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss = self._loss(x, y, maps)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if self.averaged is not None:
                    decay = average_decay(c.ema_epochs, self.steps_per_epoch, step)
                    update_average(self.averaged, self.model, decay)
                s["batch"] += 1
                if producer is not None:
                    s["cursor"] = fresh.cursor
                images += self.global_batch
                s["elapsed"] += time.perf_counter() - tick
                advance()
                (out_of_time, checkpoint_due), value = self.dist.agree(
                    (
                        c.max_minutes is not None and s["elapsed"] > 60 * c.max_minutes,
                        time.perf_counter() - last_checkpoint > 60 * c.checkpoint_minutes,
                    ),
                    float(loss.detach()),
                    self.dev,
                )
                if not math.isfinite(value):
                    raise RuntimeError(
                        f"{self.folder.name} diverged after {s['batch']} batches of epoch "
                        f"{s['epoch']}: the training loss is {value}; train anew with a "
                        f"smaller lr (now {c.lr:g}), or check the data"
                    )
                s["loss_sum"] += value
                s["loss_count"] += 1
                if out_of_time:
                    s["stopped"] = "time budget"
                    break
                if checkpoint_due:
                    self._save()
                    last_checkpoint = time.perf_counter()
            if s["batch"] == self.steps_per_epoch or s["stopped"]:
                self._end_epoch(images, time.perf_counter() - epoch_start, data, producer)
            self._save()
            last_checkpoint = time.perf_counter()

    def _loss(self, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        """The regression loss, plus the weighted label-map error when maps are learnt.

        The forward pass runs under autocast when :attr:`dtype` is set; the
        losses are computed in float32.
        """
        with forward_autocast(self.dtype, self.dev):
            if maps is None:
                out, dense = self.net(x), None
            else:
                out, dense = self.net(x, maps=True)
        loss = regression_loss(out.float(), y, self.config.gaussian, self.loss_weights)
        if dense is None:
            return loss
        return loss + self.config.label_map_weight * (dense.float() - maps).square().mean()

    def _end_epoch(self, images: int, seconds: float, data: dict, producer: Any) -> None:
        c, s = self.config, self.state
        metrics = self.validate()
        row = {
            "epoch": s["epoch"],
            "train_loss": s["loss_sum"] / max(s["loss_count"], 1),
            **metrics,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": images / max(seconds, 1e-9),
            "elapsed_s": s["elapsed"],
        }
        if producer is not None:
            # what the producer alone would deliver, and how long training waited for it
            row["generated_images_per_s"] = data["images"] / max(data["work"], 1e-9)
            row["data_wait_s"] = data["wait"]
        self._log(row)
        if metrics["val_loss"] < s["best_val"]:
            s["best_val"], s["bad_epochs"] = metrics["val_loss"], 0
            if self.dist.main:
                _save_atomic(self.evaluated.state_dict(), self.folder / "best.pt")
        else:
            s["bad_epochs"] += 1
            if s["bad_epochs"] >= c.patience:
                s["stopped"] = "early stopping"
        s["epoch"] += 1
        s["batch"], s["loss_sum"], s["loss_count"] = 0, 0.0, 0
