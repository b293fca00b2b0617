"""Crystal structures, the sphere fill, to_atoms and frozen phonons."""

import math

import numpy as np
import pytest

import heteroagg
from heteroagg import Aggregate, _core
from heteroagg.atoms import DEFAULT_MSD, DEFAULT_SIGMAS, debye_msd
from heteroagg.structures import ANATASE, GAMMA_WO3, RUTILE, CrystalStructure

ase = pytest.importorskip("ase")
from ase.neighborlist import neighbor_list  # noqa: E402
from ase.spacegroup import crystal  # noqa: E402

STRUCTURES = [ANATASE, RUTILE, GAMMA_WO3]


def as_set(fractional, symbols, decimals=4):
    """Fractional positions (mod 1) with symbols as a set of rounded tuples."""
    f = np.round(np.mod(fractional, 1.0), decimals) % 1.0
    return {(s, *map(float, p)) for s, p in zip(symbols, f, strict=True)}


def ase_reference(structure):
    """The same refinement expanded by ase's own space-group tables."""
    symbols = [s for s, _ in structure.sites]
    basis = [xyz for _, xyz in structure.sites]
    if structure is GAMMA_WO3:
        # ase knows No. 14 as P2_1/c; the P2_1/n cell (a, b, c) is the P2_1/c
        # cell (a, b, a + c), with fractional coordinates x' = x - z.
        lattice = structure.lattice()
        p21c_cell = np.array([lattice[0], lattice[1], lattice[0] + lattice[2]])
        basis = [(x - z, y, z) for x, y, z in basis]
        atoms = crystal(symbols, basis, spacegroup=14, cell=p21c_cell)
    else:
        number = 141 if structure is ANATASE else 136
        atoms = crystal(symbols, basis, spacegroup=number, setting=1, cellpar=structure.cellpar)
    return atoms


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
def test_cells_equal_ase_spacegroup_expansion(structure):
    ref = ase_reference(structure)
    ours = structure.to_atoms()
    np.testing.assert_allclose(np.abs(np.linalg.det(ref.cell[:])), structure.volume, rtol=1e-10)
    # compare in our cell's fractional coordinates
    ref_fractional = np.linalg.solve(structure.lattice().T, ref.positions.T).T
    assert as_set(ref_fractional, ref.get_chemical_symbols()) == as_set(
        ours.get_scaled_positions(), ours.get_chemical_symbols()
    )
    if structure is not GAMMA_WO3:
        np.testing.assert_allclose(ours.cell[:], ref.cell[:], atol=1e-12)


@pytest.mark.parametrize(
    ("structure", "n_atoms", "metal", "density"),
    [(ANATASE, 12, "Ti", 3.89), (RUTILE, 6, "Ti", 4.25), (GAMMA_WO3, 32, "W", 7.2)],
    ids=["anatase", "rutile", "gamma"],
)
def test_stoichiometry_and_density(structure, n_atoms, metal, density):
    atoms = structure.to_atoms()
    symbols = atoms.get_chemical_symbols()
    assert len(atoms) == n_atoms
    n_metal = symbols.count(metal)
    n_o = symbols.count("O")
    assert n_metal + n_o == n_atoms
    assert n_o == (2 if metal == "Ti" else 3) * n_metal
    assert structure.density == pytest.approx(density, rel=0.015)
    ase_density = atoms.get_masses().sum() / atoms.get_volume() * 1.66053906660
    assert structure.density == pytest.approx(ase_density, rel=1e-3)


def metal_oxygen_distances(structure, metal, cutoff=2.4):
    atoms = structure.to_atoms()
    symbols = np.array(atoms.get_chemical_symbols())
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    return [np.sort(d[(i == k) & (symbols[j] == "O")]) for k in np.flatnonzero(symbols == metal)]


def test_titanium_octahedra():
    for structure in (ANATASE, RUTILE):
        for distances in metal_oxygen_distances(structure, "Ti"):
            assert len(distances) == 6
            assert 1.93 <= distances.min() and distances.max() <= 1.99
    # rutile: four short and two long bonds, as measured by Abrahams & Bernstein (1971)
    (rutile,) = {tuple(np.round(d, 3)) for d in metal_oxygen_distances(RUTILE, "Ti")}
    np.testing.assert_allclose(rutile, [1.9485] * 4 + [1.9800] * 2, atol=2e-3)


