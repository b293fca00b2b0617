"""Training on items generated and rendered while training (``on_the_fly = true``).

The item stream is the one :func:`heteroagg.data.generate` writes for the same
dataset config and root seed: item ``i`` has the parameters
``space.sample(seed, i)``, the aggregate of seed ``derive_seed(derive_seed(seed,
i), 1 + attempt)`` and the image of render seed ``derive_seed(derive_seed(seed,
i), 0)``, quantised to uint16 as stored.  Items are split into training and
validation by the same rule as a stored dataset (:func:`~heteroagg.learn.
item_split.split_items`); items that cannot be built or rendered are skipped.

A training batch is the next ``batch_size`` training items from a *cursor*
(the first item index not yet used), so it is a pure function of the cursor;
checkpoints store the cursor and a resumed run continues the stream exactly.
:class:`BatchProducer` builds the batches on a background thread (the C++
sampler and renderer release the GIL and run on ``threads`` cores) and keeps
``prefetch_batches`` of them ready in a bounded queue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from heteroagg.data.config import DatasetConfig, ImagingConfig
from heteroagg.data.generation import (
    DESCRIPTOR_NAMES,
    IMAGE_SCALE,
    build_items,
    quantise,
    render_seed,
)
from heteroagg.learn.item_split import ItemRows, is_validation_item

#: Training items whose clean images set the input standardisation (as for a stored dataset).
INPUT_STATS_ITEMS = 512
#: Most training items kept in memory for the batch-norm re-estimation.
MAX_CALIBRATION_ITEMS = 4096
#: Items built and rendered per call while the fixed sets are made.
FIXED_CHUNK = 256
#: Fewest items the producer builds (and renders on the CPU) per call into the core.
PRODUCER_CHUNK = 512


def _to_bits(u16: torch.Tensor) -> torch.Tensor:
    """uint16 values held in an int32 tensor -> the same bits as int16 (torch lacks uint16 ops)."""
    return torch.where(u16 > 32767, u16 - 65536, u16).to(torch.int16)


def _from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Stored int16 bits -> images in fractions of the beam, as ``ImageStore`` does it."""
    raw = bits.to(torch.int32) & 0xFFFF
    return raw.to(torch.float32) / IMAGE_SCALE


@dataclass
class Batch:
    """Items of the stream, built, rendered and quantised like stored ones.

    Attributes
    ----------
    items
        (B,) global item indices.
    images
        (B, H, W): uint16 numpy from the CPU renderer, or quantised float32 on
        the GPU from the CUDA renderer (values ``k / IMAGE_SCALE``).
    params
        (B, P) varied parameters normalised to [0, 1].
    descriptors
        (B, D) raw descriptor values of the run's descriptor heads.
    cursor
        The first item index after this batch: where the next one starts.
    seconds
        Time the producer spent building and rendering the batch.
    maps
        (B, C, h, w) float32 label maps of the run's ``label_maps``, or None.
    """

    items: np.ndarray
    images: Any
    params: np.ndarray
    descriptors: np.ndarray
    cursor: int
    seconds: float = 0.0
    maps: np.ndarray | None = None

    def clean(self, device: torch.device) -> torch.Tensor:
        """(B, 1, H, W) float32 clean images on ``device``, as ``ImageStore`` serves them."""
        if isinstance(self.images, np.ndarray):
            bits = torch.from_numpy(self.images.view(np.int16))
            return _from_bits(bits.to(device))[:, None]
        return (self.images / IMAGE_SCALE)[:, None].to(device)

    def bits(self) -> torch.Tensor:
        """(B, H, W) int16 bits of the stored uint16 images, on the images' device."""
        if isinstance(self.images, np.ndarray):
            return torch.from_numpy(self.images.view(np.int16).copy())
        return _to_bits(self.images.to(torch.int32))


def target_values(
    params: np.ndarray, descriptors: np.ndarray, names: tuple[str, ...], stats: dict
) -> np.ndarray:
    """Targets as :class:`~heteroagg.learn.batches.Targets` computes them, float32."""
    columns = [(descriptors[:, k] - stats[d][0]) / stats[d][1] for k, d in enumerate(names)]
    values = np.column_stack([params, *columns]) if columns else params
    return values.astype(np.float32)


