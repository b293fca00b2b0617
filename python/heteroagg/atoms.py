"""Atomic models of aggregates for multislice STEM simulation.

:func:`to_atoms` fills every sphere of an :class:`~heteroagg.Aggregate` with
its crystal (TiO2 or WO3, see :mod:`heteroagg.structures`) in a random
orientation; :func:`frozen_phonons` makes thermally displaced copies.

Overlapping spheres (sintered necks): an atom of sphere ``i`` that lies
inside an earlier sphere ``j < i`` is dropped, so each point of the overlap
belongs to the lower-indexed particle and holds the atoms of one crystal.

Default thermal displacements
-----------------------------
``frozen_phonons`` displaces each atom by isotropic Gaussian noise with RMS
``sigma`` per Cartesian direction, ``sigma**2 = <u_x^2> = U = B / (8 pi^2)``.
The defaults (:data:`DEFAULT_MSD`, in Å^2) are room-temperature values:

- Ti and O: the equivalent isotropic U of the anisotropic displacement
  parameters of rutile refined by Howard, Sabine & Dickson, Acta Cryst. B47,
  462 (1991) (AMCSD 0019092): Ti U11 = U22 = 0.0068, U33 = 0.0046;
  O U11 = U22 = 0.0052, U33 = 0.0035 Å^2, so U_eq(Ti) = 0.00607 and
  U_eq(O) = 0.00463 Å^2 (B = 0.479 and 0.366 Å^2).  The oxygen value is
  used for O in both oxides: no WO3-specific refinement was at hand.
- W: no room-temperature displacement parameters of gamma-WO3 could be
  checked, so the default is the Debye-model value for tungsten with the
  Debye temperature of the metal, 400 K (C. Kittel, Introduction to Solid
  State Physics, table of Debye temperatures), at 293 K:
  U(W) = 0.00152 Å^2 (B = 0.120 Å^2).  Tungsten bound in the oxide is
  likely softer, so this is a lower bound; pass ``sigmas`` to override.
- C (for amorphous carbon support films): the Debye-model value with the
  Debye temperature of diamond, 2230 K (Kittel, same table), at 293 K:
  U(C) = 0.00151 Å^2.  In an amorphous film the static disorder of the
  positions outweighs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from heteroagg import _core
from heteroagg._numbers import is_real
from heteroagg.materials import TIO2, WO3
from heteroagg.rng import check_uint64, derive_seed
from heteroagg.structures import TIO2_STRUCTURES, WO3_STRUCTURES, CrystalStructure

if TYPE_CHECKING:
    import ase

    from heteroagg.aggregate import Aggregate

#: Most atoms :func:`to_atoms` fills (their positions alone take 4.8 GB).
MAX_ATOMS = 2e8

_HBAR = 1.054571817e-34  # J s
_KB = 1.380649e-23  # J / K
_AMU = 1.66053906660e-27  # kg


def debye_msd(mass_u: float, debye_temperature: float, temperature: float = 293.0) -> float:
    """Mean-square displacement per direction (Å^2) of an atom in the Debye model.

    ``<u_x^2> = 3 hbar^2 / (m k Theta) * (Phi(x) / x + 1/4)`` with
    ``x = Theta / T`` and ``Phi(x) = (1/x) int_0^x t / (e^t - 1) dt``.
    """
    from scipy.integrate import quad

    for name, value in (("mass_u", mass_u), ("debye_temperature", debye_temperature),
                        ("temperature", temperature)):  # fmt: skip
        if not (is_real(value) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    mass_u, debye_temperature, temperature = map(float, (mass_u, debye_temperature, temperature))
    x = debye_temperature / temperature
    # beyond t = 700 the integrand is below 1e-300 (and e^t overflows past 709)
    phi = quad(lambda t: t / math.expm1(t) if t > 0 else 1.0, 0.0, min(x, 700.0))[0] / x
    scale = 3.0 * _HBAR**2 / (mass_u * _AMU * _KB * debye_temperature)  # m^2
    return scale * (phi / x + 0.25) * 1e20


#: Default mean-square displacement per direction, Å^2 (see the module notes).
DEFAULT_MSD: dict[str, float] = {
    "Ti": (2 * 0.0068 + 0.0046) / 3.0,
    "O": (2 * 0.0052 + 0.0035) / 3.0,
    "W": 0.0015232928646978,  # debye_msd(183.84, 400.0, 293.0), not evaluated at import
    "C": 0.0015121923637946,  # debye_msd(12.011, 2230.0, 293.0)
}

#: Default RMS displacement per direction, Å: ``sqrt(DEFAULT_MSD)``.
DEFAULT_SIGMAS: dict[str, float] = {k: math.sqrt(v) for k, v in DEFAULT_MSD.items()}


def _expected_atoms(cells: list[tuple], index: np.ndarray, radii_angstrom: np.ndarray) -> float:
    """Atoms the spheres hold at their crystals' densities (the volume times atoms per Å³)."""
    density = np.array(
        [len(numbers) / abs(np.linalg.det(lattice)) for lattice, _, numbers in cells]
    )
    return float(np.sum(4.0 / 3.0 * np.pi * radii_angstrom**3 * density[index]))