def test_tungsten_octahedra_share_corners():
    for distances in metal_oxygen_distances(GAMMA_WO3, "W"):
        assert len(distances) == 6
        assert 1.65 <= distances.min() and distances.max() <= 2.25
    atoms = GAMMA_WO3.to_atoms()
    symbols = np.array(atoms.get_chemical_symbols())
    i, j, _ = neighbor_list("ijd", atoms, 2.4)
    for k in np.flatnonzero(symbols == "O"):
        assert np.count_nonzero((i == k) & (symbols[j] == "W")) == 2


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
def test_no_atoms_closer_than_1p6(structure):
    _, _, d = neighbor_list("ijd", structure.to_atoms(), 1.6)
    assert d.size == 0


def brute_force_sphere(lattice, fractional, numbers, centre, radius, rotation, offset):
    """Replicate the cell over a broad box, rotate, keep the atoms inside the sphere."""
    span = int(radius / np.min(np.linalg.norm(lattice, axis=1)) * 2) + 3
    n = np.stack(np.meshgrid(*[np.arange(-span, span + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    frac = (n[:, None, :] + fractional[None, :, :] + offset).reshape(-1, 3)
    x = frac @ lattice
    z = np.tile(numbers, len(n))
    r2 = np.einsum("ij,ij->i", x, x)
    keep = r2 < radius**2
    return x[keep] @ rotation.T + centre, z[keep], np.sqrt(r2)


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
def test_fill_sphere_equals_brute_force(structure):
    lattice, fractional, numbers = structure.unit_cell()
    rotation, offset = _core.sphere_orientation(11, 5, True, True)
    centre = np.array([3.0, -7.5, 1.25])
    radius = 13.7
    pos, z, _ = _core.fill_sphere(lattice, fractional, numbers, centre, radius, rotation, offset)
    ref_pos, ref_z, r = brute_force_sphere(
        lattice, fractional, numbers, centre, radius, rotation, offset
    )
    # no atom of the reference lies within rounding of the surface
    assert np.min(np.abs(r - radius)) > 1e-6
    assert len(pos) == len(ref_pos)
    ours = {(int(a), *map(float, p)) for a, p in zip(z, np.round(pos, 6), strict=True)}
    ref = {(int(a), *map(float, p)) for a, p in zip(ref_z, np.round(ref_pos, 6), strict=True)}
    assert ours == ref


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
def test_atom_count_matches_density(structure):
    lattice, fractional, numbers = structure.unit_cell()
    radius = 30.0
    rotation, offset = _core.sphere_orientation(2, 0, True, True)
    pos, _, _ = _core.fill_sphere(
        lattice, fractional, numbers, np.zeros(3), radius, rotation, offset
    )
    expected = 4.0 / 3.0 * math.pi * radius**3 * len(numbers) / structure.volume
    assert len(pos) == pytest.approx(expected, rel=0.02)


def test_rotations_are_uniform():
    from scipy import stats

    n = 4000
    rotations = np.array([_core.sphere_orientation(7, i, True, False)[0] for i in range(n)])
    identity = np.broadcast_to(np.eye(3), rotations.shape)
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), identity, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    # the image of a fixed vector is uniform on the sphere: mean 0, each
    # coordinate uniform on [-1, 1]
    v = rotations @ np.array([0.0, 0.0, 1.0])
    assert np.all(np.abs(v.mean(axis=0)) < 4.0 / math.sqrt(3.0 * n))
    assert stats.kstest(v[:, 0], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # Haar measure: the rotation angle has the density (1 - cos t) / pi on [0, pi]
    angle = np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1.0) / 2.0, -1, 1))
    assert stats.kstest(angle, lambda t: (t - np.sin(t)) / math.pi).pvalue > 1e-3


def test_offsets_are_uniform_and_independent_of_rotation():
    offsets = np.array([_core.sphere_orientation(3, i, True, True)[1] for i in range(2000)])
    assert offsets.min() >= 0.0 and offsets.max() < 1.0
    np.testing.assert_allclose(offsets.mean(axis=0), 0.5, atol=0.03)
    same = np.array([_core.sphere_orientation(3, i, False, True)[1] for i in range(2000)])
    np.testing.assert_array_equal(offsets, same)


@pytest.fixture
def pair():
    """A TiO2 and a WO3 sphere sintered at a neck (nm)."""
    return Aggregate([[0.0, 0.0, 0.0], [1.6, 0.3, 0.0]], [1.0, 0.8], [0, 1])


def test_to_atoms_cell_vacuum_and_materials(pair):
    atoms = heteroagg.to_atoms(pair, 5, vacuum=7.5)
    lower = (pair.centers - pair.radii[:, None]).min(axis=0) * 10
    upper = (pair.centers + pair.radii[:, None]).max(axis=0) * 10
    np.testing.assert_allclose(atoms.cell.lengths(), upper - lower + 15.0)
    assert atoms.cell.orthorhombic and not atoms.pbc.any()
    assert np.all(atoms.positions >= 7.5) and np.all(atoms.positions <= atoms.cell.lengths() - 7.5)
    tags = atoms.get_tags()
    symbols = np.array(atoms.get_chemical_symbols())
    assert set(symbols[tags == 0]) == {"Ti", "O"} and set(symbols[tags == 1]) == {"W", "O"}
    # every atom lies in its own sphere
    centres = (pair.centers * 10 - lower + 7.5)[tags]
    assert np.all(np.linalg.norm(atoms.positions - centres, axis=1) < (pair.radii * 10)[tags])
    assert atoms.info["tio2_structure"] == "anatase" and atoms.info["wo3_structure"] == "gamma"


def test_overlap_rule_drops_atoms_of_later_spheres(pair):
    atoms = heteroagg.to_atoms(pair, 5, vacuum=0.0)
    kept = heteroagg.to_atoms(pair, 5, vacuum=0.0, drop_overlaps=False)
    shift = -(pair.centers - pair.radii[:, None]).min(axis=0) * 10
    second = atoms.positions[atoms.get_tags() == 1]
    assert np.all(np.linalg.norm(second - (pair.centers[0] * 10 + shift), axis=1) >= 10.0)
    first = atoms.positions[atoms.get_tags() == 0]
    np.testing.assert_array_equal(first, kept.positions[kept.get_tags() == 0])
    dropped = np.count_nonzero(kept.get_tags() == 1) - len(second)
    assert dropped > 0
    # the dropped atoms are exactly those of sphere 1 inside sphere 0
    kept_second = kept.positions[kept.get_tags() == 1]
    inside = np.linalg.norm(kept_second - (pair.centers[0] * 10 + shift), axis=1) < 10.0
    assert dropped == np.count_nonzero(inside)


def test_to_atoms_is_deterministic(pair):
    a = heteroagg.to_atoms(pair, 123, random_offset=True, threads=np.int64(1), vacuum=np.int64(5))
    b = heteroagg.to_atoms(pair, 123, random_offset=True, threads=2**40)  # more than cores
    c = heteroagg.to_atoms(pair, 124, random_offset=True)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.numbers, b.numbers)
    assert len(a) != len(c) or not np.array_equal(a.positions, c.positions)


