"""The beam's path through each particle of an aggregate, pixel by pixel.

The renderer (``docs/render.md``, step 2) measures at every pixel centre how
far the beam runs through each material; a point inside several spheres (a
sintered neck) counts once, for the lowest-indexed sphere.  :func:`particle_paths`
splits those maps by particle with the same rules and the same image frame,
so that summing its columns over the particles of one material gives the
renderer's ``thickness`` map of that material.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from heteroagg.stem.renderer import check_image_frame


@dataclass(frozen=True)
class ParticlePaths:
    """Per-particle path lengths in an image frame.

    Attributes
    ----------
    matrix
        ``scipy.sparse.csc_array`` of shape (H·W, N): the path (nm) of the beam
        through particle j at pixel p (row-major pixel index), counting a
        point shared with a lower-indexed particle for that one only.
    shape
        (H, W) pixels.
    pixel_size
        nm.
    center
        (x, y) nm, the point of the rotated aggregate at the image centre.
    """

    matrix: sparse.csc_array
    shape: tuple[int, int]
    pixel_size: float
    center: tuple[float, float]


def _image_frame(
    xy: np.ndarray, radii: np.ndarray, shape: tuple[int, int], pixel_size: float, center
) -> tuple[float, float, float, float]:
    """(cx, cy, x0, y0): the image centre and the first pixel centre, as the renderer sets them."""
    if center is None:
        cx = 0.5 * ((xy[:, 0] - radii).min() + (xy[:, 0] + radii).max())
        cy = 0.5 * ((xy[:, 1] - radii).min() + (xy[:, 1] + radii).max())
    else:
        cx, cy = (float(v) for v in center)
        if not (math.isfinite(cx) and math.isfinite(cy)):
            raise ValueError(f"center must be finite (nm), got {center!r}")
    ny, nx = shape
    return cx, cy, cx - 0.5 * (nx - 1) * pixel_size, cy - 0.5 * (ny - 1) * pixel_size


def _covered_length(lo: np.ndarray, hi: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """Length of [lo, hi] inside the union of the intervals ``others`` (pairs of arrays)."""
    if not others:
        return np.zeros_like(lo)
    starts = np.stack([np.clip(o[0], lo, hi) for o in others])
    ends = np.stack([np.clip(o[1], lo, hi) for o in others])
    order = np.argsort(starts, axis=0)
    starts = np.take_along_axis(starts, order, axis=0)
    ends = np.take_along_axis(ends, order, axis=0)
    covered = np.zeros_like(lo)
    reached = lo.copy()
    for s, e in zip(starts, ends, strict=True):
        begin = np.maximum(s, reached)
        covered += np.clip(e - begin, 0.0, None)
        reached = np.maximum(reached, e)
    return covered


def _projected(
    agg,
    pixel_size: float,
    shape: tuple[int, int] | int,
    rotation: np.ndarray | None,
    center: tuple[float, float] | None,
) -> tuple[float, tuple[int, int], np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """Checked frame, turned centres (N, 3), radii and (cx, cy, x0, y0) of the image."""
    pixel_size, shape = check_image_frame(pixel_size, shape)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
    if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
        raise ValueError("rotation must be a (3, 3) rotation matrix")
    if np.linalg.det(rot) < 0:  # the renderer takes none: no image shows a mirrored aggregate
        raise ValueError("rotation must be a proper rotation matrix (det +1), not a reflection")
    centres = np.asarray(agg.centers, dtype=float) @ rot.T
    radii = np.asarray(agg.radii, dtype=float)
    frame = _image_frame(centres[:, :2], radii, shape, pixel_size, center)
    return pixel_size, shape, centres, radii, frame


def pixel_positions(
    agg,
    *,
    pixel_size: float,
    shape: tuple[int, int] | int,
    rotation: np.ndarray | None = None,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """Where the particles' centres fall in the image, in pixels.

    Parameters
    ----------
    agg, pixel_size, shape, rotation, center
        As for :func:`particle_paths`.

    Returns
    -------
    numpy.ndarray
        (N, 2) fractional (row, column) of each centre: pixel (i, j) has its
        centre at (i, j), and a centre outside the field lies outside
        [-0.5, H - 0.5) by [-0.5, W - 0.5).

    Raises
    ------
    ValueError
        For a bad pixel size, shape, rotation or centre.
    """
    pixel_size, _, centres, _, (_, _, x0, y0) = _projected(agg, pixel_size, shape, rotation, center)
    return np.stack([(centres[:, 1] - y0) / pixel_size, (centres[:, 0] - x0) / pixel_size], axis=1)


def particle_paths(
    agg,
    *,
    pixel_size: float,
    shape: tuple[int, int] | int,
    rotation: np.ndarray | None = None,
    center: tuple[float, float] | None = None,
) -> ParticlePaths:
    """The beam's path through every particle at every pixel centre.

    Parameters
    ----------
    agg
        The :class:`~heteroagg.aggregate.Aggregate` (nm).
    pixel_size
        nm.
    shape
        (H, W) pixels, or one int for a square image.
    rotation
        (3, 3) rotation applied to the aggregate before projecting along z,
        as the renderer's ``rotation`` (a stored dataset item's
        ``rotations[i]``); the identity by default.
    center
        (x, y) nm of the rotated aggregate at the image centre; by default
        the centre of its projected bounding box, as the renderer chooses.

    Returns
    -------
    ParticlePaths

    Raises
    ------
    ValueError
        For a bad pixel size, shape, rotation or centre.

    Notes
    -----
    Summing the columns of one material's particles reproduces the
    renderer's ``thickness`` map of that material (tested against the C++
    renderer).  Particles outside the field have empty columns.
    """
    pixel_size, shape, centres, radii, (cx, cy, x0, y0) = _projected(
        agg, pixel_size, shape, rotation, center
    )
    ny, nx = shape
    # lower-indexed particles that share points with each particle (sintered necks)
    gap = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    touching = gap < radii[:, None] + radii[None, :]
    rows, cols, values = [], [], []
    for j, ((x, y, z), r) in enumerate(zip(centres, radii, strict=True)):
        c_lo = max(0, math.ceil((x - r - x0) / pixel_size))
        c_hi = min(nx - 1, math.floor((x + r - x0) / pixel_size))
        r_lo = max(0, math.ceil((y - r - y0) / pixel_size))
        r_hi = min(ny - 1, math.floor((y + r - y0) / pixel_size))
        if c_lo > c_hi or r_lo > r_hi:
            continue
        py, px = np.mgrid[r_lo : r_hi + 1, c_lo : c_hi + 1]
        dx, dy = x0 + px * pixel_size - x, y0 + py * pixel_size - y
        h2 = r * r - dx * dx - dy * dy
        inside = h2 > 0
        py, px, dx, dy = py[inside], px[inside], dx[inside], dy[inside]
        h = np.sqrt(h2[inside])
        lo, hi = z - h, z + h
        others = []
        for k in np.flatnonzero(touching[j, :j]):
            xk, yk, zk = centres[k]
            hk2 = (
                radii[k] ** 2 - (x0 + px * pixel_size - xk) ** 2 - (y0 + py * pixel_size - yk) ** 2
            )
            hk = np.sqrt(np.clip(hk2, 0.0, None))
            # a ray missing sphere k gets an empty interval
            others.append((np.where(hk2 > 0, zk - hk, zk), np.where(hk2 > 0, zk + hk, zk)))
        length = 2.0 * h - _covered_length(lo, hi, others)
        keep = length > 0
        rows.append(py[keep] * nx + px[keep])
        cols.append(np.full(int(keep.sum()), j))
        values.append(length[keep])
    n = radii.size
    if rows:
        rows_a, cols_a, values_a = (np.concatenate(v) for v in (rows, cols, values))
    else:
        rows_a, cols_a, values_a = np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    matrix = sparse.csc_array((values_a, (rows_a, cols_a)), shape=(ny * nx, n))
    return ParticlePaths(matrix, (ny, nx), float(pixel_size), (float(cx), float(cy)))