def make_renderer(imaging: ImagingConfig, device: torch.device) -> tuple[Any, Any]:
    """The renderers of on-the-fly items: ``(cuda_renderer or None, cpu_renderer)``.

    On a CUDA training device with heteroagg's CUDA extension, the CUDA
    renderer (``HaadfRenderer(..., device="cuda")``) is used; the ``"fixed"``
    rotation policy and ``bake_noise`` stay on the CPU.  The CPU renderer also
    finds the items the CUDA one refuses.
    """
    from heteroagg._device import cuda_status

    cpu = imaging.renderer("cpu")
    gpu = (
        device.type == "cuda"
        and cuda_status()[0]
        and imaging.rotation == "random"
        and not imaging.bake_noise
    )
    if gpu:
        try:
            return imaging.renderer("cuda"), cpu
        except RuntimeError:
            pass  # the CUDA extension cannot be used here: render on the CPU
    return None, cpu


def render_into(
    cuda_renderer: Any,
    cpu_renderer: Any,
    policy: str,
    aggs: list,
    seeds: list[int],
    out: Any,
    threads: int,
) -> tuple[np.ndarray, Any]:
    """Render ``aggs``: the one place that calls a renderer.

    Parameters
    ----------
    cuda_renderer, cpu_renderer
        From :func:`make_renderer`; ``cuda_renderer`` is None on the CPU path.
    policy
        The imaging config's rotation policy.
    aggs, seeds
        The aggregates and their render seeds.
    out
        With the CUDA renderer: a (len(aggs), H, W) float32 torch CUDA tensor
        that it writes in place (zero copy).  None on the CPU path.
    threads
        CPU threads of the renderers (0: every core); on CUDA they project
        the aggregates.

    Returns
    -------
    ok, images
        ``ok`` (len(aggs),) bool marks the items rendered; items the renderer
        refuses (a beam path beyond the LUTs without ``extrapolate``) are left
        out, as :func:`heteroagg.data.generate` records them as failed.
        ``images`` holds the rendered ones in order: ``out[:ok.sum()]`` on the
        GPU, a new (ok.sum(), H, W) float32 numpy array on the CPU.
    """
    if cuda_renderer is not None:
        try:
            cuda_renderer.batch(aggs, seeds, threads=threads, out=out)
            # the tensor goes to the training loop on another thread: it must be complete
            torch.cuda.synchronize(out.device)
            return np.ones(len(aggs), dtype=bool), out
        except ValueError:
            pass  # an item is refused: find it on the CPU, as generate does
    elif policy == "random":
        try:  # batch() flags cropped items instead of warning: safe off the main thread
            images, _, _ = cpu_renderer.batch(aggs, seeds, threads=threads)
            return np.ones(len(aggs), dtype=bool), images
        except ValueError:
            pass  # an item is refused: find it one by one below
    from heteroagg.data.generation import _render_items

    rendered = _render_items(cpu_renderer, policy, aggs, seeds, threads=threads)
    ok = np.array([not reason for *_, reason in rendered], dtype=bool)
    shape = cpu_renderer.shape
    block = np.zeros((int(ok.sum()), *shape), dtype=np.float32)
    for k, image in enumerate(image for image, *_, reason in rendered if not reason):
        block[k] = image
    if cuda_renderer is None:
        return ok, block
    out[: len(block)] = torch.from_numpy(block).to(out.device)
    return ok, out


