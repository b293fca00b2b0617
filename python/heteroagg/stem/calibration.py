"""Calibration of thickness-dependent HAADF intensities by multislice.

:func:`calibrate` propagates probes through slabs of a crystal in many
random orientations and reads the detector out after every slice, so one
propagation per probe position gives the whole curve I(t).  The result is a
:class:`~heteroagg.stem.lut.HaadfLUT`, the input of the fast renderer.
"""

from __future__ import annotations

import inspect
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._atomic import replaced_on_success
from heteroagg._device import resolve_device
from heteroagg._numbers import is_real
from heteroagg._progress import progress_bar
from heteroagg.rng import check_uint64, derive_seed
from heteroagg.stem.detectors import as_detector
from heteroagg.stem.lut import HaadfLUT
from heteroagg.stem.probe import Probe

#: Material names and the crystal each calibrates by default.
MATERIAL_STRUCTURES: dict[str, str] = {"TiO2": "anatase", "WO3": "gamma", "C": "amorphous"}

#: Distance (Å) between the probe positions of one orientation, about
#: (to fit the slab a whole number of times).
POSITION_STEP = 1.37

#: Electron energies (eV) :func:`calibrate` takes: those of transmission microscopes.  A
#: value below is most likely keV given for eV.
MIN_ENERGY, MAX_ENERGY = 1e4, 1.5e6

#: Settings of the LUTs shipped with heteroagg (see :func:`default_lut`); the
#: optics and detector are :func:`calibrate`'s defaults.
DEFAULT_CALIBRATIONS: dict[str, dict[str, Any]] = {
    # 80 nm covers the paths through 200-particle aggregates of the default
    # model; 4 Å slices keep its stack under 9 GB (they change I(t) by < 1%)
    "TiO2": {
        "thickness_max": 80.0,
        "orientations": 16,
        "positions": 2,
        "frozen_phonons": 1,
        "slice_thickness": 4.0,
        "memory_limit": 1.2e10,
    },
    "WO3": {"thickness_max": 40.0, "orientations": 24, "positions": 2, "frozen_phonons": 1},
    "C": {"thickness_max": 20.0, "orientations": 6, "positions": 2, "frozen_phonons": 1},
}


def canonical_material(material: str) -> str:
    """``"tio2"`` -> ``"TiO2"`` and so on; raises for unknown names."""
    for name in MATERIAL_STRUCTURES:
        if str(material).lower() == name.lower():
            return name
    raise ValueError(
        f"unknown material {material!r}; expected one of {list(MATERIAL_STRUCTURES)} "
        "or an ase.Atoms unit cell"
    )


def largest_sampling(energy: float, max_angle: float) -> float:
    """Coarsest real-space sampling (Å) whose 2/3 band limit reaches ``max_angle`` (mrad)."""
    from heteroagg.stem.probe import electron_wavelength

    return (2.0 / 3.0) * electron_wavelength(energy) / (2.0 * max_angle * 1e-3)


def _unit_cell(material: Any) -> tuple[str, tuple, str]:
    """``(name, (lattice, fractional, numbers), structure description)``."""
    from heteroagg.atoms import _cell_arrays
    from heteroagg.structures import amorphous_carbon

    if isinstance(material, str):
        name = canonical_material(material)
        structure = MATERIAL_STRUCTURES[name]
        if structure == "amorphous":
            cell = amorphous_carbon()
            return name, _cell_arrays(cell, {}, "material"), cell.info["description"]
        cell = _cell_arrays(structure, {}, "structure")
        from heteroagg.structures import TIO2_STRUCTURES, WO3_STRUCTURES

        known = {**TIO2_STRUCTURES, **WO3_STRUCTURES}[structure]
        return name, cell, f"{known.name} {known.space_group}; {known.reference}"
    cell = _cell_arrays(material, {}, "material")
    formula = material.get_chemical_formula()
    return formula, cell, f"ase.Atoms {formula}, cell {np.round(cell[0], 5).tolist()}"