def test_without_rotation_crystal_axes_are_the_frame_axes():
    agg = Aggregate([[0.0, 0.0, 0.0]], [1.0], [0])
    atoms = heteroagg.to_atoms(agg, 0, rotation=False, vacuum=0.0)
    ti = atoms.positions[atoms.numbers == 22] - 10.0  # lattice points of anatase
    frac = ti @ np.linalg.inv(ANATASE.lattice())
    # Ti sits on the I-centred lattice: fractional coordinates are multiples of 1/4
    np.testing.assert_allclose(frac * 4, np.round(frac * 4), atol=1e-9)


def test_structure_choices(pair):
    rutile = heteroagg.to_atoms(pair, 1, tio2="rutile")
    assert rutile.info["tio2_structure"] == "rutile"
    from ase.build import bulk

    silicon = bulk("Si", "diamond", a=5.431, cubic=True)
    ball = Aggregate([[0.0, 0.0, 0.0]], [3.0], [0])
    atoms = heteroagg.to_atoms(ball, 1, structure=silicon)
    assert set(atoms.get_chemical_symbols()) == {"Si"}
    assert len(atoms) == pytest.approx(4.0 / 3.0 * math.pi * 30.0**3 * 8 / 5.431**3, rel=0.02)
    named = heteroagg.to_atoms(pair, 1, structure="rutile")
    assert set(named.get_chemical_symbols()) == {"Ti", "O"}
    custom = CrystalStructure(
        "cubic-W", "W", "Im-3m", (3.165, 3.165, 3.165, 90, 90, 90), (("W", (0, 0, 0)),),
        ("x,y,z",), ((0, 0, 0), (0.5, 0.5, 0.5)),
    )  # fmt: skip
    assert set(heteroagg.to_atoms(pair, 1, wo3=custom).get_chemical_symbols()) == {"Ti", "O", "W"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tio2": "brookite"}, "unknown tio2 structure"),
        ({"wo3": "anatase"}, "unknown wo3 structure"),
        ({"structure": "quartz"}, "unknown structure"),
        ({"vacuum": -1.0}, "vacuum"),
        ({"vacuum": float("nan")}, "vacuum"),
        ({"threads": 0}, "threads"),
        ({"threads": 1.5}, "threads"),
        ({"threads": True}, "threads"),
        ({"vacuum": True}, "vacuum"),
        ({"tio2": 3.5}, "tio2 must be"),
    ],
)
def test_to_atoms_bad_input(pair, kwargs, message):
    with pytest.raises(ValueError, match=message):
        heteroagg.to_atoms(pair, 0, **kwargs)


