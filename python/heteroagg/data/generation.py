"""Generation of synthetic datasets into HDF5 shards.

Item ``i`` of a dataset is a pure function of ``(root seed, i)``: its
parameters come from :meth:`ParameterSpace.sample`, its aggregate from
``derive_seed(derive_seed(seed, i), 1 + attempt)`` and its image from
``derive_seed(derive_seed(seed, i), 0)``.  Items are grouped in shards of
``shard_size``; a worker computes a whole shard, writes it to
``shard-K.h5.part`` and renames it when complete, so a killed run leaves
only whole shards behind and ``resume`` recomputes the rest.
"""

from __future__ import annotations

import errno
import json
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._atomic import write_text_atomic
from heteroagg._numbers import is_count
from heteroagg._workers import results_as_completed, stop_pool, worker_pool
from heteroagg.data.config import DatasetConfig

#: Version of the on-disk layout.
DATASET_FORMAT_VERSION = 1
#: Version of how items follow from the seed (which random streams each draw takes).
#: A dataset is read whatever its version, but resumed only by the same.
STREAMS_VERSION = 2

#: Stored images are ``round(I * IMAGE_SCALE)`` as uint16: I = value / IMAGE_SCALE.
IMAGE_SCALE = 65535.0

#: Descriptors stored per item, in this order.
DESCRIPTOR_NAMES = (
    "coordination_number", "hetero_coordination_number", "hetero_contact_fraction",
    "radius_of_gyration", "n_contacts", "n_hetero_contacts", "volume_fraction_wo3",
)  # fmt: skip

#: Re-draws of a parameter set that cannot be built, with ``on_failure="redraw"``.
MAX_REDRAWS = 8


@dataclass
class GenerationSummary:
    """What a run did: items, failures, throughput and storage."""

    items: int = 0
    computed: int = 0
    failed: int = 0
    clipped: int = 0
    seconds: float = 0.0
    bytes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def bytes_per_image(self) -> float:
        return self.bytes / max(self.items, 1)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def _shard_path(out: Path, k: int) -> Path:
    return out / f"shard-{k:05d}.h5"


#: The per-item arrays of a shard, one row per item.
SHARD_ARRAYS = ("images", "params", "descriptors", "rotation", "clipped", "failed", "reason",
                "done", "centers", "radii", "materials")  # fmt: skip
#: What h5py raises for a file whose structure is damaged (zeroed or cut short).
DAMAGED_FILE_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


def out_of_file_handles(err: BaseException) -> bool:
    """Whether ``err`` is the system's limit on open files, not damage to the file."""
    return isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE)


def shard_problem(shard: Any, seed: int, start: int, stop: int) -> str | None:
    """Why an open shard (an ``h5py.File``) is not the finished shard of items
    ``start:stop`` of root seed ``seed``, or None when it is."""
    try:
        stated = tuple(int(shard.attrs.get(key, -1)) for key in ("seed", "start", "stop"))
        if stated != (seed, start, stop):
            return (f"it holds items {stated[1]}:{stated[2]} of root seed {stated[0]}, "
                    f"not items {start}:{stop} of root seed {seed}")  # fmt: skip
        for name in SHARD_ARRAYS:
            if name not in shard:
                return f"it has no {name!r} array"
            if len(shard[name]) != stop - start:
                return f"its {name!r} array has {len(shard[name])} rows, not {stop - start}"
    except DAMAGED_FILE_ERRORS as err:
        return f"it is damaged ({err})"
    return None


def _shard_done(path: Path, seed: int, start: int, stop: int) -> bool:
    """Whether ``path`` is the finished shard of items ``start:stop`` of root seed
    ``seed``, and HDF5 can open it (not one cut short by a full disk or an
    interrupted copy)."""
    import h5py

    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as shard:
            return shard_problem(shard, seed, start, stop) is None
    except DAMAGED_FILE_ERRORS as err:
        if out_of_file_handles(err):
            raise  # the shard may be fine: never write over it
        return False


