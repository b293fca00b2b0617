"""Refining particles' projected positions and radii against a noisy image.

:mod:`heteroagg.learn.image_observer` reads each particle's brightness from
its path through the beam, so it needs each particle's position and radius
to a fraction of a pixel.  :func:`refine_particles` starts from a rough
geometry (a detector's, or the true one with errors added) and improves it
by coordinate search: particle by particle, it tries shifts of the projected
centre and scalings of the radius, fits that particle's optical density per
nm to each candidate in closed form with the others held, and keeps the
candidate of least weighted squared residual.  The steps halve after every
sweep over the particles.

The search works in optical density, ``-ln(1 - I)``, where the particles
add, with the weights of each pixel's Poisson variance, and neglects the
probe blur (98.9 % of the default kernel lies in the centre pixel at 1 nm
pixels).  The candidates take the whole chord of their sphere; the exact
paths, with the shared points of sintered necks counted once, are
recomputed between sweeps.  Depths are kept as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heteroagg._numbers import is_count, is_real
from heteroagg.aggregate import Aggregate
from heteroagg.learn.image_observer import read_particle_densities
from heteroagg.stem.particle_paths import particle_paths

#: Fractions of the step tried along each axis, per particle and sweep.
_OFFSETS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])


@dataclass(frozen=True)
class RefinedParticles:
    """Particles after :func:`refine_particles`, in the image's frame.

    Attributes
    ----------
    centers
        (N, 3) nm, projected positions (x, y) refined; z as given.
    radii
        (N,) nm.
    """

    centers: np.ndarray
    radii: np.ndarray


def refine_particles(
    image: np.ndarray,
    centers: np.ndarray,
    radii: np.ndarray,
    *,
    pixel_size: float,
    center: tuple[float, float],
    electrons_per_pixel: float,
    sweeps: int = 6,
    position_step: float = 0.5,
    radius_step: float = 0.05,
) -> RefinedParticles:
    """Refine the particles' projected centres and radii to fit a noisy image.

    Parameters
    ----------
    image
        (H, W) noisy intensities (fractions of the beam).
    centers
        (N, 3) nm, the particles' centres in the image's frame: already
        turned by the image's rotation, projected along z.
    radii
        (N,) nm, the starting radii.
    pixel_size
        nm.
    center
        (x, y) nm at the image centre, as :func:`~heteroagg.stem.particle_paths`.
    electrons_per_pixel
        Dose times pixel area, > 0.
    sweeps
        Sweeps over all particles; the steps halve after each.
    position_step
        nm, the largest shift of a centre along x or y tried in the first sweep.
    radius_step
        The largest relative change of a radius tried in the first sweep (< 1).

    Returns
    -------
    RefinedParticles

    Raises
    ------
    ValueError
        For inconsistent shapes, non-positive radii, or bad steps.
    """
    xyz = np.array(centers, dtype=float)
    r = np.array(radii, dtype=float)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or r.shape != (xyz.shape[0],):
        raise ValueError("centers must be (N, 3) and radii (N,)")
    if not (np.all(np.isfinite(xyz)) and np.all(r > 0) and np.all(np.isfinite(r))):
        raise ValueError("centers must be finite and radii positive")
    if not is_count(sweeps) or sweeps < 1:
        raise ValueError(f"sweeps must be an integer >= 1, got {sweeps!r}")
    if not (is_real(position_step) and math.isfinite(position_step) and position_step >= 0
            and is_real(radius_step) and 0 <= radius_step < 1):  # fmt: skip
        raise ValueError("position_step must be finite and >= 0, and radius_step in [0, 1)")
    sweeps, position_step, radius_step = int(sweeps), float(position_step), float(radius_step)
    img = np.asarray(image, dtype=float)
    ny, nx = img.shape
    x0 = float(center[0]) - 0.5 * (nx - 1) * pixel_size
    y0 = float(center[1]) - 0.5 * (ny - 1) * pixel_size
    observed = -np.log1p(-np.clip(img, 0.0, 1.0 - 1e-9)).ravel()
    grid_x = np.add.outer(_OFFSETS, np.zeros(_OFFSETS.size)).ravel()
    grid_y = np.add.outer(np.zeros(_OFFSETS.size), _OFFSETS).ravel()
    shift_x = np.repeat(grid_x, _OFFSETS.size)
    shift_y = np.repeat(grid_y, _OFFSETS.size)
    scale = np.tile(_OFFSETS, grid_x.size)
    for sweep in range(sweeps):
        paths = particle_paths(
            Aggregate(xyz, r, np.zeros(r.size, dtype=int)),
            pixel_size=pixel_size,
            shape=(ny, nx),
            center=center,
        )
        reading = read_particle_densities(img, paths, electrons_per_pixel=electrons_per_pixel)
        density = np.where(reading.seen, reading.density, 0.0)
        columns = paths.matrix.tocsc()
        total = columns @ density
        mean = -np.expm1(-total)
        weight = (
            electrons_per_pixel * (1.0 - mean) ** 2 / np.maximum(mean, 1.0 / electrons_per_pixel)
        )
        step_xy = position_step * 0.5**sweep
        step_r = radius_step * 0.5**sweep
        for j in np.flatnonzero(reading.seen):
            lo_c, hi_c = columns.indptr[j], columns.indptr[j + 1]
            own_pixels, own_paths = columns.indices[lo_c:hi_c], columns.data[lo_c:hi_c]
            reach = r[j] * (1 + step_r) + math.sqrt(2) * step_xy
            c0 = max(0, math.ceil((xyz[j, 0] - reach - x0) / pixel_size))
            c1 = min(nx - 1, math.floor((xyz[j, 0] + reach - x0) / pixel_size))
            r0 = max(0, math.ceil((xyz[j, 1] - reach - y0) / pixel_size))
            r1 = min(ny - 1, math.floor((xyz[j, 1] + reach - y0) / pixel_size))
            if c0 > c1 or r0 > r1:
                continue
            rows, cols = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
            box = (rows * nx + cols).ravel()
            total[own_pixels] -= density[j] * own_paths  # the others alone
            target = observed[box] - total[box]
            w = weight[box]
            px = x0 + cols.ravel() * pixel_size
            py = y0 + rows.ravel() * pixel_size
            cx = xyz[j, 0] + step_xy * shift_x
            cy = xyz[j, 1] + step_xy * shift_y
            cr = r[j] * (1.0 + step_r * scale)
            rho2 = (px[None, :] - cx[:, None]) ** 2 + (py[None, :] - cy[:, None]) ** 2
            chord = 2.0 * np.sqrt(np.clip(cr[:, None] ** 2 - rho2, 0.0, None))
            norm = chord**2 @ w
            a = np.where(norm > 0, (chord * w) @ target / np.where(norm > 0, norm, 1.0), 0.0)
            cost = ((target[None, :] - a[:, None] * chord) ** 2) @ w
            best = int(np.argmin(cost))
            xyz[j, 0], xyz[j, 1], r[j] = cx[best], cy[best], cr[best]
            # later particles see this one where it now is
            total[box] += a[best] * chord[best]
            density[j] = a[best]
    return RefinedParticles(xyz, r)
