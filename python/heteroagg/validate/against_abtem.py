"""Side-by-side HAADF-STEM simulations with heteroagg and abTEM.

Both codes get identical settings: the same grid points, slices, scan,
Lobato parametrisation with infinite projection, a soft-edged probe aperture
and an annular detector.  abTEM is an optional dependency (the ``validate``
and ``dev`` extras).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg.stem.multislice import haadf_multislice, simulation_grid


@dataclass(frozen=True)
class Case:
    """One comparison: atoms and the settings both codes use."""

    name: str
    build_atoms: Callable[[], Any]
    energy: float = 200e3
    semiangle: float = 20.0
    detector: tuple[float, float] = (50.0, 150.0)
    sampling: float = 0.05
    slice_thickness: float = 2.0
    scan_sampling: float = 1.0
    # restrict the scan to the first rows x cols positions (None: all)
    scan_limit: tuple[int, int] | None = None
    description: str = ""


@dataclass
class Comparison:
    """Result of running one case in both codes."""

    case: str
    heteroagg_image: np.ndarray
    abtem_image: np.ndarray
    heteroagg_seconds: float
    abtem_seconds: float
    window: Any = None
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = image_agreement(self.heteroagg_image, self.abtem_image)
        self.metrics["speed_ratio"] = self.abtem_seconds / self.heteroagg_seconds


def image_agreement(image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Normalised cross-correlation and relative differences of two images."""
    a = np.asarray(image, float).ravel()
    b = np.asarray(reference, float).ravel()
    da, db = a - a.mean(), b - b.mean()
    ncc = float(np.sum(da * db) / math.sqrt(np.sum(da * da) * np.sum(db * db)))
    relative = np.abs(a - b) / np.abs(b)
    return {
        "ncc": ncc,
        "max_relative_difference": float(relative.max()),
        "mean_relative_difference": float(relative.mean()),
        "mean_intensity": float(b.mean()),
    }


def rutile_cell() -> Any:
    """Rutile TiO2 (P4_2/mnm; Baur 1971: a = 4.5937 Å, c = 2.9587 Å, O x = 0.3048)."""
    from ase.spacegroup import crystal

    return crystal(
        ["Ti", "O"],
        basis=[(0, 0, 0), (0.3048, 0.3048, 0)],
        spacegroup=136,
        cellpar=[4.5937, 4.5937, 2.9587, 90, 90, 90],
    )


def rutile_slab(repeats: tuple[int, int, int] = (2, 2, 3)) -> Any:
    """A periodic rutile slab viewed along [001]."""
    return rutile_cell() * repeats


def rutile_sphere(radius: float = 20.0, cell: float = 59.0) -> Any:
    """A rutile sphere (radius in Å) centred in a cubic cell of vacuum."""
    base = rutile_cell()
    reps = [math.ceil(2 * radius / length) + 2 for length in base.cell.lengths()]
    block = base * reps
    centre = block.cell.sum(axis=0) / 2
    keep = np.linalg.norm(block.positions - centre, axis=1) <= radius
    sphere = block[keep]
    sphere.positions += cell / 2 - centre
    sphere.set_cell([cell, cell, cell])
    return sphere


def off_zone(atoms: Any, degrees: float = 7.0) -> Any:
    """The atoms tilted off the zone axis about x, kept inside their cell."""
    tilted = atoms.copy()
    centre = tilted.cell.sum(axis=0) / 2
    tilted.rotate(degrees, "x", center=centre)
    return tilted


def particle(material: int, radius_nm: float, seed: int, vacuum: float = 5.0) -> Any:
    """One randomly oriented crystalline particle (0: anatase TiO2, 1: gamma-WO3)."""
    from heteroagg.aggregate import Aggregate
    from heteroagg.atoms import to_atoms

    sphere = Aggregate([[0.0, 0.0, 0.0]], [radius_nm], [material])
    return to_atoms(sphere, seed, vacuum=vacuum)


CASES: dict[str, Case] = {
    "rutile-slab": Case(
        "rutile-slab",
        lambda: rutile_slab((2, 2, 3)),
        description="periodic rutile slab along [001], 9.2 x 9.2 x 8.9 Å",
    ),
    "rutile-sphere-off-zone": Case(
        "rutile-sphere-off-zone",
        lambda: off_zone(rutile_sphere(9.0, 26.0)),
        scan_sampling=2.0,
        description="rutile sphere of radius 9 Å tilted 7° off [001] in a 26 Å cell",
    ),
    "anatase-particle": Case(
        "anatase-particle",
        lambda: particle(0, 0.8, seed=3),
        scan_sampling=2.0,
        description="anatase particle of radius 8 Å in a random orientation",
    ),
    "wo3-particle": Case(
        "wo3-particle",
        lambda: particle(1, 0.7, seed=5),
        scan_sampling=2.0,
        description="gamma-WO3 particle of radius 7 Å in a random orientation",
    ),
    "speed-anchor": Case(
        "speed-anchor",
        lambda: rutile_sphere(20.0, 59.0),
        energy=300e3,
        semiangle=20.0,
        detector=(50.0, 150.0),
        sampling=0.05,
        slice_thickness=2.0,
        scan_sampling=0.5,
        scan_limit=(1, 4),
        description="rutile sphere of 3242 atoms in a 59 Å cell, 0.05 Å sampling, 2 Å slices",
    ),
}


