"""heteroagg.stem.calibrate: multislice thickness LUTs."""

import math

import numpy as np
import pytest

ase = pytest.importorskip("ase")

from heteroagg.rng import derive_seed  # noqa: E402
from heteroagg.stem import calibrate, haadf_multislice  # noqa: E402
from heteroagg.stem.calibration import (  # noqa: E402
    _unit_cell,
    calibration_inputs,
    crystal_slab,
    largest_sampling,
)

# A low-angle detector allows a coarse sampling: a few seconds per LUT.
FAST = dict(
    energy=300e3, semiangle=20.0, detector=(30.0, 80.0), thickness_max=2.0, orientations=2,
    positions=1, slice_thickness=2.0, lateral_size=16.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def tio2_lut():
    return calibrate("TiO2", **FAST)


def test_lut_shape_and_inputs(tio2_lut):
    lut = tio2_lut
    np.testing.assert_allclose(lut.thickness, np.arange(11) * 0.2)
    assert lut.samples.shape == (2, 11) and lut.mean[0] == 0.0
    assert np.all(np.diff(lut.mean) > 0)
    np.testing.assert_allclose(lut.mean, lut.samples.mean(axis=0))
    np.testing.assert_allclose(lut.std, lut.samples.std(axis=0, ddof=1))
    inputs = lut.inputs
    assert inputs["material"] == "TiO2" and "anatase" in inputs["structure"]
    assert inputs["detector"] == {"kind": "annular", "inner_mrad": 30.0, "outer_mrad": 80.0}
    assert inputs["sampling_A"] == pytest.approx(0.98 * largest_sampling(300e3, 80.0))
    assert inputs["slice_thickness_A"] == 2.0 and inputs["orientations"] == 2


def test_exit_planes_equal_thinner_slabs():
    """Each tabulated thickness equals a separate run through a slab cut that thin."""
    static = calibrate("TiO2", **FAST, phonon_sigmas=0.0)  # no displacements to redraw
    _, cell, _ = _unit_cell("TiO2")
    seed = derive_seed(0, 1)  # orientation 1 of the fixture
    lateral, depth = 16.0, 20.0
    xyz, numbers = crystal_slab(cell, lateral, depth, seed)
    xyz[:, :2] = np.mod(xyz[:, :2] - lateral / 2, lateral)
    keep = xyz[:, 2] < 8.0  # the first four slices
    atoms = ase.Atoms(numbers=numbers[keep], positions=xyz[keep], cell=[lateral, lateral, 8.0])
    thin = haadf_multislice(
        atoms, energy=300e3, semiangle=20.0, detector=(30.0, 80.0),
        sampling=0.98 * largest_sampling(300e3, 80.0), slice_thickness=2.0,
        scan_sampling=lateral / round(lateral / 1.37), frozen_phonons=1,
        phonon_sigmas=0.0, scan_limit=(1, 1), device="cpu",
    )  # fmt: skip
    assert thin[0, 0] == pytest.approx(static.samples[1, 4], rel=1e-5)


def test_slab_fills_its_box_at_the_crystal_density():
    _, cell, _ = _unit_cell("WO3")
    xyz, numbers = crystal_slab(cell, 20.0, 30.0, seed=5)
    assert np.all((xyz >= 0) & (xyz < [20.0, 20.0, 30.0]))
    lattice = cell[0]
    expected = len(cell[2]) / abs(np.linalg.det(lattice)) * 20 * 20 * 30
    assert abs(len(xyz) - expected) < 0.03 * expected
    assert set(np.unique(numbers)) == {8, 74}


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    path = tmp_path / "tio2.checkpoint.npz"
    kw = dict(FAST, thickness_max=1.0)
    calibrate("TiO2", **dict(kw, orientations=2), checkpoint=path)  # then "killed"
    resumed = calibrate("TiO2", **dict(kw, orientations=3), checkpoint=path)
    fresh = calibrate("TiO2", **dict(kw, orientations=3))
    np.testing.assert_array_equal(resumed.samples, fresh.samples)
    with pytest.raises(ValueError, match="other inputs"):
        calibrate("TiO2", **dict(kw, orientations=3, semiangle=25.0), checkpoint=path)


def test_any_ase_structure_calibrates():
    from heteroagg.structures import RUTILE

    lut = calibrate(RUTILE.to_atoms(), **dict(FAST, thickness_max=0.8))
    assert lut.material == "O4Ti2" and lut.mean[-1] > 0
    assert "ase.Atoms" in lut.inputs["structure"]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(orientations=1), "orientations must be an integer >= 2"),
        (dict(frozen_phonons=0), "frozen_phonons must be an integer >= 1"),
        (dict(thickness_max=-1.0), "thickness_max must be a positive"),
        (dict(thickness_max=math.nan), "thickness_max must be a positive"),
        (dict(slice_thickness=30.0), "exceeds thickness_max"),
        (dict(seed=-1), "seed must be"),
        (dict(lateral_size=1.0), "lateral_size"),
        (dict(energy=300.0), "energy is in eV"),  # keV given for eV
        (dict(energy=5e6), "energy is in eV"),
        (dict(memory_limit=0.0), "memory_limit must be positive"),
        (dict(memory_limit=1e6), r"potentials need [\d.e-]+ GB, above memory_limit"),
        (dict(phonon_sigmas={"Ti": 0.1}), "no displacement sigma for element 'O'"),
        (dict(phonon_sigmas={"Ti": -0.1, "O": 0.1}), "sigma for Ti must be finite and >= 0"),
        (dict(phonon_sigmas=math.inf), "sigma for all atoms must be finite"),
        (dict(parametrization="peng"), "parametrization must be 'lobato' or 'kirkland'"),
        (dict(sampling=0.1), "the detector reaches 80 mrad, but sampling 0.1"),
        (dict(device="gpu"), "device must be 'auto', 'cpu' or 'cuda'"),
    ],
)
def test_bad_input_is_refused(change, message):
    # before any multislice, and by calibration_inputs too, which a run of several
    # materials uses to check them all before the first starts
    with pytest.raises(ValueError, match=message):
        calibration_inputs("TiO2", **dict(FAST, **change))
    with pytest.raises(ValueError, match=message):
        calibrate("TiO2", **dict(FAST, **change))


def test_the_band_limit_is_checked_on_the_grid_the_multislice_runs_on():
    # a sampling just coarser than the detector allows, which the slab's whole number of
    # pixels makes fine enough: the multislice accepts it, so the pre-check must too
    from heteroagg import _core

    coarse = 1.015 * largest_sampling(300e3, 80.0)
    side = int(_core.next_fft_size(math.ceil(16.0 / coarse - 1e-9)))
    assert _core.band_limit_angle((16.0 / side,) * 2, 300e3) >= 80.0
    assert calibration_inputs("TiO2", **dict(FAST, sampling=coarse))["sampling_A"] == coarse


def test_unknown_material_and_cuda():
    with pytest.raises(ValueError, match="unknown material"):
        calibrate("Au", **FAST)
    with pytest.raises(RuntimeError, match="cuda"):
        calibrate("TiO2", device="cuda", **FAST)