def build_items(
    space: Any, seed: int, indices: Sequence[int], on_failure: str, threads: int | None = 1
) -> tuple[list, list, list[str]]:
    """Parameters, aggregates (None where they cannot be built) and failure reasons of items.

    Item ``i`` draws θ from ``(seed, i)`` and its aggregate from
    ``derive_seed(derive_seed(seed, i), 1 + attempt)``; with
    ``on_failure="redraw"`` a failed attempt draws new parameters from
    ``(derive_seed(seed, i), attempt)``, up to :data:`MAX_REDRAWS` times.  The
    aggregates are sampled on ``threads`` C++ threads (None: every core); the
    items do not depend on it.  A reason is the last attempt's error.
    """
    from heteroagg.aggregate import Aggregate, sample_aggregates
    from heteroagg.rng import derive_seed

    indices = list(indices)
    params = space.sample_many(seed, indices)
    aggs: list = [None] * len(indices)
    reasons = [""] * len(indices)
    attempts = 1 + (MAX_REDRAWS if on_failure == "redraw" else 0)
    todo = list(range(len(indices)))
    for attempt in range(attempts):
        if not todo:
            break
        item_seeds = [derive_seed(seed, indices[k]) for k in todo]
        if attempt:
            for k, item_seed in zip(todo, item_seeds, strict=True):
                params[k] = space.sample(item_seed, attempt)
        built = sample_aggregates(
            [params[k] for k in todo],
            [derive_seed(item_seed, 1 + attempt) for item_seed in item_seeds],
            threads=threads,
            on_error="return",
        )
        for k, result in zip(todo, built, strict=True):
            if isinstance(result, Aggregate):
                aggs[k], reasons[k] = result, ""
            elif isinstance(
                result, ValueError
            ):  # parameters the sampler refuses: a bug, not a draw
                raise ValueError(f"item {indices[k]}: {result}")
            else:  # the attempt's own error: the last one is the item's reason
                reasons[k] = f"{type(result).__name__}: {result}"
        todo = [k for k in todo if aggs[k] is None]
    return params, aggs, reasons


def render_seed(seed: int, i: int) -> int:
    """The seed item ``i``'s image is rendered with."""
    from heteroagg.rng import derive_seed

    return derive_seed(derive_seed(seed, i), 0)


def quantise(images: np.ndarray) -> np.ndarray:
    """Images in fractions of the beam as stored: ``round(clip(I, 0, 1) * IMAGE_SCALE)``
    in uint16, computed in the images' own precision.  ``images`` is overwritten."""
    np.clip(images, 0, 1, out=images)
    images *= IMAGE_SCALE
    return np.rint(images, out=images).astype(np.uint16)