def _abtem_image(case: Case, atoms: Any, gpts: tuple[int, int], scan_gpts: tuple[int, int]):
    import abtem

    abtem.config.set({"dask.lazy": False, "precision": "float32", "device": "cpu"})
    potential = abtem.Potential(
        atoms,
        gpts=(gpts[1], gpts[0]),  # abTEM orders (x, y)
        slice_thickness=case.slice_thickness,
        projection="infinite",
        parametrization="lobato",
    )
    probe = abtem.Probe(energy=case.energy, semiangle_cutoff=case.semiangle)
    probe.grid.match(potential)
    ex, ey = atoms.cell[0, 0], atoms.cell[1, 1]
    ny, nx = scan_gpts
    if case.scan_limit is None:
        scan = abtem.GridScan(
            start=(0, 0),
            end=(1, 1),
            fractional=True,
            sampling=case.scan_sampling,
            potential=potential,
        )
    else:
        rows, cols = case.scan_limit
        scan = abtem.GridScan(
            start=(0, 0),
            end=(cols * ex / nx, rows * ey / ny),
            gpts=(cols, rows),
        )
    detector = abtem.AnnularDetector(*case.detector)
    start = time.perf_counter()
    measurement = probe.scan(potential, scan=scan, detectors=detector)
    if hasattr(measurement, "compute"):
        measurement = measurement.compute()
    seconds = time.perf_counter() - start
    return np.asarray(measurement.array, float).T, seconds


def compare(case: Case | str, window: Any = None, threads: int = 0) -> Comparison:
    """Run one case in heteroagg and abTEM with identical settings.

    Parameters
    ----------
    case
        A :class:`Case` or the name of one in :data:`CASES`.
    window
        heteroagg's probe window (None: full cell, as abTEM).
    threads
        heteroagg worker threads (0: all cores).
    """
    if isinstance(case, str):
        case = CASES[case]
    atoms = case.build_atoms()
    grid = simulation_grid(
        atoms,
        sampling=case.sampling,
        slice_thickness=case.slice_thickness,
        scan_sampling=case.scan_sampling,
    )
    reference, abtem_seconds = _abtem_image(case, atoms, grid.gpts, grid.scan_gpts)
    start = time.perf_counter()
    image = haadf_multislice(
        atoms,
        energy=case.energy,
        semiangle=case.semiangle,
        detector=case.detector,
        sampling=case.sampling,
        slice_thickness=case.slice_thickness,
        scan_sampling=case.scan_sampling,
        window=window,
        threads=threads,
        scan_limit=case.scan_limit,
    )
    seconds = time.perf_counter() - start
    return Comparison(case.name, image, reference, seconds, abtem_seconds, window=window)


def plot_comparisons(results: list[Comparison], path: str | os.PathLike[str]) -> Path:
    """Save a figure: per case, heteroagg's image, abTEM's, and their relative difference.

    Needs matplotlib (the ``plot`` extra).
    """
    from heteroagg.plot import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(len(results), 3, figsize=(10, 3.2 * len(results)), squeeze=False)
    for row, result in zip(axes, results, strict=True):
        vmin = min(result.heteroagg_image.min(), result.abtem_image.min())
        vmax = max(result.heteroagg_image.max(), result.abtem_image.max())
        for ax, image, title in (
            (row[0], result.heteroagg_image, f"{result.case}: heteroagg"),
            (row[1], result.abtem_image, "abTEM"),
        ):
            shown = ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax)
            ax.set_title(title, fontsize=9)
            fig.colorbar(shown, ax=ax, fraction=0.046, label="fraction of beam")
        difference = (result.heteroagg_image - result.abtem_image) / result.abtem_image
        limit = float(np.abs(difference).max()) or 1.0
        shown = row[2].imshow(difference, cmap="coolwarm", vmin=-limit, vmax=limit)
        row[2].set_title(f"relative difference (NCC {result.metrics['ncc']:.6f})", fontsize=9)
        fig.colorbar(shown, ax=row[2], fraction=0.046)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path, dpi=110)
