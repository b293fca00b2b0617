"""The fast LUT renderer against full multislice of the same atoms.

:func:`compare_render_with_multislice` fills an aggregate with atoms
(:func:`heteroagg.to_atoms`), simulates its HAADF image by multislice, and
renders it with :func:`heteroagg.stem.render_haadf` on the same pixel grid,
at the same orientation and with the same optics.  The renderer knows only
the LUTs, so the agreement measures everything the LUT model leaves out:
each particle's actual orientation, its faceted surface, and probe
channelling across particle edges.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroagg.aggregate import Aggregate
from heteroagg.stem.lut import HaadfLUT


@dataclass(frozen=True)
class RenderComparison:
    """Images of both methods on one grid (binned) and how well they agree."""

    rendered: np.ndarray
    multislice: np.ndarray
    ncc: float  # normalised cross-correlation
    intensity_ratio: float  # integrated intensity, rendered / multislice
    relative_rms: float  # RMS difference over the RMS of the multislice image
    render_seconds: float
    multislice_seconds: float


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Means over factor x factor blocks (a ragged edge is dropped)."""
    ny, nx = (n // factor * factor for n in image.shape)
    return image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    return float(np.sum(da * db) / math.sqrt(np.sum(da * da) * np.sum(db * db)))


def compare_render_with_multislice(
    agg: Aggregate,
    luts: dict[str, HaadfLUT],
    *,
    scan_sampling: float = 0.7,
    binning: int = 3,
    slice_thickness: float = 2.0,
    frozen_phonons: int = 1,
    vacuum: float = 6.0,
    seed: int = 0,
    threads: int = 0,
) -> RenderComparison:
    """Render ``agg`` with the LUTs and simulate it by multislice.

    Parameters
    ----------
    agg
        The aggregate (nm), imaged along z without rotation.
    luts
        ``{"TiO2": ..., "WO3": ...}``; their recorded optics, detector and
        sampling are used for the multislice run too.
    scan_sampling
        Probe step (Å), which is also the rendered pixel size.
    binning
        Both images are averaged over ``binning x binning`` blocks before
        they are compared: the LUTs hold intensities averaged over probe
        positions, so atomic-column contrast must be averaged out first.
    slice_thickness
        Multislice slice thickness (Å).
    frozen_phonons
        Frozen-phonon configurations of the multislice run.
    vacuum
        Empty margin (Å) around the atoms.
    seed
        Seed of the atoms' orientations and phonons.
    threads
        Multislice worker threads (0: all cores).
    """
    from heteroagg.atoms import to_atoms
    from heteroagg.stem.detectors import AnnularDetector, SensitivityDetector
    from heteroagg.stem.multislice import haadf_multislice
    from heteroagg.stem.renderer import lut_probe, render_haadf

    inputs = luts["TiO2"].inputs
    spec = inputs["detector"]
    detector = (
        AnnularDetector(spec["inner_mrad"], spec["outer_mrad"])
        if spec["kind"] == "annular"
        else SensitivityDetector(spec["angles_mrad"], spec["weights"])
    )
    probe = lut_probe(luts["TiO2"])
    atoms = to_atoms(agg, seed, vacuum=vacuum)
    cell = np.diag(atoms.cell).copy()
    cell[:2] = (
        np.ceil(cell[:2] / scan_sampling - 1e-9) * scan_sampling
    )  # whole steps: square pixels
    atoms.set_cell(cell)
    start = time.perf_counter()
    simulated = haadf_multislice(
        atoms,
        energy=probe.energy,
        semiangle=probe.semiangle,
        detector=detector,
        sampling=inputs["sampling_A"],
        slice_thickness=slice_thickness,
        scan_sampling=scan_sampling,
        window="auto",
        frozen_phonons=frozen_phonons,
        seed=seed,
        defocus=probe.defocus,
        cs=probe.cs,
        aberrations=probe.aberrations,
        threads=threads,
        device="cpu",
    )
    multislice_seconds = time.perf_counter() - start
    # the scan's pixel (0, 0) is the atoms' origin: (vacuum - lower corner) in the aggregate frame
    lower = (agg.centers - agg.radii[:, None]).min(axis=0) * 10.0
    ny, nx = simulated.shape
    step = scan_sampling
    origin = (lower[:2] - vacuum) / 10.0  # nm
    center = (origin[0] + (nx - 1) / 2 * step / 10.0, origin[1] + (ny - 1) / 2 * step / 10.0)

    def render() -> np.ndarray:
        return render_haadf(
            agg, luts=luts, pixel_size=step / 10.0, shape=(ny, nx), rotation=np.eye(3),
            center=center, probe=probe, orientation_spread=False,
        )  # fmt: skip

    render()  # the first call bins the probe kernel, which later calls take from a cache
    start = time.perf_counter()
    rendered = render()
    render_seconds = time.perf_counter() - start
    r = _bin(rendered.astype(float), binning)
    s = _bin(np.asarray(simulated, float), binning)
    return RenderComparison(
        rendered=r,
        multislice=s,
        ncc=_ncc(r, s),
        intensity_ratio=float(r.sum() / s.sum()),
        relative_rms=float(np.sqrt(np.mean((r - s) ** 2) / np.mean(s**2))),
        render_seconds=render_seconds,
        multislice_seconds=multislice_seconds,
    )


def plot_render_comparison(
    result: RenderComparison, path: Any, title: str = "", low_pass: float | None = None
) -> Any:
    """Save both images and their difference; with ``low_pass`` (pixels), a
    second row shows them after the same Gaussian low-pass."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("", result.rendered, result.multislice)]
    if low_pass:
        from scipy.ndimage import gaussian_filter

        rows.append((
            f", low-pass {low_pass:g} px",
            gaussian_filter(result.rendered, low_pass),
            gaussian_filter(result.multislice, low_pass),
        ))  # fmt: skip
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.4 * len(rows)), layout="constrained",
                             squeeze=False)  # fmt: skip
    for row, (suffix, rendered, multislice) in zip(axes, rows, strict=True):
        top = float(max(rendered.max(), multislice.max()))
        panels = ((row[0], multislice, "multislice"), (row[1], rendered, "LUT renderer"))
        for ax, image, name in panels:
            shown = ax.imshow(image, cmap="gray", vmin=0, vmax=top)
            ax.set_title(name + suffix, fontsize=10)
        fig.colorbar(shown, ax=row[:2], shrink=0.8, label="fraction of beam")
        diff = rendered - multislice
        lim = float(np.abs(diff).max())
        shown = row[2].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
        agreement = _ncc(rendered, multislice)
        row[2].set_title(f"renderer - multislice (NCC {agreement:.3f})", fontsize=10)
        fig.colorbar(shown, ax=row[2], shrink=0.8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{title} (integrated intensity ratio {result.intensity_ratio:.3f})".strip())
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