class ItemStream:
    """The items of a dataset config and root seed, built and rendered on demand.

    Parameters
    ----------
    config
        The dataset config: parameter priors and imaging.
    seed
        Root seed of the items (``heteroagg generate --seed``).
    split_seed, val_fraction
        The validation split: item ``i`` is a validation item when a uniform
        draw from ``(split_seed, i)`` falls below ``val_fraction``.
    on_failure
        ``"skip"`` or ``"redraw"``, as for :func:`heteroagg.data.generate`.
    threads
        CPU threads of the sampler and the renderer (0: every core).
    descriptor_names
        Descriptors computed per item (the run's descriptor heads).
    device
        The training device: the CUDA renderer is used on a GPU.
    label_maps, map_block
        Label maps drawn per item (the run's ``label_maps``) on the CPU, and
        the pixels per side of one map cell.
    """

    def __init__(
        self,
        config: DatasetConfig,
        seed: int,
        split_seed: int,
        val_fraction: float,
        *,
        on_failure: str = "skip",
        threads: int = 0,
        descriptor_names: tuple[str, ...] = (),
        device: torch.device | None = None,
        label_maps: tuple[str, ...] = (),
        map_block: int = 8,
    ) -> None:
        if on_failure not in ("skip", "redraw"):
            raise ValueError(f"on_failure must be 'skip' or 'redraw', got {on_failure!r}")
        unknown = [d for d in descriptor_names if d not in DESCRIPTOR_NAMES]
        if unknown:
            raise ValueError(f"unknown descriptors {unknown}; choose from {DESCRIPTOR_NAMES}")
        self.config, self.seed, self.split_seed = config, int(seed), int(split_seed)
        self.val_fraction, self.on_failure = float(val_fraction), on_failure
        self.threads, self.descriptor_names = int(threads), tuple(descriptor_names)
        self.label_maps, self.map_block = tuple(label_maps), int(map_block)
        self.device = device or torch.device("cpu")
        self.cuda_renderer, self.cpu_renderer = make_renderer(config.imaging, self.device)
        self.on_cuda = self.cuda_renderer is not None

    # -- which items --------------------------------------------------------
    def is_validation(self, i: int) -> bool:
        """Whether item ``i`` belongs to the validation split (as in ``split_items``)."""
        return is_validation_item(self.split_seed, i, self.val_fraction)

    def candidates(self, start: int, count: int, validation: bool) -> list[int]:
        """The next ``count`` item indices from ``start`` on in one split."""
        out, i = [], start
        while len(out) < count:
            if self.is_validation(i) == validation:
                out.append(i)
            i += 1
        return out

    # -- building -----------------------------------------------------------
    def build(self, indices: list[int]) -> list[tuple[int, Any, Any]]:
        """``(i, θ, aggregate or None)`` per index, as ``generate`` builds item ``i``."""
        params, aggs, _ = build_items(
            self.config.params, self.seed, indices, self.on_failure, self.threads or None
        )
        return list(zip(indices, params, aggs, strict=True))

    def walk(self, cursor: int, validation: bool = False, chunk: int = 0) -> _Walker:
        """The items of one split from ``cursor`` on that build and render.

        ``chunk`` items at least are built (and, on the CPU, rendered) per call
        into the C++ core, so that its threads stay busy; the items do not
        depend on it.
        """
        return _Walker(self, cursor, validation, chunk)

    def batch(self, walker: _Walker, size: int) -> Batch:
        """The next ``size`` items of ``walker``."""
        tick = time.perf_counter()
        if self.on_cuda:
            kept, images = self._render_batch(walker, size)
        else:
            kept = walker.take(size)
            images = np.stack([image for *_, image in kept])
        space = self.config.params
        theta = {
            n: np.array([getattr(p, n) for _, p, _, _ in kept], dtype=float) for n in space.varied
        }
        params = space.normalize(theta).astype(np.float32).reshape(size, len(space.varied))
        descriptors = np.full((size, len(self.descriptor_names)), np.nan)
        if self.descriptor_names:
            for k, (_, _, agg, _) in enumerate(kept):
                d = agg.descriptors()
                descriptors[k] = [float(getattr(d, name)) for name in self.descriptor_names]
        items = np.array([i for i, *_ in kept], dtype=np.int64)
        maps = self._label_maps(kept) if self.label_maps else None
        seconds = time.perf_counter() - tick
        return Batch(items, images, params, descriptors, walker.cursor, seconds, maps)

    def _label_maps(self, kept: list[tuple]) -> np.ndarray:
        """The label maps of built items, seen as their images were rendered."""
        from heteroagg.learn.label_maps import draw_label_maps

        fixed = self.config.imaging.rotation != "random"
        return draw_label_maps(
            [agg for _, _, agg, _ in kept],
            [np.eye(3) if fixed else None for _ in kept],
            [self.render_seed(i) for i, *_ in kept],
            self.cpu_renderer,
            self.label_maps,
            self.map_block,
            threads=self.threads,
        )

    def render_seed(self, i: int) -> int:
        """The render seed of item ``i``, as ``generate`` draws its image."""
        return render_seed(self.seed, i)

    def _render_batch(self, walker: _Walker, size: int) -> tuple[list, Any]:
        """On the GPU: render a whole batch into one CUDA tensor."""
        out = torch.empty(
            (size, *self.config.imaging.shape), dtype=torch.float32, device=self.device
        )
        kept: list[tuple] = []
        refused = 0  # built items in a row that the renderer refused
        while len(kept) < size:
            chunk = walker.take(size - len(kept))
            ok, _ = render_into(
                self.cuda_renderer,
                self.cpu_renderer,
                self.config.imaging.rotation,
                [agg for _, _, agg, _ in chunk],
                [self.render_seed(i) for i, *_ in chunk],
                out[len(kept) : len(kept) + len(chunk)],
                self.threads,
            )
            kept += [c for c, good in zip(chunk, ok, strict=True) if good]
            refused = 0 if any(ok) else refused + len(chunk)
            if refused >= FRUITLESS_DRAWS:
                raise no_usable_items(refused)
        # what generate stores: clipped to [0, 1] and quantised to uint16 steps
        return kept, torch.round(out.clamp_(0.0, 1.0) * IMAGE_SCALE)

    def render(self, built: list[tuple]) -> list[tuple]:
        """On the CPU: render built items; those the renderer refuses are left out.

        Returns ``(i, θ, aggregate, image)`` with the image quantised to uint16
        as :func:`heteroagg.data.generate` stores it (noise baked in when the
        config says so).
        """
        if not built:
            return []
        seeds = [self.render_seed(i) for i, *_ in built]
        aggs = [agg for _, _, agg, _ in built]
        policy = self.config.imaging.rotation
        ok, images = render_into(None, self.cpu_renderer, policy, aggs, seeds, None, self.threads)
        seeds = [s for s, good in zip(seeds, ok, strict=True) if good]
        imaging = self.config.imaging
        if imaging.bake_noise:
            from heteroagg.data.generation import _noisy

            for k, s in enumerate(seeds):
                images[k] = _noisy(images[k], imaging, s)
        stored = quantise(images)  # as generate stores it, in place: large blocks
        kept = [b for b, good in zip(built, ok, strict=True) if good]
        return [(i, p, agg, image) for (i, p, agg, _), image in zip(kept, stored, strict=True)]


