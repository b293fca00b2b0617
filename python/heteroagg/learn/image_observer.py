"""Reading each particle's brightness off the image itself, given the geometry.

The brightness observer (:mod:`heteroagg.learn.brightness_observer`) is
handed every particle's brightness exactly.  In an image, particles overlap
in projection and the counts are noisy, so how well the brightness of a
particle can be read depends on how much of it shows and on the dose.  The
observer here is told the aggregate's geometry (every particle's position
and radius, in the projection the image was taken in), but not the
materials, and reads the brightness from the noisy image:

1. :func:`~heteroagg.stem.particle_paths` gives the beam's path l_j(p)
   through particle j at pixel p, exactly as the renderer measures it.
2. The image is modelled as the renderer forms it, with one unknown optical
   density per nm of path a_j per particle:
   ``I(p) = K ⊛ (1 - exp(-Σ_j a_j l_j(p)))``, K the probe kernel.  The a_j
   are fitted by Gauss-Newton steps of weighted least squares, with the
   Poisson variance I/n_e of a pixel that received n_e electrons, and their
   standard errors come from the inverse Fisher matrix.
3. The renderer gives a particle of material m and diameter d an intensity
   b, log-normal with the LUT's mean and orientation spread at d, and scales
   its optical density to match, so a ≈ -ln(1 - b)/d.  The likelihood of the
   fitted â under each material integrates the measurement error over that
   law (:func:`brightness_log_likelihood`).
4. :func:`~heteroagg.learn.brightness_observer.observe_particles` turns the
   likelihoods and the exact radii into posterior means of θ.

The optical density per nm of a material varies with thickness by a few per
cent (docs/render.md), which step 3 neglects, so the observer is slightly
worse than the best one given the geometry; its R² is what reading the
brightness off the image achieves, not a bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from heteroagg._numbers import is_count, is_real
from heteroagg.learn.brightness_observer import (
    ObserverGrid,
    _default_luts,
    _LogBrightnessLaw,
    observe_particles,
)
from heteroagg.stem.particle_paths import ParticlePaths

#: Nodes per side of the grids of :func:`brightness_log_likelihood`.
_LIKELIHOOD_NODES = 401


@dataclass(frozen=True)
class ParticleReading:
    """Each particle's optical density per nm of path, fitted to an image.

    Attributes
    ----------
    density
        (N,) fitted optical density per nm (1/nm); 0 for unseen particles.
    std
        (N,) its standard error; ``inf`` for unseen particles.
    seen
        (N,) particles the beam crosses at some pixel of the field.
    """

    density: np.ndarray
    std: np.ndarray
    seen: np.ndarray


def blur_matrix(shape: tuple[int, int], kernel: np.ndarray | None) -> sparse.csr_array:
    """The probe blur as a sparse (H·W, H·W) matrix, with the renderer's replicated edges."""
    ny, nx = shape
    if kernel is None:
        return sparse.identity(ny * nx, format="csr")
    kernel = np.asarray(kernel, dtype=float)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be a 2-D array of odd sides, got shape {kernel.shape}")
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    rows_i, cols_i = np.mgrid[0:ny, 0:nx]
    out_index = (rows_i * nx + cols_i).ravel()
    rows, cols, values = [], [], []
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[1]):
            src_r = np.clip(rows_i + a - ry, 0, ny - 1)
            src_c = np.clip(cols_i + b - rx, 0, nx - 1)
            rows.append(out_index)
            cols.append((src_r * nx + src_c).ravel())
            values.append(np.full(ny * nx, kernel[a, b]))
    return sparse.csr_array(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(ny * nx, ny * nx),
    )