def test_to_atoms_rejects_non_aggregates_and_bad_cells(pair):
    with pytest.raises(ValueError, match="Aggregate"):
        heteroagg.to_atoms(np.zeros((3, 3)), 0)
    with pytest.raises(ValueError, match="seed"):
        heteroagg.to_atoms(pair, -1)
    molecule = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    with pytest.raises(ValueError, match="periodic"):
        heteroagg.to_atoms(pair, 0, structure=molecule)


def test_default_displacements():
    assert DEFAULT_MSD["Ti"] == pytest.approx(0.006067, abs=1e-6)
    assert DEFAULT_MSD["O"] == pytest.approx(0.004633, abs=1e-6)
    # high-temperature limit of the Debye model: 3 hbar^2 T / (m k Theta^2)
    classical = 3 * 1.054571817e-34**2 * 3000 / (183.84 * 1.66053906660e-27 * 1.380649e-23 * 400**2)
    assert debye_msd(183.84, 400.0, 3000.0) == pytest.approx(classical * 1e20, rel=2e-3)
    # zero-point limit, 3 hbar^2 / (4 m k Theta), also far below Theta / 709 where e^t overflows
    zero_point = 3 * 1.054571817e-34**2 / (4 * 183.84 * 1.66053906660e-27 * 1.380649e-23 * 400)
    for temperature in (1.0, 0.5, 0.01):
        assert debye_msd(183.84, 400.0, temperature) == pytest.approx(zero_point * 1e20, rel=1e-4)
    assert DEFAULT_SIGMAS["W"] == pytest.approx(
        math.sqrt(debye_msd(183.84, 400.0, 293.0)), rel=1e-8
    )
    assert DEFAULT_MSD["C"] == pytest.approx(debye_msd(12.011, 2230.0, 293.0), rel=1e-8)
    for element, sigma in DEFAULT_SIGMAS.items():
        b = 8 * math.pi**2 * sigma**2
        assert 0.05 < b < 1.0, element


@pytest.fixture(scope="module")
def grain():
    agg = Aggregate([[0.0, 0.0, 0.0], [2.2, 0.0, 0.0]], [1.2, 1.0], [0, 1])
    return heteroagg.to_atoms(agg, 0)


def test_frozen_phonon_statistics(grain):
    configs = heteroagg.frozen_phonons(grain, 4, seed=9)
    assert len(configs) == 4
    symbols = np.array(grain.get_chemical_symbols())
    displacements = np.concatenate([c.positions - grain.positions for c in configs])
    elements = np.tile(symbols, 4)
    for element in ("Ti", "O", "W"):
        d = displacements[elements == element]
        sigma = DEFAULT_SIGMAS[element]
        rms = np.sqrt(np.mean(d**2, axis=0))
        tolerance = 5 * sigma / math.sqrt(2 * len(d))  # 5 standard errors of the RMS
        np.testing.assert_allclose(rms, sigma, atol=tolerance)
        np.testing.assert_allclose(d.mean(axis=0), 0.0, atol=5 * sigma / math.sqrt(len(d)))


def test_frozen_phonons_are_pure_and_lazy(grain):
    configs = heteroagg.frozen_phonons(grain, 3, sigmas=0.1, seed=4)
    again = heteroagg.frozen_phonons(grain, 10, sigmas=0.1, seed=4)
    np.testing.assert_array_equal(configs[2].positions, again[2].positions)
    np.testing.assert_array_equal(configs[-1].positions, configs[2].positions)
    assert not np.array_equal(configs[0].positions, configs[1].positions)
    other = heteroagg.frozen_phonons(grain, 3, sigmas=0.1, seed=5)
    assert not np.array_equal(configs[0].positions, other[0].positions)
    assert len(configs[0:2]) == 2 and configs[1].info["frozen_phonon_index"] == 1
    np.testing.assert_array_equal(configs[0].numbers, grain.numbers)
    np.testing.assert_allclose(configs.sigmas, 0.1)
    with pytest.raises(IndexError):
        configs[3]