#: Draws in a row that give no item before on-the-fly training gives up on its config.
FRUITLESS_DRAWS = 2048


def no_usable_items(draws: int) -> ValueError:
    """The error of a config none of whose last ``draws`` draws gave an item."""
    return ValueError(
        f"none of {draws} parameter draws in a row could be built and rendered: the dataset "
        "config gives no usable items (a fractal law that no packing of spheres meets, or LUTs "
        "too short for its particles with extrapolate = false)"
    )


class _Walker:
    """Items of one split, in index order, from a cursor; the cursor is the
    first index after the last item taken."""

    def __init__(self, stream: ItemStream, cursor: int, validation: bool, chunk: int) -> None:
        self.stream, self.cursor, self.validation = stream, int(cursor), validation
        self.chunk = int(chunk)
        self._next = int(cursor)
        self._pending: deque = deque()

    def take(self, n: int) -> list[tuple]:
        """The next ``n`` items ``(i, θ, aggregate, image)`` that build (and, on
        the CPU, render; the image is None for the GPU)."""
        fruitless = 0  # draws in a row that gave no item
        while len(self._pending) < n:
            want = max(n - len(self._pending), self.chunk)
            # a little headroom for the few draws that cannot be built
            indices = self.stream.candidates(self._next, want + want // 8 + 1, self.validation)
            self._next = indices[-1] + 1
            built = [(i, p, a, None) for i, p, a in self.stream.build(indices) if a is not None]
            items = built if self.stream.on_cuda else self.stream.render(built)
            self._pending.extend(items)
            fruitless = 0 if items else fruitless + len(indices)
            if fruitless >= FRUITLESS_DRAWS:
                raise no_usable_items(fruitless)
        out = [self._pending.popleft() for _ in range(n)]
        self.cursor = out[-1][0] + 1
        return out


class FixedItems:
    """Generated items kept in memory: the calibration and validation sets.

    Calling it serves clean (B, 1, H, W) float32 images by global item index,
    as :class:`~heteroagg.learn.image_store.ImageStore` does for stored items;
    :meth:`targets` gives their targets.
    """

    def __init__(self, batches: list[Batch], device: torch.device) -> None:
        self.items = np.concatenate([b.items for b in batches])
        self.rows = ItemRows(self.items)
        self.cache = torch.cat([b.bits().to(device) for b in batches])
        self.params = np.concatenate([b.params for b in batches])
        self.descriptors = np.concatenate([b.descriptors for b in batches])
        self.maps = None
        if batches and batches[0].maps is not None:
            self.maps = np.concatenate([b.maps for b in batches])

    def __call__(self, items: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(self.rows(items))
        return _from_bits(self.cache[rows.to(self.cache.device)])[:, None]

    def targets(self, names: tuple[str, ...], stats: dict) -> FixedTargets:
        return FixedTargets(self, names, stats)

    def label_maps(self) -> Any:
        """The items' label maps as :class:`~heteroagg.learn.label_maps.LabelMaps`, or None."""
        from heteroagg.learn.label_maps import LabelMaps

        return None if self.maps is None else LabelMaps(self.maps, self.items)


class FixedTargets:
    """The targets of :class:`FixedItems` (the interface of ``Targets``)."""

    def __init__(self, fixed: FixedItems, names: tuple[str, ...], stats: dict) -> None:
        self.descriptor_names, self.stats = tuple(names), stats
        self.parameters = fixed.params
        self.values = target_values(fixed.params, fixed.descriptors, self.descriptor_names, stats)
        self.rows = fixed.rows

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    def __call__(self, items: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.values[self.rows(items)])


def first_batches(stream: ItemStream, n: int, validation: bool, advance: Any = None) -> list[Batch]:
    """The first ``n`` items of one split that build and render, in batches.

    ``advance(k)`` is called with the items of each batch (a progress bar).
    """
    walker = stream.walk(0, validation)
    batches, left = [], n
    while left > 0:
        batches.append(stream.batch(walker, min(FIXED_CHUNK, left)))
        left -= len(batches[-1].items)
        if advance is not None:
            advance(len(batches[-1].items))
    return batches


def descriptor_stats(batches: list[Batch], names: tuple[str, ...]) -> dict[str, list[float]]:
    """Mean and standard deviation of each descriptor head over the batches' items."""
    values = np.concatenate([b.descriptors for b in batches])
    stats = {}
    for k, d in enumerate(names):
        stats[d] = [float(np.nanmean(values[:, k])), float(np.nanstd(values[:, k]) or 1.0)]
    return stats


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class BatchProducer:
    """Training batches of an :class:`ItemStream` built on a background thread.

    Batch ``k`` (from 0) is the ``k``-th batch of ``batch_size`` training
    items after ``cursor``.  Up to ``prefetch`` batches wait in a bounded
    queue.  An exception on the producer thread is raised again by
    :meth:`get`; :meth:`close` (or leaving the ``with`` block) stops the thread.
    """

    def __init__(self, stream: ItemStream, cursor: int, batch_size: int, prefetch: int) -> None:
        self.stream, self.batch_size = stream, int(batch_size)
        self._queue: queue.Queue = queue.Queue(maxsize=max(int(prefetch), 1))
        self._stop = threading.Event()
        self._walker = stream.walk(cursor, chunk=max(PRODUCER_CHUNK, 2 * self.batch_size))
        self._thread = threading.Thread(target=self._run, name="heteroagg-batches", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._put(self.stream.batch(self._walker, self.batch_size))
        except BaseException as err:  # handed to the consumer
            self._put(_Failure(err))

    def get(self) -> Batch:
        """The next batch; raises what the producer raised."""
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the on-the-fly batch producer stopped") from None
                continue
            if isinstance(item, _Failure):
                self.close()
                raise item.error
            return item

    def close(self, timeout: float = 60.0) -> None:
        """Stop the producer thread (it finishes the batch it is building)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> BatchProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def images_per_second(
    data: DatasetConfig | None = None,
    batch_size: int = 64,
    *,
    threads: int = 0,
    device: str = "auto",
    seconds: float = 5.0,
    seed: int = 0,
) -> float:
    """Throughput of the on-the-fly pipeline alone (built and rendered images/s).

    Compare it with :func:`~heteroagg.learn.training.training_images_per_second`:
    the slower of the two bounds an on-the-fly run.
    """
    from heteroagg.data.config import default_config
    from heteroagg.learn.torch_device import torch_device

    stream = ItemStream(
        data or default_config(), seed, seed, 0.0, threads=threads, device=torch_device(device)
    )
    walker = stream.walk(0, chunk=max(PRODUCER_CHUNK, 2 * batch_size))
    stream.batch(walker, batch_size)  # warm-up: LUT tables, thread pools
    count, start = 0, time.perf_counter()
    while True:
        count += len(stream.batch(walker, batch_size).items)
        elapsed = time.perf_counter() - start
        if elapsed > seconds:
            return count / elapsed


def calibration_size(batch_size: int, bn_batches: int) -> int:
    """Training items kept in memory for the input statistics and the batch-norm batches."""
    return max(INPUT_STATS_ITEMS, min(bn_batches * batch_size, MAX_CALIBRATION_ITEMS))


__all__ = [
    "Batch",
    "BatchProducer",
    "FixedItems",
    "FixedTargets",
    "ItemStream",
    "calibration_size",
    "descriptor_stats",
    "first_batches",
    "images_per_second",
    "make_renderer",
    "render_into",
    "target_values",
]