def _write_shard(config_dict: dict, seed: int, k: int, start: int, stop: int, out: str,
                 on_failure: str, device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Compute shard ``k`` (items start..stop) and write it whole; returns its stats.

    ``device`` is where the images are rendered, already resolved ("cpu" or "cuda").
    """
    import h5py

    import heteroagg

    config = DatasetConfig.from_dict(config_dict)
    imaging = config.imaging
    params, aggs, reasons = build_items(config.params, seed, range(start, stop), on_failure)
    n = stop - start
    ny, nx = imaging.shape
    renderer = imaging.renderer(device)
    images = np.zeros((n, ny, nx), dtype=np.uint16)
    rotations = np.zeros((n, 3, 3))
    clipped = np.zeros(n, dtype=bool)
    built = [j for j in range(n) if aggs[j] is not None]
    render_seeds = [render_seed(seed, start + j) for j in built]
    rendered = _render_items(renderer, imaging.rotation, [aggs[j] for j in built], render_seeds)
    for j, s, (image, rotation, cropped, reason) in zip(built, render_seeds, rendered, strict=True):
        if reason:
            reasons[j] = reason
            continue
        image = _noisy(image, imaging, s) if imaging.bake_noise else image
        images[j] = quantise(np.array(image))
        rotations[j], clipped[j] = rotation, cropped
    names = heteroagg.ModelParams.field_names()
    theta = np.array([[getattr(p, f) for f in names] for p in params], dtype=np.float64)
    desc = np.full((n, len(DESCRIPTOR_NAMES)), np.nan)
    for j in built:
        d = aggs[j].descriptors()
        desc[j] = [float(getattr(d, name)) for name in DESCRIPTOR_NAMES]
    path = _shard_path(Path(out), k)
    part = path.with_name(path.name + ".part")
    with h5py.File(part, "w") as f:
        f.attrs.update(format_version=DATASET_FORMAT_VERSION, start=start, stop=stop, seed=seed,
                       config=json.dumps(config_dict), version=heteroagg.__version__,
                       image_scale=IMAGE_SCALE)  # fmt: skip
        # gzip level 1: half the time of level 4 for 9 % more image bytes (10.3 against 9.5 kB)
        f.create_dataset("images", data=images, chunks=(1, ny, nx), compression="gzip",
                         compression_opts=1, shuffle=True)  # fmt: skip
        f.create_dataset("params", data=theta)
        f.create_dataset("descriptors", data=desc)
        f.create_dataset("rotation", data=rotations)
        f.create_dataset("clipped", data=clipped)
        f.create_dataset("failed", data=np.array([bool(r) for r in reasons]))
        f.create_dataset("reason", data=np.array(reasons, dtype=h5py.string_dtype()))
        f.create_dataset("done", data=np.ones(n, dtype=bool))
        ragged = (("centers", np.float64), ("radii", np.float64), ("materials", np.uint8))
        for name, dtype in ragged:
            rows = np.empty(
                n, dtype=object
            )  # written in one call: per-row writes cost 0.16 ms each
            for j in range(n):
                values = getattr(aggs[j], name) if aggs[j] is not None else ()
                rows[j] = np.asarray(values, dtype=dtype).ravel()
            f.create_dataset(name, data=rows, dtype=h5py.vlen_dtype(dtype))
    os.replace(part, path)
    failures: dict[str, int] = {}
    for r in reasons:
        if r:
            key = r.split(":")[0]
            failures[key] = failures.get(key, 0) + 1
    return {"items": n, "failed": sum(bool(r) for r in reasons), "clipped": int(clipped.sum()),
            "bytes": path.stat().st_size, "reasons": failures}  # fmt: skip


def _render_items(
    renderer: Any, policy: str, aggs: list, seeds: list[int], threads: int = 1
) -> list[tuple]:
    """``(image, rotation, clipped, reason)`` per aggregate; ``reason`` is set
    (and the rest unused) for an item the renderer refuses, e.g. a path
    beyond the LUTs without ``extrapolate``.  ``threads`` render a batch (0:
    every core); the images do not depend on it."""
    import warnings

    from heteroagg.stem import FieldOfViewWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        if policy == "random":
            try:
                images, rotations, clipped = renderer.batch(aggs, seeds, threads=threads)
                return list(zip(images, rotations, clipped, [""] * len(aggs), strict=True))
            except ValueError:
                pass  # find the refused items one by one
        out = []
        rotation = None if policy == "random" else np.eye(3)
        for agg, s in zip(aggs, seeds, strict=True):
            try:
                r = renderer(agg, s, rotation=rotation, labels=True)
                out.append((r.image, r.rotation, r.clipped, ""))
            except ValueError as err:
                out.append((None, None, False, f"ValueError: {err}"))
        return out


def _noisy(image: np.ndarray, imaging: Any, seed: int) -> np.ndarray:
    """Shot noise baked in at generation, as the torch adapter applies it at load time."""
    from heteroagg.data.torch_dataset import draw_dose, shot_noise

    return shot_noise(image, draw_dose(imaging.dose, seed), imaging.pixel_size, seed)


def generate(
    config: DatasetConfig,
    n: int,
    out: str | Path,
    *,
    seed: int = 0,
    workers: int = 1,
    resume: bool = False,
    shard_size: int = 512,
    on_failure: str = "skip",
    scheduler: str | None = None,
    progress: bool = False,
    device: str = "cpu",
) -> GenerationSummary:
    """Generate ``n`` items into the folder ``out``.

    Parameters
    ----------
    config
        The dataset configuration.
    n
        Number of items.
    out
        Output folder; it holds ``dataset.json`` and ``shard-K.h5`` files.
    seed
        Root seed: item ``i`` is a pure function of ``(seed, i)``.
    workers
        Worker processes (1 without a scheduler: in this process).
    resume
        Complete an existing dataset made with the same settings; shards
        that were not finished, or that HDF5 cannot open (cut short by a full
        disk or an interrupted copy), are recomputed.
    shard_size
        Items per shard file.
    on_failure
        ``"skip"`` records a parameter draw that cannot be built as a failed
        item; ``"redraw"`` draws new parameters for it (up to 8 times).
    scheduler
        None: local processes.  ``"local"``: a Dask ``LocalCluster`` of
        ``workers`` processes.  An address such as ``"tcp://host:8786"``: an
        existing ``dask.distributed`` cluster, whose workers must see ``out``
        (a shared file system).
    progress
        Show a progress bar with items/s and ETA.
    device
        Where the images are rendered: ``"cpu"``, ``"cuda"`` or ``"auto"``
        (CUDA when available).  Aggregates are always built on the CPU.  With
        CUDA, local worker processes are started fresh ("spawn") and share the
        GPU; a Dask cluster's workers render on the CPU.  The stored images
        agree with the CPU renderer's to single-precision rounding.  The
        default is the CPU: building aggregates and compressing shards take
        most of a stored item's time, and in a measured run (docs/performance.md)
        16 CUDA workers wrote 8 192 items slower than 16 CPU workers.  The GPU
        renderer pays off where images are not stored: on-the-fly training.

    Raises
    ------
    ValueError
        For bad arguments, or ``out`` holding another dataset (or any
        dataset when ``resume`` is False).
    """
    from heteroagg import __version__
    from heteroagg._device import resolve_device
    from heteroagg._progress import progress_bar
    from heteroagg.rng import check_uint64

    seed = check_uint64("seed", seed)
    backend = "cpu" if scheduler is not None and device == "auto" else resolve_device(device)
    for name, value, low in (("n", n, 1), ("workers", workers, 1), ("shard_size", shard_size, 1)):
        if not is_count(value) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    n, workers, shard_size = int(n), int(workers), int(shard_size)
    if on_failure not in ("skip", "redraw"):
        raise ValueError(f"on_failure must be 'skip' or 'redraw', got {on_failure!r}")
    config.imaging.renderer("cpu")  # refuses what no item could be rendered with, before any file
    out = Path(out)
    index = {
        "format_version": DATASET_FORMAT_VERSION, "streams": STREAMS_VERSION, "n": n, "seed": seed,
        "shard_size": shard_size,
        "on_failure": on_failure, "config": config.to_dict(), "version": __version__,
        "image_scale": IMAGE_SCALE, "descriptors": list(DESCRIPTOR_NAMES),
    }  # fmt: skip
    index_path = out / "dataset.json"
    saved = None
    if index_path.exists():
        if not resume:
            raise ValueError(
                f"{out} already holds a dataset; pass resume=True (--resume) to complete it"
            )
        try:
            saved = json.loads(index_path.read_text())
        except ValueError as err:
            raise ValueError(f"{index_path} cannot be read ({err}): not a dataset index") from None
        if saved != index:
            differ = ", ".join(
                key
                for key in sorted(saved.keys() | index.keys())
                if saved.get(key) != index.get(key)
            )
            raise ValueError(
                f"{out} holds a dataset made with other settings ({differ} differ); cannot "
                "resume it"
            )
    elif out.is_dir() and any(out.glob("shard-*.h5")):
        raise ValueError(
            f"{out} holds shards but no dataset.json: they may have been made with other "
            "settings; generate into an empty folder or delete them"
        )
    out.mkdir(parents=True, exist_ok=True)
    if saved is None:  # an index read back as equal is left as it is
        write_text_atomic(index_path, json.dumps(index, indent=1))
    count = math.ceil(n / shard_size)
    shards = [(k, k * shard_size, min(n, (k + 1) * shard_size)) for k in range(count)]
    todo = [s for s in shards if not _shard_done(_shard_path(out, s[0]), seed, s[1], s[2])]
    summary = GenerationSummary(items=n)
    start_time = time.perf_counter()
    done_items = n - sum(stop - start for _, start, stop in todo)
    with progress_bar(progress, n, "generating", done_items) as advance:
        folder = str(out.resolve())
        args = [(index["config"], seed, k, a, b, folder, on_failure, backend) for k, a, b in todo]
        if scheduler is not None:
            _collect(_run_dask(scheduler, workers, args), summary, advance)
        elif workers == 1:
            _collect((_write_shard(*a) for a in args), summary, advance)
        else:
            # A forked child cannot use a CUDA context its parent has opened.
            context = multiprocessing.get_context("spawn" if backend == "cuda" else None)
            pool = worker_pool(workers, context)
            try:
                # one shard queued beyond the running ones keeps every worker busy
                queued = results_as_completed(pool, _write_shard, args, workers + 1)
                _collect(queued, summary, advance)
            except BaseException:  # Ctrl-C or a failed shard: start no other shard; the
                stop_pool(pool, finish=True)  # workers write theirs unless Ctrl-C comes again
                raise
            pool.shutdown()
    summary.seconds = time.perf_counter() - start_time
    summary.bytes = sum(_shard_path(out, k).stat().st_size for k, _, _ in shards)
    return summary


def _run_dask(scheduler: str, workers: int, args: list[tuple]):
    """Yield shard statistics as a Dask cluster finishes the shards."""
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise ImportError("Dask scheduling needs dask: pip install 'heteroagg[dask]'") from None
    cluster = None
    if scheduler == "local":
        # The cluster's processes start with Ctrl-C ignored, which they keep: the
        # parent alone handles it, and closes them (without a traceback from each).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)  # fmt: skip
        finally:
            signal.signal(signal.SIGINT, previous)
    client = Client(cluster if cluster is not None else scheduler)
    try:
        futures = [client.submit(_write_shard, *a, pure=False) for a in args]
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _collect(results, summary: GenerationSummary, advance) -> None:
    for stats in results:
        summary.computed += stats["items"]
        summary.failed += stats["failed"]
        summary.clipped += stats["clipped"]
        for key, count in stats["reasons"].items():
            summary.reasons[key] = summary.reasons.get(key, 0) + count
        advance(stats["items"])
