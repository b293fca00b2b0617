import numpy as np
import pytest

import reference_stem as ref
from heteroagg import _core
from heteroagg.stem.parametrization import projected_potential_fourier


def random_atoms(seed, n, box):
    g = np.random.default_rng(seed)
    positions = g.uniform(0, 1, (n, 3)) * box
    numbers = g.choice([8, 22, 74], size=n).astype(np.int32)
    return positions, numbers


def core_potentials(positions, numbers, gpts, sampling, edges, origin=(0.0, 0.0), **kw):
    return _core.projected_potentials(
        positions,
        numbers,
        gpts,
        sampling,
        origin,
        list(edges),
        kw.pop("parametrization", "lobato"),
        kw.pop("pixel_correction", True),
        kw.pop("threads", 1),
    )


def test_slice_potentials_match_the_numpy_reference():
    box = np.array([9.0, 8.0, 6.0])
    positions, numbers = random_atoms(0, 40, box)
    gpts, sampling = (96, 90), (8.0 / 96, 9.0 / 90)
    edges = [0.0, 2.0, 4.0, 6.0]
    got = core_potentials(positions, numbers, gpts, sampling, edges)

    def form(z, k2):
        return projected_potential_fourier(int(z), np.sqrt(k2))

    for s in range(3):
        inside = (positions[:, 2] >= edges[s] - 1e-12) & (positions[:, 2] < edges[s + 1] - 1e-12)
        expected = ref.projected_potential(positions[inside], numbers[inside], gpts, sampling, form)
        np.testing.assert_allclose(got[s], expected, rtol=0, atol=2e-4 * np.abs(expected).max())


def test_one_atom_integrates_to_its_forward_scattering():
    # the pixel sum of a projected potential is F(k = 0) / pixel area
    gpts, sampling = (64, 64), (0.1, 0.1)
    v = core_potentials(
        np.array([[3.1, 2.7, 0.5]]), np.array([22], np.int32), gpts, sampling, [0, 1]
    )
    f0 = projected_potential_fourier(22, np.array([0.0]))[0]
    assert v.sum() * 0.01 == pytest.approx(f0, rel=1e-4)


def test_atoms_are_sliced_by_depth_and_wrap_laterally():
    gpts, sampling = (48, 48), (0.1, 0.1)
    positions = np.array(
        [[1.0, 1.0, -3.0], [1.0, 1.0, 2.0], [1.0, 1.0, 9.0], [1.0 + 4.8, 1.0 - 4.8, 4.0]]
    )
    numbers = np.full(4, 8, np.int32)
    v = core_potentials(positions, numbers, gpts, sampling, [0.0, 2.0, 4.0])
    single = core_potentials(positions[:1] * [1, 1, 0], numbers[:1], gpts, sampling, [0.0, 2.0])[0]
    # below the first edge -> slice 0; z = 2 (on an edge) -> slice 1; beyond the last -> slice 1
    np.testing.assert_allclose(v[0], single, atol=1e-5 * single.max())
    np.testing.assert_allclose(v[1], 3 * single, atol=1e-4 * single.max())


def test_potential_input_errors():
    gpts, sampling = (16, 16), (0.1, 0.1)
    ok = (np.zeros((1, 3)), np.array([8], np.int32))
    with pytest.raises(ValueError):
        core_potentials(*ok, gpts, sampling, [0.0, 1.0], parametrization="nope")
    with pytest.raises(ValueError):
        core_potentials(ok[0], np.array([200], np.int32), gpts, sampling, [0.0, 1.0])
    with pytest.raises(ValueError):
        core_potentials(*ok, gpts, sampling, [1.0, 0.0])
    with pytest.raises(ValueError):
        core_potentials(np.full((1, 3), np.nan), ok[1], gpts, sampling, [0.0, 1.0])
    # far beyond 2^53 pixels the periodic wrap would land outside the grid
    for far in ([[2.4e16, 0.0, 0.5]], [[0.0, -7.8e27, 0.5]]):
        with pytest.raises(ValueError, match="within 2\\^50 pixels of the origin"):
            core_potentials(np.array(far), ok[1], gpts, sampling, [0.0, 1.0])
    # within that range the wrap is exact: a whole number of cells away is the same atom
    near = core_potentials(np.array([[0.35, 0.55, 0.5]]), ok[1], gpts, sampling, [0.0, 1.0])
    shifted = np.array([[0.35 + 1.6 * 2**30, 0.55 - 1.6 * 2**20, 0.5]])
    away = core_potentials(shifted, ok[1], gpts, sampling, [0.0, 1.0])
    np.testing.assert_allclose(away, near, atol=1e-4 * near.max())


def test_matches_abtem_infinite_projection():
    abtem = pytest.importorskip("abtem")
    from ase import Atoms

    box = np.array([8.0, 7.5, 4.0])
    positions, numbers = random_atoms(3, 25, box)
    atoms = Atoms(numbers=numbers, positions=positions, cell=box)
    potential = abtem.Potential(
        atoms, gpts=(80, 75), slice_thickness=2.0, projection="infinite", parametrization="lobato"
    )
    expected = np.asarray(potential.build(lazy=False).array, float).transpose(0, 2, 1)
    got = core_potentials(positions, numbers, (75, 80), (0.1, 0.1), [0.0, 2.0, 4.0])
    scale = np.abs(expected).max()
    assert np.max(np.abs(got - expected)) < 1e-4 * scale