def _cell_arrays(structure: Any, names: Mapping[str, CrystalStructure], role: str) -> tuple:
    """``(lattice, fractional, numbers)`` of a structure name, CrystalStructure or ase.Atoms."""
    if isinstance(structure, str):
        known = {**TIO2_STRUCTURES, **WO3_STRUCTURES} if role == "structure" else names
        if structure.lower() not in known:
            raise ValueError(
                f"unknown {role} structure {structure!r}; expected one of {sorted(known)}"
            )
        structure = known[structure.lower()]
    if isinstance(structure, CrystalStructure):
        return structure.unit_cell()
    try:
        from ase import Atoms
    except ImportError:  # pragma: no cover - depends on the environment
        Atoms = None
    if Atoms is not None and isinstance(structure, Atoms):
        if len(structure) == 0:
            raise ValueError(f"{role}: the ase.Atoms unit cell has no atoms")
        if not all(structure.pbc) or abs(structure.cell.volume) < 1e-6:
            raise ValueError(f"{role}: the ase.Atoms must be a periodic cell (pbc on all axes)")
        numbers = np.asarray(structure.numbers)
        return (
            np.array(structure.cell[:], dtype=np.float64),
            structure.get_scaled_positions(wrap=True),
            numbers.astype(np.uint8),
        )
    raise ValueError(
        f"{role} must be a structure name, a CrystalStructure or an ase.Atoms, "
        f"got {type(structure).__name__}"
    )


