"""Label maps of training items, the dense auxiliary targets of a run.

A network that only regresses θ from a pooled feature vector must learn by
itself to tell particles and materials apart.  Label maps tell it where they
are: per block of pixels, how far the beam runs through each material and
how many particle centres of each material project into it.  They are drawn
from each item's aggregate with the renderer's own projection, so they line
up with its image exactly (the dataset renderers draw no scan jitter, which
would shift the image's lines but not the maps).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heteroagg._progress import progress_bar
from heteroagg.learn.config import LABEL_MAPS
from heteroagg.learn.item_split import ItemRows


def item_label_maps(
    agg: Any,
    rotation: np.ndarray | None,
    renderer: Any,
    names: tuple[str, ...],
    block: int,
    seed: int = 0,
) -> np.ndarray:
    """The label maps of one aggregate as the renderer projects it.

    Parameters
    ----------
    agg
        The :class:`~heteroagg.aggregate.Aggregate`.
    rotation
        (3, 3) rotation of the item, or None for the random rotation that the
        renderer draws from ``seed`` (as for a ``"random"`` rotation policy).
    renderer
        A :class:`~heteroagg.stem.HaadfRenderer` with the dataset's imaging
        settings (only its geometry matters).
    names
        Maps from :data:`~heteroagg.learn.config.LABEL_MAPS`, in the order wanted.
    block
        Side of the pixel blocks one map cell covers (the image sides must
        be multiples of it).
    seed
        The item's render seed (it sets the rotation when ``rotation`` is None).

    Returns
    -------
    numpy.ndarray
        (len(names), H // block, W // block) float32: path maps hold the mean
        path (nm) through the material over the block, centre maps the number
        of that material's particle centres that project into the block.
    """
    unknown = [n for n in names if n not in LABEL_MAPS]
    if unknown:
        raise ValueError(f"unknown label maps {unknown}; choose from {LABEL_MAPS}")
    rendering = renderer(agg, seed, rotation=rotation, labels=True)
    ny, nx = rendering.thickness.shape[1:]
    if ny % block or nx % block:
        raise ValueError(f"image shape {(ny, nx)} is not a multiple of the block {block}")
    h, w = ny // block, nx // block
    out = np.zeros((len(names), h, w), dtype=np.float32)
    projected = np.asarray(agg.centers) @ rendering.rotation.T
    cx, cy = rendering.center
    # pixel (0, 0) is centred at (cx - (nx - 1) / 2 px, cy - (ny - 1) / 2 px)
    col = np.floor((projected[:, 0] - cx) / rendering.pixel_size + nx / 2).astype(np.int64)
    row = np.floor((projected[:, 1] - cy) / rendering.pixel_size + ny / 2).astype(np.int64)
    inside = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    materials = np.asarray(agg.materials)
    for k, name in enumerate(names):
        kind, material = name.split("_")
        code = 0 if material == "tio2" else 1
        if kind == "path":
            out[k] = rendering.thickness[code].reshape(h, block, w, block).mean(axis=(1, 3))
        else:
            chosen = inside & (materials == code)
            np.add.at(out[k], (row[chosen] // block, col[chosen] // block), 1.0)
    return out


def draw_label_maps(
    aggs: list,
    rotations: list[np.ndarray | None],
    seeds: list[int],
    renderer: Any,
    names: tuple[str, ...],
    block: int,
    *,
    threads: int = 0,
    out: np.ndarray | None = None,
    advance: Any = None,
) -> np.ndarray:
    """:func:`item_label_maps` of many items on ``threads`` threads (0: every core).

    The maps go into ``out`` (B, C, h, w) when given (any float dtype), else
    into a new float32 array; ``advance()`` is called once per item drawn.
    """
    if out is None:
        ny, nx = renderer.shape
        out = np.zeros((len(aggs), len(names), ny // block, nx // block), dtype=np.float32)

    def draw(k: int) -> None:
        out[k] = item_label_maps(aggs[k], rotations[k], renderer, names, block, seeds[k])

    from heteroagg.stem import FieldOfViewWarning

    with warnings.catch_warnings(), ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        warnings.simplefilter("ignore", FieldOfViewWarning)
        for _ in pool.map(draw, range(len(aggs))):  # the renderer runs without the GIL
            if advance is not None:
                advance()
    return out


class LabelMaps:
    """Label maps of chosen items, served by item index.

    Parameters
    ----------
    maps
        (N, C, h, w) maps of ``items`` in order (a memory map is read lazily).
    items
        The items' indices.
    """

    def __init__(self, maps: np.ndarray, items: np.ndarray) -> None:
        self.maps = maps
        self.rows = ItemRows(items)

    def __call__(self, items: np.ndarray) -> torch.Tensor:
        """(B, C, h, w) float32 maps of ``items``."""
        rows = self.rows(items)
        return torch.from_numpy(np.asarray(self.maps[rows], dtype=np.float32))

    def scale(self, items: np.ndarray, side: int = 0) -> torch.Tensor:
        """(1, C, 1, 1) standard deviation of each map over (at most 4096 of) ``items``.

        Over the centred ``side`` x ``side`` values of each map, the part the
        network's crop sees (0: the whole map).  At least 1e-3, so that an
        empty map does not divide by zero.
        """
        from heteroagg.learn.networks import centre_crop

        chosen = centre_crop(self(np.asarray(items)[:4096]), side)
        return chosen.std(dim=(0, 2, 3)).clamp(min=1e-3).view(1, -1, 1, 1)


def stored_label_maps(
    dataset: Any,
    items: np.ndarray,
    names: tuple[str, ...],
    block: int,
    *,
    cache: str | Path | None = None,
    threads: int = 0,
    show_progress: bool = False,
) -> LabelMaps:
    """The label maps of a stored dataset's items, from their aggregates and rotations.

    Parameters
    ----------
    dataset
        The :class:`~heteroagg.data.SyntheticDataset`.
    items
        The items (failed items are not allowed).
    names
        Maps from :data:`~heteroagg.learn.config.LABEL_MAPS`.
    block
        Pixels per map cell along each side.
    cache
        A ``.npy`` file (float16) that keeps the maps: when it holds maps of
        this shape they are read from it (as a memory map, so large datasets
        need not fit in memory), else they are drawn and written to it
        atomically.  None: drawn and kept in memory.
    threads
        Threads that draw the maps (0: every core).
    show_progress
        Show a progress bar while the maps are drawn.
    """
    from heteroagg.stem import HaadfRenderer

    items = np.asarray(items)
    imaging = dataset.index["config"]["imaging"]
    ny, nx = imaging["shape"]
    shape = (len(items), len(names), ny // block, nx // block)
    if cache is not None and Path(cache).exists():
        maps = np.load(cache, mmap_mode="r")
        if maps.shape == shape and maps.dtype == np.float16:
            return LabelMaps(maps, items)
    renderer = HaadfRenderer(pixel_size=imaging["pixel_size"], shape=(ny, nx), extrapolate=True)
    rotations = np.asarray(dataset.rotations[:])
    part = None if cache is None else Path(cache).with_suffix(".part.npy")
    if part is None:
        maps = np.zeros(shape, dtype=np.float16)
    else:
        maps = np.lib.format.open_memmap(part, mode="w+", dtype=np.float16, shape=shape)
    # aggregates are read in chunks: h5py reads serialise, the drawing runs in parallel
    chunk = 1024
    with progress_bar(show_progress, len(items), "drawing label maps") as advance:
        for start in range(0, len(items), chunk):
            block_items = items[start : start + chunk]
            aggs = [dataset.aggregate(int(i)) for i in block_items]
            draw_label_maps(
                aggs,
                list(rotations[block_items]),
                [0] * len(aggs),
                renderer,
                names,
                block,
                threads=threads,
                out=maps[start : start + len(aggs)],
                advance=advance,
            )
    if part is not None:
        maps.flush()
        del maps
        os.replace(part, cache)
        maps = np.load(cache, mmap_mode="r")
    return LabelMaps(maps, items)
