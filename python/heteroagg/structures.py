"""Crystal structures of the particle materials, from published refinements.

Each :class:`CrystalStructure` records the lattice parameters and the
asymmetric unit (Wyckoff positions) of a refinement together with its source,
and the symmetry operations of its space group, written out here as
coordinate triplets.  :meth:`CrystalStructure.unit_cell` expands the
asymmetric unit into the full conventional cell.  Lengths are in Å.

Sources
-------
Anatase, TiO2, I4_1/amd (No. 141, origin choice 1), Z = 4:
    M. Horn, C. F. Schwerdtfeger and E. P. Meagher, "Refinement of the
    structure of anatase at several temperatures", Z. Kristallogr. 136,
    273-281 (1972); the 25 C refinement as deposited in the Crystallography
    Open Database, entry 9008213: a = 3.7842, c = 9.5146 Å, Ti 4a (0, 0, 0),
    O 8e (0, 0, 0.2081).
Rutile, TiO2, P4_2/mnm (No. 136), Z = 2:
    C. J. Howard, T. M. Sabine and F. Dickson, "Structural and thermal
    parameters for rutile and anatase", Acta Cryst. B47, 462-468 (1991)
    (American Mineralogist Crystal Structure Database, entry 0019092):
    a = 4.5937, c = 2.9587 Å, Ti 2a (0, 0, 0), O 4f (x, x, 0) with
    x = 0.30478.  The Ti-O distances that follow, 1.948 Å (x4) and
    1.980 Å (x2), agree with the single-crystal values 1.9485 and 1.9800 Å
    of S. C. Abrahams and J. L. Bernstein, J. Chem. Phys. 55, 3206 (1971).
gamma-WO3, monoclinic, P2_1/n (No. 14, unique axis b, cell choice 2), Z = 8:
    B. O. Loopstra and H. M. Rietveld, "Further refinement of the
    pseudo-perovskite structure of WO3", Acta Cryst. B25, 1420-1421 (1969):
    a = 7.306, b = 7.540, c = 7.692 Å, beta = 90.881 deg, 2 W and 6 O in
    general positions 4e.  The lattice parameters are those of the paper;
    the fractional coordinates have NOT been checked against its table or
    a deposited CIF.  They are validated only by the geometry of the
    structure they generate: every W has six O at 1.66-2.20 Å, every O
    bridges two W, and no two atoms are closer than 1.6 Å (see
    tests/test_atoms.py).  Check them against a primary source before
    relying on individual coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from heteroagg import _core

if TYPE_CHECKING:
    import ase

#: Standard atomic weights (IUPAC) of the elements of the built-in structures and films;
#: :attr:`CrystalStructure.density` of other elements reads ase's table.
ATOMIC_MASSES: dict[str, float] = {"C": 12.011, "O": 15.999, "Ti": 47.867, "W": 183.84}

_AVOGADRO = 6.02214076e23


def _atomic_mass(symbol: str) -> float:
    """Standard atomic weight (u): :data:`ATOMIC_MASSES`, else ase's table."""
    if symbol in ATOMIC_MASSES:
        return ATOMIC_MASSES[symbol]
    try:
        from ase.data import atomic_masses
    except ImportError:
        known = ", ".join(sorted(ATOMIC_MASSES))
        raise ValueError(
            f"the atomic mass of {symbol} needs ase (pip install ase); without it only "
            f"{known} are known"
        ) from None
    return float(atomic_masses[_core.atomic_number(symbol)])


