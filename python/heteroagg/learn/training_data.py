"""What a training run's members train and validate on.

A stored dataset folder, split into training and validation items
(:mod:`heteroagg.learn.item_split`), or an item stream generated and rendered
while training (:mod:`heteroagg.learn.on_the_fly`) with its calibration and
validation sets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heteroagg._progress import progress_bar
from heteroagg.data.config import DatasetConfig
from heteroagg.data.dataset import SyntheticDataset
from heteroagg.learn.batches import Targets
from heteroagg.learn.config import TrainConfig
from heteroagg.learn.distributed import Distributed
from heteroagg.learn.image_store import ImageStore
from heteroagg.learn.item_split import split_items
from heteroagg.learn.networks import cropped_shape


@dataclass
class TrainingData:
    """What the members train and validate on.

    ``store``/``targets`` serve ``train_items`` by index: the training items
    of a stored dataset, or on the fly the calibration items kept in memory
    (they feed the input statistics and the batch-norm batches).  ``val_*``
    is the validation set, ``stream`` the on-the-fly item stream (None for
    a stored dataset); ``maps`` and ``val_maps`` serve the label maps of the
    training and validation items (None without ``label_maps``).
    """

    config: DatasetConfig
    info: dict[str, Any]
    store: Any
    targets: Any
    train_items: np.ndarray
    val_store: Any
    val_targets: Any
    val_items: np.ndarray
    stream: Any = None
    maps: Any = None
    val_maps: Any = None


def cache_mode(config: TrainConfig, shape: tuple[int, int], n_items: int, dev: torch.device) -> str:
    """Where an :class:`ImageStore` keeps ``n_items`` crops of ``shape`` images."""
    where = config.cache
    if where == "auto":
        rows, columns = cropped_shape(shape, config.crop)
        where = "memory" if 2 * rows * columns * n_items < config.cache_gb * 1e9 else "stream"
    if where == "device" and dev.type == "cpu":
        where = "memory"
    return where


def stored_data(
    data: Path,
    config: TrainConfig,
    dev: torch.device,
    dist: Distributed,
    saved: dict[str, Any] | None,
    show: bool,
) -> TrainingData:
    """A dataset folder split into training and validation items."""
    dataset = SyntheticDataset(data)
    dataset_config = DatasetConfig.from_dict(dataset.index["config"])
    check_shape(dataset_config, config)
    if saved is not None:
        check_same_dataset(saved, data, dataset, dataset_config)
    train_items, val_items = split_items(
        len(dataset), dataset.failed[:], config.seed, config.val_fraction
    )
    if len(train_items) < config.batch_size * dist.world or len(val_items) == 0:
        processes = f" in each of {dist.world} processes" if dist.world > 1 else ""
        raise ValueError(
            f"{data} has {len(train_items)} training and {len(val_items)} validation "
            f"items: too few for batches of {config.batch_size}{processes}"
        )
    space = dataset_config.params
    if saved is not None:
        targets = Targets(dataset, space, config.descriptor_heads, stats=saved["descriptor_stats"])
    else:
        targets = Targets(dataset, space, config.descriptor_heads, fit_items=train_items)
    items = np.concatenate([train_items, val_items])
    where = cache_mode(config, dataset_config.imaging.shape, len(items), dev)
    store = ImageStore(dataset, items, where, dev, config.workers, show, config.crop)
    info = {
        "path": str(data.resolve()),
        "n": len(dataset),
        "n_train": len(train_items),
        "n_val": len(val_items),
        "heteroagg_version": dataset.index.get("version"),  # what generate wrote it with
        "seed": dataset.index.get("seed"),
    }
    return TrainingData(
        dataset_config, info, store, targets, train_items, store, targets, val_items
    )


def check_same_dataset(
    saved: dict[str, Any], data: Path, dataset: SyntheticDataset, config: DatasetConfig
) -> None:
    """Refuse to resume a run on another dataset than it started on: another folder, or
    the same folder since generated anew (its label maps and statistics would not fit)."""
    before = saved["dataset"]
    if before["path"] != str(data.resolve()):
        raise ValueError(f"the run was trained on {before['path']}, not {data}")
    now = {"n": len(dataset), "seed": dataset.index.get("seed")}
    changed = [f"{k} {before[k]} then, {now[k]} now" for k in now if before.get(k) != now[k]]
    config_now = json.loads(json.dumps(config.to_dict()))  # as run.json holds it
    if saved.get("dataset_config", config_now) != config_now:
        changed.append("another config")
    if changed:
        raise ValueError(
            f"{data} holds another dataset than the run was trained on ({'; '.join(changed)}): "
            "train into a new folder"
        )


def check_shape(dataset_config: DatasetConfig, config: TrainConfig) -> None:
    """Refuse settings whose blocks, crop or label maps do not tile the images.

    Raises
    ------
    ValueError
        Naming the setting and the image shape.
    """
    shape = dataset_config.imaging.shape
    if any(side % config.space_to_depth for side in shape):
        raise ValueError(
            f"image shape {shape} is not a multiple of space_to_depth={config.space_to_depth}"
        )
    if config.crop and any(config.crop < side and (side - config.crop) % 2 for side in shape):
        raise ValueError(
            f"crop={config.crop} does not leave the same margin on both sides of {shape} images"
        )
    block = config.map_block
    if config.label_maps and any(side % block for side in shape):
        raise ValueError(
            f"label_maps need image sides that are multiples of {block}, the pixels one "
            f"label-map value covers; the images are {shape}"
        )
    cut = [(side - config.crop) // 2 for side in shape if 0 < config.crop < side]
    if config.label_maps and cut and (config.crop % block or any(m % block for m in cut)):
        raise ValueError(
            f"label_maps are cropped with the image, in blocks of {block} pixels: crop="
            f"{config.crop} must be a multiple of {block} and leave margins that are too "
            f"(the margins of {shape} images are {cut})"
        )


def label_maps_of_stored_items(
    dataset: SyntheticDataset,
    items: np.ndarray,
    config: TrainConfig,
    dist: Distributed,
    cache: Path,
    show: bool,
) -> Any:
    """The label maps of stored items, drawn by the main process into ``cache``
    (in the run folder, so a resumed run reads them back)."""
    from heteroagg.learn.label_maps import stored_label_maps

    def maps(progress: bool) -> Any:
        return stored_label_maps(
            dataset, items, config.label_maps, config.map_block, cache=cache, show_progress=progress
        )

    drawn = maps(show) if dist.main else None
    if dist.world > 1:
        torch.distributed.barrier()
    return drawn if drawn is not None else maps(False)


def stream_config(data: Any) -> DatasetConfig:
    """The dataset config of an on-the-fly run: a DatasetConfig, a TOML file or None."""
    from heteroagg.data.config import default_config

    if data is None:
        return default_config()
    if isinstance(data, DatasetConfig):
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(
            f"on_the_fly needs a DatasetConfig or a dataset config file, got {type(data).__name__}"
        )
    path = Path(data)
    if path.is_dir():
        raise ValueError(
            f"on_the_fly generates its items from a dataset config (a .toml file or a "
            f"DatasetConfig), but {path} is a folder; give a stored dataset as "
            "validation= (heteroagg train --val-data) to validate on it"
        )
    if not path.exists():
        raise ValueError(f"dataset config {path} does not exist")
    return DatasetConfig.from_toml(path)


def validation_dataset(
    validation: str | Path, dataset_config: DatasetConfig, config: TrainConfig
) -> tuple[SyntheticDataset, np.ndarray]:
    """A stored dataset to validate an on-the-fly run on, and its items that were built."""
    dataset = SyntheticDataset(validation)
    if DatasetConfig.from_dict(dataset.index["config"]).to_dict() != dataset_config.to_dict():
        raise ValueError(
            f"the validation dataset {validation} was generated with another dataset config "
            "than the one the run trains on"
        )
    if dataset.index.get("seed") == config.data_seed:
        raise ValueError(
            f"the validation dataset {validation} was generated with the item stream's root "
            f"seed (data_seed={config.data_seed}): its items are training items"
        )
    items = np.flatnonzero(~np.asarray(dataset.failed[:], dtype=bool))
    if len(items) == 0:
        raise ValueError(f"the validation dataset {validation} holds no item that was built")
    return dataset, items


def on_the_fly_data(
    data: Any,
    validation: str | Path | None,
    config: TrainConfig,
    dev: torch.device,
    saved: dict[str, Any] | None,
    show: bool,
) -> TrainingData:
    """The item stream of a dataset config, its calibration and validation sets.

    The calibration set, the first training items of the stream, sets the
    input standardisation and the descriptor statistics and feeds the
    batch-norm re-estimation; it and the generated validation set are
    rendered once and kept in memory (on the GPU when training there).
    """
    from heteroagg.learn import on_the_fly as fly

    dataset_config = stream_config(data)
    check_shape(dataset_config, config)
    validation_path = None if validation is None else str(Path(validation).resolve())
    if saved is not None:
        if saved["dataset_config"] != dataset_config.to_dict():
            raise ValueError("the run was trained on another dataset config; give the same one")
        before = saved["dataset"].get("validation")
        if before != validation_path:
            raise ValueError(
                f"the run was validated on {before or 'generated items'}, "
                f"not {validation_path or 'generated items'}"
            )
    stored_val, val_identity = None, {}
    if validation is not None:
        index_path = Path(validation) / "dataset.json"
        if index_path.is_file():  # checked before any shard is read
            index = json.loads(index_path.read_text())
            val_identity = {"validation_n": index.get("n"), "validation_seed": index.get("seed")}
        if saved is not None and any(
            saved["dataset"].get(k, v) != v for k, v in val_identity.items()
        ):
            raise ValueError(
                f"the validation dataset {validation} was generated anew since the run "
                "started (another size or seed): validate on the one it started with"
            )
        stored_val = validation_dataset(validation, dataset_config, config)
    stream = fly.ItemStream(
        dataset_config,
        config.data_seed,
        config.seed,
        config.val_fraction,
        on_failure=config.on_failure,
        threads=config.threads,
        descriptor_names=config.descriptor_heads,
        device=dev,
        label_maps=config.label_maps,
        map_block=config.map_block,
    )
    size = fly.calibration_size(config.batch_size, config.bn_batches)
    n_val = 0 if stored_val is not None else config.val_items
    with progress_bar(show, size + n_val, "rendering fixed items") as advance:
        calibration = fly.first_batches(stream, size, False, advance)
        generated_val = fly.first_batches(stream, n_val, True, advance)
    names = tuple(config.descriptor_heads)
    stats = saved["descriptor_stats"] if saved else fly.descriptor_stats(calibration, names)
    fixed = fly.FixedItems(calibration + generated_val, dev)
    targets = fixed.targets(names, stats)
    info: dict[str, Any] = {
        "on_the_fly": True,
        "path": None,
        "seed": config.data_seed,
        "items_per_epoch": config.items_per_epoch,
        "validation": validation_path,
        **val_identity,
        "heteroagg_version": _version(),
    }
    maps = val_maps = fixed.label_maps()
    if stored_val is None:
        val_store, val_targets = fixed, targets
        val_items = np.concatenate([b.items for b in generated_val])
    else:
        dataset, val_items = stored_val
        where = cache_mode(config, dataset_config.imaging.shape, len(val_items), dev)
        val_store = ImageStore(dataset, val_items, where, dev, config.workers, show, config.crop)
        val_targets = Targets(dataset, dataset_config.params, names, stats=stats)
        val_maps = None  # drawn once the run folder exists (training.train)
    info["n_val"] = len(val_items)
    train_items = np.concatenate([b.items for b in calibration])
    return TrainingData(
        dataset_config,
        info,
        fixed,
        targets,
        train_items,
        val_store,
        val_targets,
        val_items,
        stream,
        maps,
        val_maps,
    )


def _version() -> str:
    import heteroagg

    return heteroagg.__version__