def to_atoms(
    agg: Aggregate,
    seed: int = 0,
    *,
    tio2: str | CrystalStructure | ase.Atoms = "anatase",
    wo3: str | CrystalStructure | ase.Atoms = "gamma",
    structure: str | CrystalStructure | ase.Atoms | None = None,
    vacuum: float = 5.0,
    rotation: bool = True,
    random_offset: bool = False,
    drop_overlaps: bool = True,
    threads: int | None = None,
) -> ase.Atoms:
    """Fill every sphere of an aggregate with atoms of its crystal.

    Sphere ``i`` holds the atoms of its material's crystal, turned by a
    uniformly random rotation (and, with ``random_offset``, shifted by a
    uniformly random lattice offset) drawn from ``derive_seed(seed, i)``,
    that lie inside the sphere.  Centres and radii are converted from nm to Å.

    Parameters
    ----------
    agg
        The aggregate (geometry in nm).
    seed
        Integer in [0, 2**64).  The atoms are a pure function of
        ``(agg, seed)`` and the options, whatever the thread count.
    tio2, wo3
        Crystal of the TiO2 and WO3 spheres: a name (``"anatase"`` or
        ``"rutile"``; ``"gamma"``), a :class:`~heteroagg.structures.CrystalStructure`,
        or a periodic ``ase.Atoms`` unit cell.
    structure
        If given, one crystal (name, CrystalStructure or periodic
        ``ase.Atoms``) for every sphere, overriding ``tio2`` and ``wo3``.
    vacuum
        Empty margin in Å between the spheres' bounding box and each face of
        the cell.
    rotation
        Turn each sphere's crystal by a random rotation; otherwise all
        crystals share the axes of the aggregate frame.
    random_offset
        Shift each crystal by a random fractional lattice offset (otherwise a
        lattice point sits at each sphere centre).
    drop_overlaps
        Drop the atoms of sphere ``i`` that lie inside an earlier sphere
        ``j < i`` (see the module notes).
    threads
        Worker threads; None uses every core.

    Returns
    -------
    ase.Atoms
        Positions in Å inside an orthorhombic cell that holds the aggregate
        plus ``vacuum`` on every side, ``pbc=False`` (a finite object; abTEM
        treats the cell as the simulation box).  ``atoms.get_tags()`` is the
        index of each atom's sphere; ``atoms.info`` records the seed and the
        crystals used.

    Raises
    ------
    ValueError
        For an aggregate that is not an :class:`~heteroagg.Aggregate`, an
        unknown structure name, a non-periodic ``ase.Atoms``, a negative or
        non-finite ``vacuum``, or a bad seed or thread count.
    """
    from ase import Atoms

    from heteroagg.aggregate import Aggregate

    if not isinstance(agg, Aggregate):
        raise ValueError(f"agg must be an Aggregate, got {type(agg).__name__}")
    if len(agg) == 0:  # pragma: no cover - Aggregate refuses this already
        raise ValueError("the aggregate is empty")
    seed = check_uint64("seed", seed)
    if not is_real(vacuum):
        raise ValueError(f"vacuum must be a number of Å, got {vacuum!r}")
    if not math.isfinite(vacuum) or vacuum < 0:
        raise ValueError(f"vacuum must be finite and >= 0 Å, got {vacuum!r}")
    if threads is not None and not (
        is_real(threads) and isinstance(threads, (int, np.integer)) and threads >= 1
    ):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")

    if structure is not None:
        cells = [_cell_arrays(structure, {}, "structure")]
        index = np.zeros(len(agg), dtype=np.uint32)
        names = [_name(structure)] * 2
    else:
        cells = [
            _cell_arrays(tio2, TIO2_STRUCTURES, "tio2"),
            _cell_arrays(wo3, WO3_STRUCTURES, "wo3"),
        ]
        index = agg.materials.astype(np.uint32)
        names = [_name(tio2), _name(wo3)]

    centres = agg.centers * 10.0
    radii = agg.radii * 10.0
    expected = _expected_atoms(cells, index, radii)
    if expected > MAX_ATOMS:
        raise ValueError(
            f"the aggregate's crystals would hold about {expected:.3g} atoms, more than "
            f"the {MAX_ATOMS:.0e} heteroagg fills at once"
        )
    positions, numbers, particles = _core.fill_aggregate(
        cells,
        centres,
        radii,
        index,
        seed,
        bool(rotation),
        bool(random_offset),
        bool(drop_overlaps),
        min(int(threads or 0), 2**31 - 1),  # more than any machine has
    )
    lower = (centres - radii[:, None]).min(axis=0)
    upper = (centres + radii[:, None]).max(axis=0)
    positions += vacuum - lower
    atoms = Atoms(numbers=numbers, positions=positions, cell=upper - lower + 2.0 * vacuum)
    atoms.pbc = False
    atoms.set_tags(particles.astype(np.int64))
    atoms.info.update(
        heteroagg_seed=seed,
        tio2_structure=names[TIO2],
        wo3_structure=names[WO3],
        rotation=bool(rotation),
        random_offset=bool(random_offset),
        drop_overlaps=bool(drop_overlaps),
    )
    return atoms


def _name(structure: Any) -> str:
    if isinstance(structure, str):
        return structure.lower()
    if isinstance(structure, CrystalStructure):
        return structure.name
    return f"ase.Atoms({structure.get_chemical_formula()})"