def _parse_triplet(triplet: str) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrix and translation of an operation such as ``-x+1/2,y,z+1/4``."""
    parts = triplet.replace(" ", "").split(",")
    if len(parts) != 3:
        raise ValueError(f"symmetry operation needs three components: {triplet!r}")
    rot = np.zeros((3, 3))
    trans = np.zeros(3)
    for row, part in enumerate(parts):
        terms = part.replace("-", "+-").split("+")
        for term in filter(None, terms):
            sign = -1.0 if term.startswith("-") else 1.0
            body = term.lstrip("-")
            if body in ("x", "y", "z"):
                rot[row, "xyz".index(body)] += sign
            else:
                trans[row] += sign * float(Fraction(body))
    return rot, trans


@dataclass(frozen=True)
class CrystalStructure:
    """A crystal structure: lattice, asymmetric unit and space-group operations.

    Parameters
    ----------
    name
        Short name, e.g. ``"anatase"``.
    formula
        Chemical formula of one formula unit, e.g. ``"TiO2"``.
    space_group
        Hermann-Mauguin symbol with number and setting (for display).
    cellpar
        ``(a, b, c, alpha, beta, gamma)`` in Å and degrees.
    sites
        Asymmetric unit: ``(symbol, (x, y, z))`` in fractional coordinates.
    operations
        Coordinate triplets of the space group's operations modulo the
        centring translations, e.g. ``"-x+1/2,y+1/2,-z+1/2"``.
    centring
        Centring translations, ``((0, 0, 0),)`` for a primitive lattice.
    reference
        The published source of the numbers.
    """

    name: str
    formula: str
    space_group: str
    cellpar: tuple[float, float, float, float, float, float]
    sites: tuple[tuple[str, tuple[float, float, float]], ...]
    operations: tuple[str, ...]
    centring: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0),)
    reference: str = ""

    def __post_init__(self) -> None:
        for symbol, _ in self.sites:
            _core.atomic_number(symbol)  # ValueError naming an unknown symbol

    def lattice(self) -> np.ndarray:
        """Lattice vectors as rows (Å): a along x, b in the xy plane."""
        a, b, c, alpha, beta, gamma = self.cellpar
        ca, cb, cg = np.cos(np.radians([alpha, beta, gamma]))
        sg = np.sin(np.radians(gamma))
        cy = (ca - cb * cg) / sg
        return np.array(
            [
                [a, 0.0, 0.0],
                [b * cg, b * sg, 0.0],
                [c * cb, c * cy, c * np.sqrt(1.0 - cb * cb - cy * cy)],
            ]
        )

    def expand(self, tol: float = 1e-4) -> tuple[np.ndarray, list[str]]:
        """All atoms of the conventional cell: fractional positions in [0, 1) and symbols.

        Images of a site that coincide (within ``tol`` in fractional
        coordinates, modulo lattice translations) are kept once.
        """
        ops = [_parse_triplet(t) for t in self.operations]
        positions: list[np.ndarray] = []
        symbols: list[str] = []
        for symbol, xyz in self.sites:
            site = np.asarray(xyz, dtype=float)
            for rot, trans in ops:
                for shift in self.centring:
                    p = np.mod(rot @ site + trans + np.asarray(shift), 1.0)
                    p[p > 1.0 - 1e-12] = 0.0  # rounding noise only
                    if not any(
                        s == symbol and np.all(np.abs((q - p + 0.5) % 1.0 - 0.5) < tol)
                        for q, s in zip(positions, symbols, strict=True)
                    ):
                        positions.append(p)
                        symbols.append(symbol)
        return np.array(positions), symbols

    def unit_cell(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lattice (3, 3), fractional (m, 3), atomic numbers (m,) uint8)``."""
        fractional, symbols = self.expand()
        numbers = np.array([_core.atomic_number(s) for s in symbols], dtype=np.uint8)
        return self.lattice(), fractional, numbers

    @property
    def volume(self) -> float:
        """Cell volume in Å^3."""
        return float(abs(np.linalg.det(self.lattice())))

    @property
    def density(self) -> float:
        """Mass density in g/cm^3."""
        _, symbols = self.expand()
        mass = sum(_atomic_mass(s) for s in symbols)
        return mass / _AVOGADRO / (self.volume * 1e-24)

    def to_atoms(self) -> ase.Atoms:
        """The conventional cell as periodic ``ase.Atoms``."""
        from ase import Atoms

        fractional, symbols = self.expand()
        return Atoms(symbols, scaled_positions=fractional, cell=self.lattice(), pbc=True)


_P42_MNM = (
    "x,y,z", "-x,-y,z", "-y+1/2,x+1/2,z+1/2", "y+1/2,-x+1/2,z+1/2",
    "-x+1/2,y+1/2,-z+1/2", "x+1/2,-y+1/2,-z+1/2", "y,x,-z", "-y,-x,-z",
    "-x,-y,-z", "x,y,-z", "y+1/2,-x+1/2,-z+1/2", "-y+1/2,x+1/2,-z+1/2",
    "x+1/2,-y+1/2,z+1/2", "-x+1/2,y+1/2,z+1/2", "-y,-x,z", "y,x,z",
)  # fmt: skip

_I41_AMD_ORIGIN1 = (
    "x,y,z", "-x,-y,z", "-y,x+1/2,z+1/4", "y,-x+1/2,z+1/4",
    "-x,y+1/2,-z+1/4", "x,-y+1/2,-z+1/4", "y,x,-z", "-y,-x,-z",
    "-x,-y+1/2,-z+1/4", "x,y+1/2,-z+1/4", "y,-x,-z", "-y,x,-z",
    "x,-y,z", "-x,y,z", "-y,-x+1/2,z+1/4", "y,x+1/2,z+1/4",
)  # fmt: skip

_P21_N = ("x,y,z", "-x+1/2,y+1/2,-z+1/2", "-x,-y,-z", "x+1/2,-y+1/2,z+1/2")

ANATASE = CrystalStructure(
    name="anatase",
    formula="TiO2",
    space_group="I4_1/amd (No. 141, origin choice 1)",
    cellpar=(3.7842, 3.7842, 9.5146, 90.0, 90.0, 90.0),
    sites=(("Ti", (0.0, 0.0, 0.0)), ("O", (0.0, 0.0, 0.2081))),
    operations=_I41_AMD_ORIGIN1,
    centring=((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)),
    reference="Horn, Schwerdtfeger & Meagher, Z. Kristallogr. 136, 273 (1972); COD 9008213",
)

