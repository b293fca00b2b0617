"""HAADF-STEM images by multislice, computed in the C++ core.

Units follow ase and abTEM: Å for positions and sampling, eV for the energy,
mrad for angles.  Intensities are fractions of the incident beam.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroagg import _core
from heteroagg._device import cuda_fft_extension, resolve_device
from heteroagg._numbers import is_real
from heteroagg._progress import progress_bar
from heteroagg.rng import check_uint64
from heteroagg.stem.detectors import as_detector
from heteroagg.stem.probe import Probe

#: Default bound on the transmission functions held in memory at once (bytes).
DEFAULT_MEMORY_LIMIT = 2e9

#: Lateral reach (Å) of an atom's projected potential that tiles keep: atoms
#: this far outside a tile still contribute to it.
POTENTIAL_CUTOFF = 4.0


@dataclass(frozen=True)
class SimulationGrid:
    """The sampling a multislice run actually uses.

    ``gpts`` is the first FFT-friendly size (factors 2, 3, 5, 7) at or above
    ``extent / sampling``, so the actual ``sampling`` is ``extent / gpts``.
    """

    extent: tuple[float, float]  # (y, x) Å
    gpts: tuple[int, int]  # (ny, nx)
    sampling: tuple[float, float]  # (dy, dx) Å
    slice_thickness: tuple[float, ...]  # Å, one per slice
    scan_gpts: tuple[int, int]  # (ny, nx) probe positions
    scan_sampling: tuple[float, float]  # (dy, dx) Å

    @property
    def slice_edges(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.slice_thickness)])


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """(y, x) from a scalar or an (x, y) pair, as abTEM orders sampling."""
    if is_real(value):
        pair = (float(value), float(value))
    else:
        try:
            x, y = value
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or an (x, y) pair, got {value!r}") from None
        pair = (float(y), float(x))
    if not all(math.isfinite(v) and v > 0 for v in pair):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return pair


def _cell_extent(atoms: Any) -> tuple[float, float, float]:
    cell = np.asarray(atoms.cell, dtype=float)
    if cell.shape != (3, 3) or np.any(np.abs(cell - np.diag(np.diag(cell))) > 1e-9):
        raise ValueError("the atoms need an orthogonal cell (a diagonal 3x3 cell matrix)")
    diag = np.diag(cell)
    if np.any(diag <= 0) or not np.all(np.isfinite(diag)):
        raise ValueError(f"the cell lengths must be positive and finite, got {diag.tolist()}")
    return float(diag[0]), float(diag[1]), float(diag[2])


def simulation_grid(
    atoms: Any,
    *,
    sampling: float | Sequence[float],
    slice_thickness: float,
    scan_sampling: float | Sequence[float],
) -> SimulationGrid:
    """The grids a multislice run uses for ``atoms`` and these settings.

    Slices cover the cell depth in equal parts no thicker than
    ``slice_thickness``; scan positions start at (0, 0) and step by at most
    ``scan_sampling`` with the end excluded, like
    ``abtem.GridScan(start=(0, 0), end=(1, 1), fractional=True, sampling=...)``.
    """
    ex, ey, depth = _cell_extent(atoms)
    dy, dx = _pair(sampling, "sampling")
    sy, sx = _pair(scan_sampling, "scan_sampling")
    if not (is_real(slice_thickness) and slice_thickness > 0):
        raise ValueError(f"slice_thickness must be positive (Å), got {slice_thickness!r}")
    wanted = (math.ceil(ey / dy - 1e-9), math.ceil(ex / dx - 1e-9))
    if wanted[0] * wanted[1] > MAX_GRID_POINTS:
        raise ValueError(
            f"a {ey:g} x {ex:g} Å cell at sampling ({dy:g}, {dx:g}) Å needs a grid of "
            f"{wanted[0]} x {wanted[1]} points, more than {MAX_GRID_POINTS:.3g} "
            f"({MAX_GRID_POINTS * 8 / 2**30:g} GiB per wave): sample it more coarsely"
        )
    gpts = (int(_core.next_fft_size(wanted[0])), int(_core.next_fft_size(wanted[1])))
    n_slices = max(1, math.ceil(depth / slice_thickness - 1e-9))
    scan = (max(1, math.ceil(ey / sy - 1e-9)), max(1, math.ceil(ex / sx - 1e-9)))
    return SimulationGrid(
        extent=(ey, ex),
        gpts=gpts,
        sampling=(ey / gpts[0], ex / gpts[1]),
        slice_thickness=(depth / n_slices,) * n_slices,
        scan_gpts=scan,
        scan_sampling=(ey / scan[0], ex / scan[1]),
    )


#: Smallest probe window (Å) :func:`auto_window` gives; smaller ones cut the probe's tails.
MIN_WINDOW = 16.0


def auto_window(probe: Probe, depth: float) -> float:
    """Default probe window (Å): the probe and its spread through ``depth``.

    Twice the sum of 8 Å (the probe's tails), the geometric spread of the
    convergent beam over the specimen depth and the probe's geometric
    radius from its aberrations (``|C_nm| alpha^n`` for each coefficient:
    ``|defocus| alpha`` and ``|Cs| alpha^3``), and at least 16 Å.
    """
    alpha = probe.semiangle * 1e-3
    aberrated = sum(abs(c) * alpha**n for n, _, c, _ in probe.polar_coefficients())
    return max(MIN_WINDOW, 2.0 * (8.0 + depth * alpha + aberrated))


def fast_window_size(n: int) -> int:
    """A size >= n for probe windows and tiles that transforms quickly.

    The smallest 2^a 3^b 5^c with b <= 1 and c <= 1 at or above ``n``:
    radix-2 passes are the fastest, so 384 (2^7 3) beats 375 (5^3) although
    it is larger.
    """
    best = None
    for five in (1, 5):
        for three in (1, 3):
            m = five * three
            while m < n:
                m *= 2
            best = m if best is None else min(best, m)
    return int(best)


def _window_pixels(window: Any, probe: Probe, grid: SimulationGrid) -> tuple[int, int] | None:
    """Window size in pixels, or None for the full cell.

    An explicit size larger than the cell is an error; ``"auto"`` falls back
    to the full cell when the cell is smaller than its window.
    """
    if window is None:
        return None
    if isinstance(window, str):
        if window != "auto":
            raise ValueError(f"window must be None, 'auto' or a size in Å, got {window!r}")
        size = auto_window(probe, float(sum(grid.slice_thickness)))
        window_y = window_x = size
    else:
        window_y, window_x = _pair(window, "window")
        if window_y > grid.extent[0] + 1e-9 or window_x > grid.extent[1] + 1e-9:
            raise ValueError(
                f"the cell ({grid.extent[1]:g} x {grid.extent[0]:g} Å) is smaller than the probe "
                f"window ({window_x:g} x {window_y:g} Å); use window=None for the full cell"
            )
        if min(window_y, window_x) < MIN_WINDOW:
            warnings.warn(
                f"a probe window of {min(window_y, window_x):g} Å cuts the probe's tails (its "
                f"intensity reaches about {MIN_WINDOW / 2:g} Å from the centre): the images can "
                "be off by tens of percent; window='auto' sizes it",
                RuntimeWarning,
                stacklevel=3,
            )
    pixels = []
    for size, d, n in zip((window_y, window_x), grid.sampling, grid.gpts, strict=True):
        p = fast_window_size(math.ceil(size / d))
        pixels.append(min(p, n))
    if tuple(pixels) == grid.gpts:
        return None
    return pixels[0], pixels[1]


def exit_plane_counts(exit_planes: int | Sequence[int] | None, n_slices: int) -> list[int]:
    """Numbers of slices after which the detectors read out.

    ``None``: only the exit surface.  An int ``k``: every ``k`` slices and
    the exit surface.  A sequence: those slice counts (1..n_slices).
    """
    if exit_planes is None:
        return [n_slices]
    if isinstance(exit_planes, (int, np.integer)):
        if exit_planes < 1:
            raise ValueError(f"exit_planes must be >= 1, got {exit_planes}")
        counts = list(range(int(exit_planes), n_slices + 1, int(exit_planes)))
        if not counts or counts[-1] != n_slices:
            counts.append(n_slices)
        return counts
    if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in exit_planes):
        raise ValueError(f"exit planes are whole slice counts, got {exit_planes!r}")
    counts = sorted({int(c) for c in exit_planes})
    if not counts or counts[0] < 1 or counts[-1] > n_slices:
        raise ValueError(
            f"exit plane slice counts must lie in [1, {n_slices}], got {exit_planes!r}"
        )
    return counts


#: Largest atomic number the parametrisation tables cover.
MAX_ATOMIC_NUMBER = 103
#: Most points of a multislice grid: a complex64 wave of 2 GiB.
MAX_GRID_POINTS = 2**28


def _check_elements(numbers: np.ndarray, parametrization: str) -> None:
    if parametrization not in ("lobato", "kirkland"):
        raise ValueError(f"parametrization must be 'lobato' or 'kirkland', got {parametrization!r}")
    bad = numbers[(numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)]
    if bad.size:
        raise ValueError(
            f"atomic numbers {sorted(set(bad.tolist()))} are outside the parametrisation "
            f"tables (1..{MAX_ATOMIC_NUMBER})"
        )


#: Memory per pixel and slice while a stack is built: the float32 potential
#: and the complex64 transmission function.
BYTES_PER_PIXEL_SLICE = 12


def stack_bytes(grid: SimulationGrid, gpts: tuple[int, int]) -> int:
    """Memory (bytes) of the potential and transmission functions of a region."""
    return len(grid.slice_thickness) * gpts[0] * gpts[1] * BYTES_PER_PIXEL_SLICE


def _tile_margin(window: tuple[int, int], sampling: tuple[float, float]) -> list[int]:
    """Pixels a tile extends beyond its outermost probe positions (y, x).

    Half a window, so every window lies inside the tile, plus the potential's
    cutoff, so the periodic wrap of the tile's FFT never reaches a window.
    """
    return [
        w // 2 + math.ceil(POTENTIAL_CUTOFF / d) + 2 for w, d in zip(window, sampling, strict=True)
    ]


def _tile_plan(
    grid: SimulationGrid, window: tuple[int, int], memory_limit: float
) -> list[tuple[slice, slice]]:
    """Blocks of scan positions whose tiles fit the memory limit."""
    n_slices = len(grid.slice_thickness)
    whole = stack_bytes(grid, grid.gpts)
    if whole <= memory_limit:
        return [(slice(0, grid.scan_gpts[0]), slice(0, grid.scan_gpts[1]))]
    margin = _tile_margin(window, grid.sampling)
    side_pixels = math.sqrt(memory_limit / (BYTES_PER_PIXEL_SLICE * n_slices))
    blocks = []
    for axis in range(2):
        inner = max(8.0, side_pixels - 2 * margin[axis])  # tile pixels left for positions
        step = max(1, int(inner * grid.sampling[axis] / grid.scan_sampling[axis]))
        blocks.append(
            [
                slice(i, min(i + step, grid.scan_gpts[axis]))
                for i in range(0, grid.scan_gpts[axis], step)
            ]
        )
    return [(by, bx) for by in blocks[0] for bx in blocks[1]]


def _periodic_images(
    positions: np.ndarray, numbers: np.ndarray, extent: tuple[float, float], lo: tuple, hi: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Atoms and their periodic images (in x, y) inside the box [lo, hi) (x, y)."""
    out_p, out_n = [], []
    ey, ex = extent
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            shifted = positions + np.array([sx * ex, sy * ey, 0.0])
            keep = (
                (shifted[:, 0] >= lo[0])
                & (shifted[:, 0] < hi[0])
                & (shifted[:, 1] >= lo[1])
                & (shifted[:, 1] < hi[1])
            )
            out_p.append(shifted[keep])
            out_n.append(numbers[keep])
    return np.concatenate(out_p), np.concatenate(out_n)


def _run_configuration(
    positions: np.ndarray,
    numbers: np.ndarray,
    grid: SimulationGrid,
    probe: Probe,
    detectors: list,
    planes: list[int],
    window: tuple[int, int] | None,
    parametrization: str,
    memory_limit: float,
    threads: int,
    advance: Callable[[int], None],
    engine: Callable[..., np.ndarray],
) -> np.ndarray:
    """(planes, detectors, scan_y, scan_x) intensities for one atom configuration.

    ``engine`` is :func:`_cpu_engine` or the CUDA extension's
    ``multislice_atoms``, which take the same arguments: the atoms of a tile
    and the multislice settings.  The CUDA one builds the potentials on the
    device, where they stay.
    """
    edges = grid.slice_edges
    dy, dx = grid.sampling
    out = np.empty((len(planes), len(detectors), *grid.scan_gpts), dtype=np.float64)
    core_detectors = [d.to_core() for d in detectors]
    aberrations = probe.polar_coefficients()
    ys = np.arange(grid.scan_gpts[0]) * grid.scan_sampling[0]
    xs = np.arange(grid.scan_gpts[1]) * grid.scan_sampling[1]

    def propagate(atoms: tuple, origin: tuple[float, float], by: slice, bx: slice):
        tile_positions, tile_numbers, gpts = atoms
        yy, xx = np.meshgrid(ys[by], xs[bx], indexing="ij")
        scan = np.stack([xx.ravel() - origin[0], yy.ravel() - origin[1]], axis=1)
        done = [0]

        def report(count: int) -> None:
            advance(count - done[0])
            done[0] = count

        result = engine(
            tile_positions,
            tile_numbers,
            gpts,
            origin,
            list(edges),
            parametrization,
            list(grid.slice_thickness),
            (dy, dx),
            probe.energy,
            probe.semiangle,
            aberrations,
            core_detectors,
            planes,
            window or (0, 0),
            scan,
            threads,
            report,
        )
        out[:, :, by, bx] = result.reshape(len(planes), len(detectors), *yy.shape)

    def whole_cell() -> tuple:
        """Atoms of the periodic cell, wrapped into it, and its grid."""
        wrapped = positions.copy()
        wrapped[:, 0] %= grid.extent[1]
        wrapped[:, 1] %= grid.extent[0]
        return wrapped, numbers, tuple(grid.gpts)

    if window is None:
        propagate(whole_cell(), (0.0, 0.0), slice(None), slice(None))
        return out

    for by, bx in _tile_plan(grid, window, memory_limit):
        if (by.stop - by.start, bx.stop - bx.start) == grid.scan_gpts:
            # the whole cell fits: one periodic stack, windows read it with wrap
            propagate(whole_cell(), (0.0, 0.0), by, bx)
            continue
        margin = _tile_margin(window, grid.sampling)
        first = (int(ys[by.start] / dy) - margin[0], int(xs[bx.start] / dx) - margin[1])
        last = (int(ys[by.stop - 1] / dy) + margin[0], int(xs[bx.stop - 1] / dx) + margin[1])
        tile = (
            fast_window_size(last[0] - first[0] + 1),
            fast_window_size(last[1] - first[1] + 1),
        )
        if tile[0] >= grid.gpts[0] and tile[1] >= grid.gpts[1]:
            # a tile would be no smaller than the cell: the periodic cell is exact
            propagate(whole_cell(), (0.0, 0.0), by, bx)
            continue
        origin = (first[1] * dx, first[0] * dy)  # (x, y) Å
        lo = (origin[0] - POTENTIAL_CUTOFF, origin[1] - POTENTIAL_CUTOFF)
        hi = (
            origin[0] + tile[1] * dx + POTENTIAL_CUTOFF,
            origin[1] + tile[0] * dy + POTENTIAL_CUTOFF,
        )
        tile_positions, tile_numbers = _periodic_images(positions, numbers, grid.extent, lo, hi)
        propagate((tile_positions, tile_numbers, tile), origin, by, bx)
    return out


def _cpu_engine(
    atom_positions: np.ndarray,
    numbers: np.ndarray,
    gpts: tuple[int, int],
    origin: tuple[float, float],
    slice_edges: list[float],
    parametrization: str,
    thickness: list[float],
    sampling: tuple[float, float],
    energy: float,
    semiangle: float,
    aberrations: list,
    detectors: list,
    exit_planes: list[int],
    window: tuple[int, int],
    positions: np.ndarray,
    threads: int,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Potentials of the atoms on the CPU, then the CPU multislice: the
    arguments of the CUDA extension's ``multislice_atoms``."""
    potentials = _core.projected_potentials(
        atom_positions, numbers, gpts, sampling, origin, slice_edges, parametrization, True, threads
    )
    return _core.multislice(
        potentials, thickness, sampling, energy, semiangle, aberrations, detectors, exit_planes,
        window, positions, threads, progress,
    )  # fmt: skip


def _gaussian_blur(images: np.ndarray, sigma: float, sampling: tuple[float, float]) -> np.ndarray:
    """Periodic Gaussian blur (sigma in Å) over the last two axes."""
    ny, nx = images.shape[-2:]
    ky = np.fft.fftfreq(ny, sampling[0])
    kx = np.fft.fftfreq(nx, sampling[1])
    kernel = np.exp(-2 * (math.pi * sigma) ** 2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    return np.fft.ifft2(np.fft.fft2(images) * kernel).real


def haadf_multislice(
    atoms: Any,
    *,
    energy: float,
    semiangle: float,
    detector: Any,
    sampling: float | Sequence[float],
    slice_thickness: float,
    scan_sampling: float | Sequence[float],
    window: float | Sequence[float] | str | None = None,
    frozen_phonons: int = 0,
    seed: int = 0,
    parametrization: str = "lobato",
    device: str = "auto",
    defocus: float = 0.0,
    cs: float = 0.0,
    aberrations: dict[str, float] | None = None,
    source_size: float = 0.0,
    exit_planes: int | Sequence[int] | None = None,
    phonon_sigmas: dict[str, float] | float | None = None,
    threads: int = 0,
    memory_limit: float = DEFAULT_MEMORY_LIMIT,
    progress: bool = False,
    scan_limit: tuple[int, int] | None = None,
) -> np.ndarray:
    """Simulate a HAADF-STEM image by multislice.

    Parameters
    ----------
    atoms
        ``ase.Atoms`` with an orthogonal cell (Å).  The beam runs along z
        through the cell depth; the cell is periodic in x and y.
    energy
        Electron energy (eV).
    semiangle
        Probe convergence semiangle (mrad).
    detector
        ``(inner, outer)`` in mrad, an :class:`AnnularDetector` or a
        :class:`SensitivityDetector`.
    sampling
        Real-space sampling (Å), a number or an (x, y) pair.  The grid uses
        the first FFT-friendly size at or above ``extent / sampling``
        (:func:`simulation_grid`), so the actual sampling may be slightly finer.
    slice_thickness
        Largest slice thickness (Å); the cell depth is cut into equal slices.
    scan_sampling
        Largest step between probe positions (Å); the scan starts at (0, 0)
        and excludes the far edge, like abTEM's fractional ``GridScan``.
    window
        ``None`` propagates every probe over the whole cell.  ``"auto"``
        (:func:`auto_window`) or a size in Å propagates each probe in a
        window around it, which is much faster for large cells; the potential
        is then built in tiles that fit ``memory_limit``.
    frozen_phonons
        Number of frozen-phonon configurations averaged (0: the atoms as given).
    seed
        Root seed of the phonon displacements.
    parametrization
        ``"lobato"`` (Lobato & Van Dyck 2014) or ``"kirkland"`` (Kirkland 2010).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``: where the probes are propagated
        (the potentials are built on the CPU either way).  ``"cuda"`` raises
        when no CUDA device or no cuFFT can be used; ``"auto"`` then falls
        back to the CPU.
    defocus, cs, aberrations, source_size
        Probe aberrations and source size, see :class:`Probe`.
    exit_planes
        Read out at several depths in the same run: an int ``k`` (every ``k``
        slices and the exit surface) or a sequence of slice counts.  The
        result then has a leading axis over the planes.
    phonon_sigmas
        RMS displacement per direction (Å), per element symbol or one value;
        default: the published values of :func:`heteroagg.frozen_phonons`.
    threads
        Worker threads (0: all cores).
    memory_limit
        Bound (bytes) on the transmission functions held at once.
    progress
        Show a progress bar over probe positions.
    scan_limit
        Compute only the first ``(rows, cols)`` positions of the scan, for
        timings and previews (None: the whole scan).

    Returns
    -------
    numpy.ndarray
        (scan_ny, scan_nx) float64 fractions of the incident beam, or
        (planes, scan_ny, scan_nx) with ``exit_planes``.  Pixel ``[iy, ix]``
        is the probe at (x, y) = (ix, iy) * scan sampling.

    Raises
    ------
    ValueError
        For bad input, or when the detector reaches beyond the largest angle
        the sampling allows (2/3 of the Nyquist angle; the message names it).
    """
    engine: Callable[..., np.ndarray] = _cpu_engine
    if resolve_device(device) == "cuda":
        extension = cuda_fft_extension(device)
        if extension is not None:
            engine = extension.multislice_atoms
    detectors = [as_detector(detector)]
    probe = Probe(
        energy=energy,
        semiangle=semiangle,
        defocus=defocus,
        cs=cs,
        aberrations=dict(aberrations or {}),
        source_size=source_size,
    )
    if len(atoms) == 0:
        raise ValueError("atoms is empty: there is nothing to image")
    if not (isinstance(frozen_phonons, (int, np.integer)) and frozen_phonons >= 0):
        raise ValueError(f"frozen_phonons must be an int >= 0, got {frozen_phonons!r}")
    check_uint64("seed", seed)  # also where no phonons draw from it
    if not (isinstance(threads, (int, np.integer)) and threads >= 0):
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")
    if not (is_real(memory_limit) and memory_limit > 0):
        raise ValueError(f"memory_limit must be positive (bytes), got {memory_limit!r}")
    grid = simulation_grid(
        atoms, sampling=sampling, slice_thickness=slice_thickness, scan_sampling=scan_sampling
    )
    numbers = np.asarray(atoms.numbers, dtype=np.int32)
    _check_elements(numbers, parametrization)
    limit = _core.band_limit_angle(grid.sampling, probe.energy)
    reaches = [("the probe aperture", probe.semiangle)] + [
        ("the detector", d.max_angle) for d in detectors
    ]
    for what, angle in reaches:  # beyond the band limit a wave is cut away unseen
        if angle > limit * (1 + 1e-9):
            finer = math.floor(max(grid.sampling) * limit / angle * 1e4) / 1e4  # rounded down
            raise ValueError(
                f"{what} reaches {angle:g} mrad, but sampling {max(grid.sampling):.4g} Å at "
                f"{energy:g} eV allows at most {limit:.4g} mrad; use sampling <= {finer:.4g} Å"
            )
    if probe.source_size > 0 and max(grid.scan_sampling) > probe.source_size:
        raise ValueError(
            f"the Gaussian source (source_size {probe.source_size:g} Å) blurs the image on its "
            f"scan grid, which needs scan steps no coarser than it; got "
            f"{max(grid.scan_sampling):.4g} Å: use scan_sampling <= {probe.source_size:g} Å"
        )
    if scan_limit is not None:
        whole = (
            hasattr(scan_limit, "__len__")
            and len(scan_limit) == 2
            and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in scan_limit
            )
        )
        rows, cols = (int(v) for v in scan_limit) if whole else (0, 0)
        if not (1 <= rows <= grid.scan_gpts[0] and 1 <= cols <= grid.scan_gpts[1]):
            raise ValueError(
                f"scan_limit must lie within the scan {grid.scan_gpts}, got {scan_limit!r}"
            )
        grid = dataclasses.replace(grid, scan_gpts=(rows, cols))
    window_pixels = _window_pixels(window, probe, grid)
    if window_pixels is None and stack_bytes(grid, grid.gpts) > memory_limit:
        raise ValueError(
            f"the full-cell potential needs {stack_bytes(grid, grid.gpts) / 1e9:.3g} GB, above "
            f"memory_limit ({memory_limit / 1e9:.3g} GB); use window='auto' (tiled potentials) "
            "or raise memory_limit"
        )
    planes = exit_plane_counts(exit_planes, len(grid.slice_thickness))

    configurations = max(1, frozen_phonons)
    if frozen_phonons > 0:
        from heteroagg.atoms import frozen_phonons as make_phonons

        displaced = make_phonons(atoms, frozen_phonons, sigmas=phonon_sigmas, seed=seed)
    else:
        displaced = [atoms]

    total = configurations * grid.scan_gpts[0] * grid.scan_gpts[1]
    with progress_bar(progress, total, "multislice") as advance:
        result = np.zeros((len(planes), len(detectors), *grid.scan_gpts))
        for configuration in displaced:
            positions = np.asarray(configuration.positions, dtype=np.float64)
            result += _run_configuration(
                positions,
                numbers,
                grid,
                probe,
                detectors,
                planes,
                window_pixels,
                parametrization,
                memory_limit,
                int(threads),
                advance,
                engine,
            )
        result /= configurations
    images = result[:, 0]
    if probe.source_size > 0:
        images = _gaussian_blur(images, probe.source_size, grid.scan_sampling)
    return images[0] if exit_planes is None else images
