"""Stored images of a dataset's items, served as training batches."""

from __future__ import annotations

import multiprocessing

import numpy as np
import torch

from heteroagg._progress import progress_bar
from heteroagg._workers import results_as_completed, stop_pool, worker_pool
from heteroagg.data.dataset import SyntheticDataset, items_by_shard
from heteroagg.learn.item_split import ItemRows
from heteroagg.learn.networks import centre_crop, cropped_shape


def _read_shard_of(dataset: SyntheticDataset, k: int) -> tuple[int, np.ndarray]:
    """``k`` and shard ``k``'s images, in a worker process (the dataset arrives
    pickled, unopened)."""
    return k, dataset.shard_images(k)


class ImageStore:
    """Stored uint16 images of chosen items: in RAM, on the device, or read from the shards.

    Parameters
    ----------
    dataset
        The dataset the items belong to.
    items
        The items this store serves.
    where
        ``"memory"`` caches the images in RAM, ``"device"`` in the training
        device's memory (batches are then gathered there, with no host
        traffic), ``"stream"`` reads every batch from the shards.
    device
        The training device (used by ``where="device"``).
    workers
        Processes that decompress shards while the cache fills (0 or 1: the
        calling process does it).
    show_progress
        Show a progress bar while the cache fills.
    crop
        Keep and serve only the centred ``crop`` x ``crop`` pixels that the
        network reads (:func:`~heteroagg.learn.networks.centre_crop`; 0: the
        whole field).  The default network's 128² crop of 256² images takes a
        quarter of the memory, and its batches a quarter of the noise and
        widening work.
    """

    def __init__(
        self,
        dataset: SyntheticDataset,
        items: np.ndarray,
        where: str,
        device: torch.device,
        workers: int,
        show_progress: bool,
        crop: int = 0,
    ) -> None:
        self.dataset, self.where, self.device = dataset, where, device
        self.crop = crop
        self.scale = float(dataset.index["image_scale"])
        items = np.asarray(items, dtype=np.int64)
        self.rows = ItemRows(items)
        if where == "stream":
            return
        shape = cropped_shape(dataset.index["config"]["imaging"]["shape"], crop)
        cache = np.empty((len(items), *shape), dtype=np.uint16)
        size = dataset.shard_size
        positions = dict(items_by_shard(items, size))
        shards = list(positions)

        def place(s: int, block: np.ndarray) -> None:
            where = positions[s]
            cache[where] = centre_crop(block[items[where] - s * size], crop)

        with progress_bar(show_progress, len(shards), "loading images") as advance:
            forkable = "fork" in multiprocessing.get_all_start_methods()
            if workers > 1 and len(shards) > 1 and forkable:
                # fork: the readers touch only h5py, and unguarded user scripts stay safe.
                # They ignore Ctrl-C and end with this process; reading has no effects,
                # so an interrupted load ends them at once.
                readers = min(workers, len(shards))
                pool = worker_pool(readers, multiprocessing.get_context("fork"))
                try:
                    blocks = results_as_completed(
                        pool, _read_shard_of, [(dataset, s) for s in shards], 2 * readers
                    )
                    for s, block in blocks:
                        place(s, block)
                        advance()
                except BaseException:
                    stop_pool(pool, finish=False)
                    raise
                pool.shutdown()
            else:
                for s in shards:
                    place(s, dataset.shard_images(s))
                    advance()
        # torch has few uint16 kernels: the bits are kept as int16 and widened per batch.
        self.cache = torch.from_numpy(cache.view(np.int16))
        if where == "device":
            self.cache = self.cache.to(device)

    def __call__(self, items: np.ndarray) -> torch.Tensor:
        """Clean images (B, 1, H, W) float32 in fractions of the beam.

        They lie on the training device for ``where="device"``, else on the CPU.
        """
        if self.where == "stream":
            stack = np.stack(
                [centre_crop(self.dataset.stored_image(int(i)), self.crop) for i in items]
            )
            raw = torch.from_numpy(stack.view(np.int16))
        else:
            rows = torch.from_numpy(self.rows(items))
            raw = self.cache[rows.to(self.cache.device)]
        raw = raw.to(torch.int32) & 0xFFFF
        return (raw.to(torch.float32) / self.scale)[:, None]