class FrozenPhonons(Sequence):
    """A lazy sequence of thermally displaced copies of an ``ase.Atoms``.

    Configuration ``j`` displaces every atom by independent Gaussian noise
    of RMS ``sigma[element]`` per direction, drawn from a numpy Generator
    seeded with ``derive_seed(seed, j)``: it is a pure function of
    ``(atoms, sigmas, seed, j)`` and is computed only when indexed.
    """

    def __init__(self, atoms: ase.Atoms, n: int, sigmas: np.ndarray, seed: int) -> None:
        self._atoms = atoms.copy()
        self._n = n
        self._sigmas = sigmas  # per atom, Å
        self._seed = seed

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, j: int) -> ase.Atoms: ...

    @overload
    def __getitem__(self, j: slice) -> list[ase.Atoms]: ...

    def __getitem__(self, j: int | slice) -> ase.Atoms | list[ase.Atoms]:
        if isinstance(j, slice):
            return [self[k] for k in range(*j.indices(self._n))]
        if isinstance(j, bool) or not isinstance(j, (int, np.integer)):
            raise TypeError(f"index must be an integer or a slice, got {type(j).__name__}")
        k = int(j) + self._n if j < 0 else int(j)
        if not 0 <= k < self._n:
            raise IndexError(f"configuration {j} out of range for {self._n}")
        rng = np.random.default_rng(derive_seed(self._seed, k))
        displaced = self._atoms.copy()
        noise = rng.standard_normal((len(displaced), 3))
        displaced.positions += noise * self._sigmas[:, None]
        displaced.info["frozen_phonon_index"] = k
        return displaced

    @property
    def sigmas(self) -> np.ndarray:
        """RMS displacement per direction of each atom (Å), read-only."""
        view = self._sigmas.view()
        view.setflags(write=False)
        return view


def frozen_phonons(
    atoms: ase.Atoms,
    n: int,
    sigmas: Mapping[str, float] | float | None = None,
    seed: int = 0,
) -> FrozenPhonons:
    """``n`` frozen-phonon configurations of ``atoms`` (a lazy sequence).

    Parameters
    ----------
    atoms
        The undisplaced atoms.
    n
        Number of configurations, >= 1.
    sigmas
        RMS displacement per Cartesian direction in Å: a dict element symbol
        -> Å (every element present must be given), one float for all atoms,
        or None for :data:`DEFAULT_SIGMAS` (Ti, O, W; see the module notes).
    seed
        Integer in [0, 2**64); configuration ``j`` uses ``derive_seed(seed, j)``.

    Returns
    -------
    FrozenPhonons
        A sequence of ``n`` displaced ``ase.Atoms``; each is computed when
        indexed, so only the configuration in use is held in memory.

    Raises
    ------
    ValueError
        For ``n < 1``, a negative or non-finite sigma, an element without a
        sigma, or a bad seed.
    """
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise ValueError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    seed = check_uint64("seed", seed)
    per_atom = per_atom_sigmas(np.array(atoms.get_chemical_symbols()), sigmas)
    return FrozenPhonons(atoms, int(n), per_atom, seed)


def per_atom_sigmas(symbols: np.ndarray, sigmas: Mapping[str, float] | float | None) -> np.ndarray:
    """Each atom's RMS displacement (Å) from ``sigmas`` as :func:`frozen_phonons` takes it.

    Raises
    ------
    ValueError
        For a negative or non-finite sigma, or an element without one.
    """
    if sigmas is None:
        sigmas = DEFAULT_SIGMAS
    if not isinstance(sigmas, Mapping):
        return np.full(len(symbols), _check_sigma(sigmas, "all atoms"))
    per_atom = np.zeros(len(symbols))
    for element in map(str, np.unique(symbols)):
        if element not in sigmas:
            raise ValueError(f"no displacement sigma for element {element!r}; give one for each")
        per_atom[symbols == element] = _check_sigma(sigmas[element], element)
    return per_atom


def _check_sigma(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"sigma for {what} must be a number of Å, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"sigma for {what} must be finite and >= 0 Å, got {value!r}")
    return float(value)