RUTILE = CrystalStructure(
    name="rutile",
    formula="TiO2",
    space_group="P4_2/mnm (No. 136)",
    cellpar=(4.5937, 4.5937, 2.9587, 90.0, 90.0, 90.0),
    sites=(("Ti", (0.0, 0.0, 0.0)), ("O", (0.30478, 0.30478, 0.0))),
    operations=_P42_MNM,
    reference="Howard, Sabine & Dickson, Acta Cryst. B47, 462 (1991); AMCSD 0019092",
)

GAMMA_WO3 = CrystalStructure(
    name="gamma",
    formula="WO3",
    space_group="P2_1/n (No. 14, unique axis b, cell choice 2)",
    cellpar=(7.306, 7.540, 7.692, 90.0, 90.881, 90.0),
    sites=(
        ("W", (0.2566, 0.0259, 0.2850)),
        ("W", (0.2502, 0.0314, 0.7805)),
        ("O", (0.0007, 0.0340, 0.2100)),
        ("O", (-0.0001, 0.5370, 0.7862)),
        ("O", (0.2840, 0.2587, 0.2850)),
        ("O", (0.2081, 0.2588, 0.7320)),
        ("O", (0.2850, 0.0410, 0.0041)),
        ("O", (0.2177, 0.0056, 0.4966)),
    ),
    operations=_P21_N,
    reference="Loopstra & Rietveld, Acta Cryst. B25, 1420 (1969)",
)

#: Built-in TiO2 structures by name.
TIO2_STRUCTURES: dict[str, CrystalStructure] = {"anatase": ANATASE, "rutile": RUTILE}

#: Built-in WO3 structures by name.
WO3_STRUCTURES: dict[str, CrystalStructure] = {"gamma": GAMMA_WO3}


#: Mass density (g/cm^3) of the amorphous carbon of support films.
AMORPHOUS_CARBON_DENSITY = 2.0

#: Closest approach (Å) of two atoms in :func:`amorphous_carbon`, about the C-C bond.
AMORPHOUS_CARBON_MIN_DISTANCE = 1.4


def amorphous_carbon(
    side: float = 20.0,
    density: float = AMORPHOUS_CARBON_DENSITY,
    min_distance: float = AMORPHOUS_CARBON_MIN_DISTANCE,
    seed: int = 0,
) -> ase.Atoms:
    """A periodic cube of amorphous carbon, as in the support films of TEM grids.

    Atoms are placed one by one at uniformly random points of the cube and
    kept when no earlier atom lies within ``min_distance`` (periodic random
    sequential addition) until the cube holds ``density``.  It is a model of
    the projected mass of a carbon film without crystalline order, not of
    its bonding.

    Parameters
    ----------
    side
        Cube edge (Å).
    density
        Mass density (g/cm^3); amorphous carbon films are 1.8-2.2.
    min_distance
        Closest approach of two atoms (Å).
    seed
        Seed of the placement; the cube is a pure function of the arguments.

    Raises
    ------
    ValueError
        For non-positive sizes, a cube too small to hold one atom, or a
        density too high to reach by random addition at that ``min_distance``.
    """
    from ase import Atoms

    from heteroagg.rng import derive_seed

    if not all(math.isfinite(v) and v > 0 for v in (side, density, min_distance)):
        raise ValueError("side, density and min_distance must be positive and finite")
    count = round(density / 12.011 * _AVOGADRO * 1e-24 * side**3)
    if count < 1:
        raise ValueError(
            f"a cube of {side} Å at {density} g/cm^3 holds no whole carbon atom; make it larger"
        )
    if count * math.pi / 6 * min_distance**3 > 0.3 * side**3:
        raise ValueError(
            f"{density} g/cm^3 with atoms {min_distance} Å apart is beyond random addition"
        )
    rng = np.random.default_rng(derive_seed(seed, 0xC))
    accepted = np.empty((count, 3))
    n = 0
    for _ in range(200 * count):
        if n == count:
            break
        candidates = rng.uniform(0.0, side, size=(64, 3))
        for point in candidates:
            delta = accepted[:n] - point
            delta -= side * np.round(delta / side)
            if n == 0 or np.min(np.einsum("ij,ij->i", delta, delta)) >= min_distance**2:
                accepted[n] = point
                n += 1
                if n == count:
                    break
    if n < count:  # pragma: no cover - the density check above prevents it
        raise ValueError("random addition did not reach the density")
    atoms = Atoms(numbers=np.full(count, 6), positions=accepted, cell=[side] * 3, pbc=True)
    atoms.info["description"] = (
        f"amorphous carbon, periodic random addition: {side:g} Å cube, {density:g} g/cm^3, "
        f"atoms >= {min_distance:g} Å apart, seed {seed}"
    )
    return atoms