def read_particle_densities(
    image: np.ndarray,
    paths: ParticlePaths,
    *,
    electrons_per_pixel: float,
    kernel: np.ndarray | sparse.sparray | None = None,
    iterations: int = 4,
) -> ParticleReading:
    """Fit each particle's optical density per nm to a noisy HAADF image.

    Parameters
    ----------
    image
        (H, W) intensities in fractions of the beam, with shot noise.
    paths
        The particles' paths in the image's frame, :func:`~heteroagg.stem.particle_paths`.
    electrons_per_pixel
        The dose times the pixel area (e/pixel), > 0: it sets the Poisson
        variance of each pixel.
    kernel
        The renderer's probe kernel (``HaadfRenderer.kernel``), or its
        :func:`blur_matrix` (faster for many images); None for no blur.
    iterations
        Gauss-Newton steps (the model is nearly linear: a few suffice).

    Returns
    -------
    ParticleReading

    Raises
    ------
    ValueError
        For an image of another shape than the paths, non-finite pixels, or
        a non-positive dose.
    """
    img = np.asarray(image, dtype=float)
    if img.shape != paths.shape:
        raise ValueError(f"image has shape {img.shape}, the paths {paths.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("the image has non-finite pixels")
    if not (is_real(electrons_per_pixel) and math.isfinite(electrons_per_pixel)
            and electrons_per_pixel > 0):  # fmt: skip
        raise ValueError(f"electrons_per_pixel must be > 0, got {electrons_per_pixel!r}")
    if not is_count(iterations) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    electrons_per_pixel, iterations = float(electrons_per_pixel), int(iterations)
    blur = kernel if sparse.issparse(kernel) else blur_matrix(paths.shape, kernel)
    path = sparse.csc_array(paths.matrix)
    n = path.shape[1]
    seen = np.asarray(path.sum(axis=0)).ravel() > 0
    density = np.zeros(n)
    std = np.full(n, np.inf)
    if not seen.any():
        return ParticleReading(density, std, seen)
    path = path[:, seen]
    # only pixels that some particle reaches through the blur carry information
    rows = np.flatnonzero(blur @ (np.asarray(path.sum(axis=1)).ravel() > 0))
    blur_rows = sparse.csr_array(blur)[rows]
    y = img.ravel()[rows]
    a = np.full(path.shape[1], 1e-3)
    floor = 1.0 / electrons_per_pixel
    for _ in range(iterations):
        transmitted = np.exp(-(path @ a))
        mean = blur_rows @ (1.0 - transmitted)
        jac = blur_rows @ sparse.csc_array(path.multiply(transmitted[:, None]))
        weight = electrons_per_pixel / np.maximum(mean, floor)
        jac_dense = jac.toarray()
        fisher = jac_dense.T @ (weight[:, None] * jac_dense)
        fisher[np.diag_indices_from(fisher)] += 1e-12 * max(np.trace(fisher), 1e-300) / len(a)
        a = a + np.linalg.solve(fisher, jac_dense.T @ (weight * (y - mean)))
    density[seen] = a
    std[seen] = np.sqrt(np.clip(np.diag(np.linalg.inv(fisher)), 0.0, None))
    return ParticleReading(density, std, seen)


def brightness_log_likelihood(
    reading: ParticleReading,
    radius_nm: np.ndarray,
    *,
    luts: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Log-likelihood of each fitted density under TiO2 and under WO3.

    The fit â is normal around the true a with the reading's standard error;
    a = -ln(1 - b)/d with the intensity b log-normal as the renderer draws
    it at the particle's diameter d.  The integral over ln b is taken by the
    trapezoid rule on the union of two grids, one spanning the law and one
    the measurement, so that it is resolved whichever is the narrower.

    Parameters
    ----------
    reading
        :func:`read_particle_densities`' result.
    radius_nm
        (N,) the particles' radii.
    luts
        ``{"TiO2": lut, "WO3": lut}``; the shipped LUTs by default.

    Returns
    -------
    numpy.ndarray
        (N, 2): columns TiO2 and WO3; 0 for unseen particles.
    """
    radius = np.asarray(radius_nm, dtype=float)
    if radius.shape != reading.density.shape or np.any(~(radius > 0)):
        raise ValueError("radius_nm must hold one positive radius per particle of the reading")
    law = _LogBrightnessLaw(_default_luts() if luts is None else luts)
    diameter = 2.0 * radius
    out = np.zeros((radius.size, 2))
    seen = np.flatnonzero(reading.seen)
    t = np.linspace(-8.0, 8.0, _LIKELIHOOD_NODES)
    for material in (0, 1):
        mu, var = law(material, diameter[seen])
        for row, j in enumerate(seen):
            a_hat, s, d = reading.density[j], reading.std[j], diameter[j]
            sd = math.sqrt(var[row])
            u_law = mu[row] + sd * t
            # where the measurement window lies in ln b (densities > 0 only)
            a_window = a_hat + s * t
            a_window = a_window[a_window > 0]
            u_meas = np.log(-np.expm1(-a_window * d))
            u = np.unique(np.concatenate([u_law, u_meas]))
            u = u[u < 0]  # b < 1
            a = -np.log1p(-np.exp(u)) / d
            log_f = (
                -0.5 * ((u - mu[row]) / sd) ** 2
                - math.log(sd * math.sqrt(2 * math.pi))
                - 0.5 * ((a_hat - a) / s) ** 2
                - math.log(s * math.sqrt(2 * math.pi))
            )
            top = log_f.max()
            f = np.exp(log_f - top)
            area = float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(u)))
            out[j, material] = top + math.log(max(area, 1e-300))
    return out


def observe_image(
    grid: ObserverGrid,
    image: np.ndarray,
    agg: Any,
    paths: ParticlePaths,
    *,
    electrons_per_pixel: float,
    kernel: np.ndarray | sparse.sparray | None = None,
    luts: Mapping[str, Any] | None = None,
) -> dict[str, tuple[float, float]]:
    """Posterior means of ``frac_w`` and the median radii from one noisy image and its geometry.

    Parameters
    ----------
    grid
        :meth:`~heteroagg.learn.brightness_observer.ObserverGrid.from_space`.
    image
        (H, W) noisy intensities.
    agg
        The imaged :class:`~heteroagg.aggregate.Aggregate`: only its radii are used
        here, with ``paths`` (its projection), never its materials.
    paths
        :func:`~heteroagg.stem.particle_paths` of ``agg`` in the image's frame.
    electrons_per_pixel, kernel
        As :func:`read_particle_densities`.
    luts
        As :func:`brightness_log_likelihood`.

    Returns
    -------
    dict
        As :func:`~heteroagg.learn.brightness_observer.observe_particles`.
        Particles outside the field count in N but are not seen.
    """
    reading = read_particle_densities(
        image, paths, electrons_per_pixel=electrons_per_pixel, kernel=kernel
    )
    radii = np.asarray(agg.radii, dtype=float)
    if not reading.seen.any():
        raise ValueError("no particle of the aggregate lies in the image")
    return observe_particles(
        grid,
        np.log(radii),
        brightness_log_likelihood=brightness_log_likelihood(reading, radii, luts=luts),
        hidden=~reading.seen,
    )