def crystal_slab(
    cell: tuple, lateral: float, depth: float, seed: int, *, threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of a randomly oriented crystal filling a box (Å).

    The crystal of ``cell`` is turned by a Haar-random rotation and shifted
    by a random lattice offset, both drawn from ``seed``, and cut to
    ``[0, lateral)^2 x [0, depth)``.  The box is later treated as periodic in
    x and y, so its centre, ``lateral / 2`` from the seams, is where probes go.

    Returns
    -------
    positions, numbers
        (n, 3) float64 Å and (n,) int32.
    """
    from heteroagg import _core

    centre = np.array([[lateral / 2, lateral / 2, depth / 2]])
    radius = math.sqrt(2 * (lateral / 2) ** 2 + (depth / 2) ** 2) + 1.0
    positions, numbers, _ = _core.fill_aggregate(
        [cell], centre, np.array([radius]), np.zeros(1, dtype=np.uint32), seed,
        True, True, False, threads,
    )  # fmt: skip
    inside = np.all((positions >= 0) & (positions < [lateral, lateral, depth]), axis=1)
    return positions[inside], numbers[inside].astype(np.int32)


def calibrate(
    material: Any,
    *,
    energy: float = 300e3,
    semiangle: float = 20.0,
    detector: Any = (52.0, 255.0),
    thickness_max: float = 20.0,
    orientations: int = 16,
    frozen_phonons: int = 1,
    positions: int = 2,
    seed: int = 0,
    device: str = "auto",
    sampling: float | None = None,
    slice_thickness: float = 2.0,
    lateral_size: float | None = None,
    defocus: float = 0.0,
    cs: float = 0.0,
    aberrations: dict[str, float] | None = None,
    phonon_sigmas: Mapping[str, float] | float | None = None,
    parametrization: str = "lobato",
    threads: int = 0,
    memory_limit: float = 4e9,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> HaadfLUT:
    """Compute a material's HAADF intensity against thickness by multislice.

    For each orientation ``k`` a slab of the crystal, turned by a random
    rotation and shifted by a random lattice offset drawn from
    ``derive_seed(seed, k)``, is ``thickness_max`` deep.  A square of
    ``positions x positions`` probes, about 1.37 Å apart, is propagated through it
    and the detector is read out after every slice.  Each orientation's
    curve is the mean over its probes and ``frozen_phonons`` configurations;
    the LUT holds the mean and the standard deviation over orientations.

    Parameters
    ----------
    material
        ``"TiO2"`` (anatase), ``"WO3"`` (gamma-WO3), ``"C"`` (amorphous
        carbon, for support films) or a periodic ``ase.Atoms`` unit cell.
    energy
        Electron energy (eV), in [1e4, 1.5e6] (:data:`MIN_ENERGY`, :data:`MAX_ENERGY`).
    semiangle
        Probe convergence semiangle (mrad).
    detector
        ``(inner, outer)`` in mrad, an :class:`AnnularDetector` or a
        :class:`SensitivityDetector`.
    thickness_max
        Deepest thickness tabulated (nm).
    orientations
        Number of random crystal orientations, >= 2.
    frozen_phonons
        Frozen-phonon configurations per orientation, >= 1.
    positions
        Probe positions per side of the square per orientation, >= 1.
    seed
        Root seed in [0, 2**64): orientation ``k`` and its phonons use
        ``derive_seed(seed, k)``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``: where the multislice runs (an
        explicit ``"cuda"`` without a device raises).
    sampling
        Real-space sampling (Å); default: 98% of the coarsest sampling whose
        band limit reaches the detector's largest angle.
    slice_thickness
        Largest slice thickness (Å): the depth is cut into equal slices of at
        most this, and their thickness is the LUT's thickness step.
    lateral_size
        Side of the slab (Å); default :func:`~heteroagg.stem.auto_window` of
        the probe over ``thickness_max``.
    defocus, cs, aberrations
        Probe aberrations (Å), see :class:`~heteroagg.stem.Probe`.
    phonon_sigmas
        RMS thermal displacement per direction (Å), per element or one value;
        default: :data:`heteroagg.atoms.DEFAULT_SIGMAS`.
    parametrization
        ``"lobato"`` or ``"kirkland"``.
    threads
        Worker threads (0: all cores).
    memory_limit
        Bound (bytes) on the slab's transmission functions.
    checkpoint
        A ``.npz`` path: finished orientations are saved there as they
        complete, and a later call with the same inputs resumes from it.
    progress
        Show a progress bar over orientations.

    Returns
    -------
    HaadfLUT
        The curve at thicknesses ``0, dz, 2 dz, ...`` (nm), ``dz`` the slice
        thickness, with every input recorded in ``lut.inputs``.

    Raises
    ------
    ValueError
        For bad input, or when the slab's potentials exceed ``memory_limit``.
    """
    arguments = dict(locals())
    from heteroagg.stem.multislice import haadf_multislice

    try:
        from ase import Atoms
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("calibrate needs ase: pip install 'heteroagg[ase]'") from None
    plan = _plan(**arguments)
    backend = plan.backend
    inputs, det, cell = plan.inputs, plan.detector, plan.cell
    n_slices, step, lateral, depth = plan.n_slices, plan.step, plan.lateral, plan.depth
    seed, name, sampling = inputs["seed"], inputs["material"], inputs["sampling_A"]
    samples = _resume(checkpoint, inputs, n_slices)

    start = lateral / 2 - step * (positions - 1) / 2
    with progress_bar(progress, orientations, f"calibrating {name}", len(samples)) as advance:
        for k in range(len(samples), orientations):
            orientation_seed = derive_seed(seed, k)
            xyz, numbers = crystal_slab(cell, lateral, depth, orientation_seed, threads=threads)
            # shift so the slab centre sits at the scan origin, seams half a cell away
            xyz[:, :2] = np.mod(xyz[:, :2] - start, lateral)
            atoms = Atoms(numbers=numbers, positions=xyz, cell=[lateral, lateral, depth])
            images = haadf_multislice(
                atoms,
                energy=energy,
                semiangle=semiangle,
                detector=det,
                sampling=sampling,
                slice_thickness=slice_thickness,
                scan_sampling=step,
                frozen_phonons=frozen_phonons,
                seed=derive_seed(orientation_seed, 1),
                parametrization=parametrization,
                device=backend,
                defocus=defocus,
                cs=cs,
                aberrations=aberrations,
                exit_planes=1,
                phonon_sigmas=phonon_sigmas,
                threads=threads,
                memory_limit=memory_limit,
                scan_limit=(positions, positions),
            )
            samples.append(np.concatenate([[0.0], images.mean(axis=(1, 2))]))
            if checkpoint is not None:
                _save_checkpoint(checkpoint, inputs, samples)
            advance()
    curves = np.array(samples)
    thickness = np.arange(n_slices + 1) * (depth / n_slices) / 10.0
    return HaadfLUT(
        material=name,
        thickness=thickness,
        mean=curves.mean(axis=0),
        std=curves.std(axis=0, ddof=1),
        samples=curves,
        inputs=inputs,
    )


@dataclass(frozen=True)
class _Plan:
    """What :func:`calibrate` computes from its arguments before any multislice."""

    inputs: dict[str, Any]
    cell: tuple
    detector: Any
    depth: float  # Å
    lateral: float  # Å
    step: float  # Å between probe positions
    n_slices: int
    backend: str  # "cpu" or "cuda", resolved from the device argument


def calibration_inputs(material: Any, **settings: Any) -> dict[str, Any]:
    """Check :func:`calibrate`'s arguments and return the inputs it would record.

    Nothing is computed: a run of several materials can check them all
    before the first one starts.  Takes :func:`calibrate`'s arguments.

    Returns
    -------
    dict
        What ``lut.inputs`` of the calibrated LUT will hold.

    Raises
    ------
    ValueError, TypeError
        For bad arguments, as :func:`calibrate` would raise them.
    """
    bound = inspect.signature(calibrate).bind(material, **settings)
    bound.apply_defaults()
    return _plan(**bound.arguments).inputs


def _plan(
    material: Any,
    energy: float,
    semiangle: float,
    detector: Any,
    thickness_max: float,
    orientations: int,
    frozen_phonons: int,
    positions: int,
    seed: int,
    sampling: float | None,
    slice_thickness: float,
    lateral_size: float | None,
    defocus: float,
    cs: float,
    aberrations: dict[str, float] | None,
    phonon_sigmas: Any,
    parametrization: str,
    memory_limit: float,
    device: str = "auto",
    **_: Any,
) -> _Plan:
    """Validate :func:`calibrate`'s arguments and derive the run's geometry."""
    import heteroagg
    from heteroagg import _core
    from heteroagg.stem.multislice import BYTES_PER_PIXEL_SLICE, auto_window

    seed = check_uint64("seed", seed)
    for name, value, low in (
        ("orientations", orientations, 2),
        ("frozen_phonons", frozen_phonons, 1),
        ("positions", positions, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("thickness_max", thickness_max), ("slice_thickness", slice_thickness)):
        if not (is_real(value) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    depth = float(thickness_max) * 10.0
    if slice_thickness > depth:
        raise ValueError(
            f"slice_thickness ({slice_thickness} Å) exceeds thickness_max ({thickness_max} nm)"
        )
    if not (is_real(energy) and MIN_ENERGY <= energy <= MAX_ENERGY):
        raise ValueError(
            f"energy is in eV and must lie in [{MIN_ENERGY:g}, {MAX_ENERGY:g}] (300 keV is "
            f"300e3), got {energy!r}"
        )
    det = as_detector(detector)
    probe = Probe(
        energy=energy, semiangle=semiangle, defocus=defocus, cs=cs,
        aberrations=dict(aberrations or {}),
    )  # fmt: skip
    if sampling is None:
        sampling = 0.98 * largest_sampling(energy, det.max_angle)
    lateral = float(lateral_size) if lateral_size is not None else auto_window(probe, depth)
    if not (math.isfinite(lateral) and lateral >= 2 * POSITION_STEP * positions):
        raise ValueError(
            f"{positions} x {positions} probe positions need a slab of at least "
            f"{2 * POSITION_STEP * positions:.3g} Å, and it is {lateral:.3g} Å (lateral_size): "
            "use fewer positions or a larger lateral_size"
        )
    name, cell, structure = _unit_cell(material)
    _check_physics(cell, sampling, phonon_sigmas, parametrization)
    backend = resolve_device(device)
    n_slices = max(1, math.ceil(depth / slice_thickness - 1e-9))
    if not (is_real(memory_limit) and memory_limit > 0):
        raise ValueError(f"memory_limit must be positive (bytes), got {memory_limit!r}")
    side = int(_core.next_fft_size(math.ceil(lateral / sampling - 1e-9)))
    _check_band_limit(energy, probe, det, lateral / side)
    needed = n_slices * side * side * BYTES_PER_PIXEL_SLICE  # the slab's full-cell potential
    if needed > memory_limit:
        raise ValueError(
            f"{name}: the slab's potentials need {needed / 1e9:.3g} GB, above memory_limit "
            f"({memory_limit / 1e9:.3g} GB); raise memory_limit if the machine holds it, or "
            "lower thickness_max or use thicker slices"
        )
    step = lateral / round(lateral / POSITION_STEP)  # scan steps tile the slab exactly
    inputs = {
        "material": name,
        "structure": structure,
        "energy_eV": float(energy),
        "semiangle_mrad": float(semiangle),
        "detector": _describe_detector(det),
        "thickness_max_nm": float(thickness_max),
        "orientations": int(orientations),
        "frozen_phonons": int(frozen_phonons),
        "positions": int(positions),
        "position_step_A": step,
        "seed": seed,
        "sampling_A": float(sampling),
        "slice_thickness_A": depth / n_slices,
        "lateral_size_A": lateral,
        "defocus_A": float(defocus),
        "cs_A": float(cs),
        "aberrations": {k: float(v) for k, v in (aberrations or {}).items()},
        "phonon_sigmas": _describe_sigmas(phonon_sigmas),
        "parametrization": parametrization,
        "heteroagg_version": heteroagg.__version__,
    }
    return _Plan(inputs, cell, det, depth, lateral, step, n_slices, backend)


def _check_physics(cell: tuple, sampling: float, phonon_sigmas: Any, parametrization: str) -> None:
    """Checks the multislice makes, made before any of it runs: the parametrisation, the
    sampling and a displacement sigma for every element of the slab."""
    from ase.data import chemical_symbols

    from heteroagg.atoms import per_atom_sigmas
    from heteroagg.stem.multislice import _check_elements

    numbers = np.asarray(cell[2], dtype=np.int32)
    _check_elements(numbers, parametrization)
    if not (is_real(sampling) and math.isfinite(sampling) and sampling > 0):
        raise ValueError(f"sampling must be a positive number of Å, got {sampling!r}")
    per_atom_sigmas(np.array([chemical_symbols[z] for z in numbers.tolist()]), phonon_sigmas)


def _check_band_limit(energy: float, probe: Probe, detector: Any, grid_sampling: float) -> None:
    """The multislice's own check, at the sampling of the grid it will run on (the slab's
    width over a whole number of pixels, no coarser than the sampling asked for)."""
    from heteroagg import _core

    limit = _core.band_limit_angle((grid_sampling, grid_sampling), float(energy))
    for what, angle in (
        ("the probe aperture", probe.semiangle),
        ("the detector", detector.max_angle),
    ):
        if angle > limit * (1 + 1e-9):
            raise ValueError(
                f"{what} reaches {angle:g} mrad, but sampling {grid_sampling:.4g} Å at "
                f"{energy:g} eV allows at most {limit:.4g} mrad; use a finer sampling"
            )


def _describe_detector(det: Any) -> dict[str, Any]:
    from heteroagg.stem.detectors import AnnularDetector

    if isinstance(det, AnnularDetector):
        return {"kind": "annular", "inner_mrad": det.inner, "outer_mrad": det.outer}
    return {"kind": "sensitivity", "angles_mrad": list(det.angles), "weights": list(det.weights)}


def _describe_sigmas(sigmas: Any) -> Any:
    from heteroagg.atoms import DEFAULT_SIGMAS

    if sigmas is None:
        return {k: float(v) for k, v in DEFAULT_SIGMAS.items()}
    if isinstance(sigmas, Mapping):
        return {str(k): float(v) for k, v in sigmas.items()}
    return float(sigmas)


def _resume(checkpoint: str | Path | None, inputs: dict, n_slices: int) -> list[np.ndarray]:
    """Curves already finished in ``checkpoint`` under identical inputs."""
    import json

    if checkpoint is None or not Path(checkpoint).exists():
        return []
    try:
        with np.load(Path(checkpoint), allow_pickle=False) as data:
            saved = json.loads(str(data["inputs"]))
            curves = data["samples"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return []  # damaged (a copy cut short): the orientations are computed again
    if {**saved, "orientations": 0} != {**inputs, "orientations": 0}:
        raise ValueError(
            f"checkpoint {checkpoint} was written with other inputs; delete it or pass another path"
        )
    if curves.ndim != 2 or curves.shape[1] != n_slices + 1:
        raise ValueError(f"checkpoint {checkpoint} does not match the slices of this run")
    return [row for row in curves[: inputs["orientations"]]]


def _save_checkpoint(checkpoint: str | Path, inputs: dict, samples: list[np.ndarray]) -> None:
    import json

    path = Path(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(path) as tmp, open(tmp, "wb") as stream:
        np.savez(stream, inputs=np.array(json.dumps(inputs)), samples=np.array(samples))