def test_frozen_phonons_per_element_sigmas(grain):
    configs = heteroagg.frozen_phonons(grain, 1, sigmas={"Ti": 0.0, "O": 0.0, "W": 0.2})
    moved = np.any(configs[0].positions != grain.positions, axis=1)
    np.testing.assert_array_equal(moved, grain.numbers == 74)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"n": 0}, "n must be"),
        ({"n": 2, "sigmas": -0.1}, "finite and >= 0"),
        ({"n": 2, "sigmas": {"Ti": 0.1}}, "no displacement sigma"),
        ({"n": 2, "sigmas": "big"}, "number"),
        ({"n": 2, "seed": 2**64}, "seed"),
    ],
)
def test_frozen_phonons_bad_input(grain, args, message):
    with pytest.raises(ValueError, match=message):
        heteroagg.frozen_phonons(grain, **args)


def test_aggregates_too_large_to_fill_are_refused_before_filling(monkeypatch):
    from heteroagg import atoms as atoms_module

    agg = heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=12), 3)
    filled = len(agg.to_atoms(seed=1, drop_overlaps=False))
    # the estimate from the volumes and the crystals' densities is within 10 % of the count
    monkeypatch.setattr(atoms_module, "MAX_ATOMS", 1.1 * filled)
    assert len(agg.to_atoms(seed=1, drop_overlaps=False)) == filled
    monkeypatch.setattr(atoms_module, "MAX_ATOMS", 0.9 * filled)
    with pytest.raises(ValueError, match="would hold about"):
        agg.to_atoms(seed=1, drop_overlaps=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"would hold about 3\.69e\+14"):
        Aggregate([[0, 0, 0]], [1e4], [0]).to_atoms()


def test_debye_and_carbon_models_refuse_unphysical_input():
    for args in ((183.84, -5.0), (183.84, 0.0), (0.0, 400.0), (183.84, 400.0, math.nan)):
        with pytest.raises(ValueError, match="must be a positive number"):
            debye_msd(*args)
    assert debye_msd(np.float32(183.84), 400) == pytest.approx(debye_msd(183.84, 400.0), rel=1e-6)
    from heteroagg.structures import amorphous_carbon

    for kwargs in ({"side": math.inf}, {"density": math.inf}, {"side": -1.0}):
        with pytest.raises(ValueError, match="positive and finite"):
            amorphous_carbon(**kwargs)


def test_structures_of_other_elements():
    # rock-salt MgO, a = 4.212 Å: 4 formula units per cell, 3.58 g/cm^3
    mgo = CrystalStructure(
        "periclase", "MgO", "Fm-3m (225)", (4.212, 4.212, 4.212, 90, 90, 90),
        (("Mg", (0.0, 0.0, 0.0)), ("O", (0.5, 0.5, 0.5))), ("x,y,z",),
        centring=((0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)),
    )  # fmt: skip
    expected = 4 * (ase.data.atomic_masses[12] + 15.999) / 6.02214076e23 / 4.212**3 * 1e24
    assert mgo.density == pytest.approx(expected, rel=1e-6)
    assert mgo.density == pytest.approx(3.58, abs=0.01)
    _, _, numbers = mgo.unit_cell()
    assert sorted(numbers) == [8] * 4 + [12] * 4
    atoms = heteroagg.to_atoms(Aggregate([[0, 0, 0]], [1.0], [0]), 0, tio2=mgo)
    assert set(atoms.get_chemical_symbols()) == {"Mg", "O"}
    with pytest.raises(ValueError, match="unknown chemical symbol 'Xx'"):
        CrystalStructure("x", "Xx", "P1", (3, 3, 3, 90, 90, 90), (("Xx", (0, 0, 0)),), ("x,y,z",))


def test_amorphous_carbon_too_small_for_one_atom():
    from heteroagg.structures import amorphous_carbon

    with pytest.raises(ValueError, match="no whole carbon atom"):
        amorphous_carbon(side=1.0)
    assert len(amorphous_carbon(side=3.0)) == round(2.0 / 12.011 * 6.02214076e23 * 27e-24)
