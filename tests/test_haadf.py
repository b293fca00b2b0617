"""heteroagg.stem.haadf_multislice: the public entry point."""

import re

import numpy as np
import pytest

ase = pytest.importorskip("ase")

from heteroagg import _core  # noqa: E402
from heteroagg.stem import AnnularDetector, SensitivityDetector, haadf_multislice  # noqa: E402
from heteroagg.validate.against_abtem import image_agreement, rutile_slab, rutile_sphere  # noqa: E402

SETTINGS = dict(energy=200e3, semiangle=20.0, sampling=0.1, slice_thickness=2.0, scan_sampling=1.5)


def small_particle():
    return rutile_sphere(5.0, 16.0)


def test_image_shape_and_range():
    atoms = small_particle()
    image = haadf_multislice(atoms, detector=(30, 80), **SETTINGS)
    assert image.shape == (11, 11)
    assert np.all(image >= 0) and np.all(image < 1)
    # the particle sits in the middle of the cell: brighter there than in the vacuum corner
    assert image[5, 5] > 10 * image[0, 0]


def test_exit_planes_end_with_the_full_thickness():
    atoms = small_particle()
    series = haadf_multislice(atoms, detector=(30, 80), exit_planes=2, **SETTINGS)
    final = haadf_multislice(atoms, detector=(30, 80), **SETTINGS)
    assert series.shape == (4, 11, 11)
    np.testing.assert_allclose(series[-1], final, rtol=1e-6)
    # the HAADF signal of the particle grows with thickness
    assert np.all(np.diff(series[:, 5, 5]) >= 0)


def test_tiles_match_one_periodic_stack():
    # a memory limit below the whole-cell stack (400^2 x 20 slices) forces tiles
    # smaller than the cell; each tile band-limits its own transmission
    # functions, whose ringing from the tile edges stays far below the signal
    atoms = rutile_sphere(5.0, 40.0)
    kw = dict(SETTINGS, scan_sampling=2.5)
    whole = haadf_multislice(atoms, detector=(30, 80), window=8.0, **kw)
    tiled = haadf_multislice(atoms, detector=(30, 80), window=8.0, memory_limit=2e7, **kw)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-3 * whole.max())
    assert image_agreement(tiled, whole)["ncc"] > 0.99999


def test_window_is_close_to_the_full_cell():
    atoms = small_particle()
    full = haadf_multislice(atoms, detector=(30, 80), **SETTINGS)
    windowed = haadf_multislice(atoms, detector=(30, 80), window="auto", **SETTINGS)
    agreement = image_agreement(windowed, full)
    assert agreement["ncc"] > 0.999


def test_sensitivity_detector_between_its_annular_bounds():
    atoms = rutile_slab((2, 2, 2))
    kw = dict(SETTINGS, scan_sampling=3.0)
    wide = haadf_multislice(atoms, detector=(30, 80), **kw)
    curve = haadf_multislice(
        atoms, detector=SensitivityDetector([30, 50, 60, 80], [0, 1, 1, 0]), **kw
    )
    narrow = haadf_multislice(atoms, detector=AnnularDetector(50, 60), **kw)
    assert np.all(narrow <= curve) and np.all(curve <= wide)


def test_frozen_phonons_average_is_seeded():
    atoms = rutile_slab((2, 2, 1))
    kw = dict(SETTINGS, scan_sampling=3.0)
    a = haadf_multislice(atoms, detector=(30, 80), frozen_phonons=2, seed=1, **kw)
    b = haadf_multislice(atoms, detector=(30, 80), frozen_phonons=2, seed=1, **kw)
    c = haadf_multislice(atoms, detector=(30, 80), frozen_phonons=2, seed=2, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_input_gets_clear_errors():
    atoms = small_particle()
    with pytest.raises(ValueError, match=r"allows at most .* mrad"):
        haadf_multislice(atoms, detector=(50, 400), **SETTINGS)
    with pytest.raises(ValueError, match="empty"):
        haadf_multislice(atoms[:0], detector=(30, 80), **SETTINGS)
    with pytest.raises(ValueError, match="sampling"):
        haadf_multislice(atoms, detector=(30, 80), **{**SETTINGS, "sampling": -0.1})
    with pytest.raises(ValueError, match="parametrization"):
        haadf_multislice(atoms, detector=(30, 80), parametrization="doyle", **SETTINGS)
    strange = atoms.copy()
    strange.numbers[0] = 0
    with pytest.raises(ValueError, match="atomic numbers"):
        haadf_multislice(strange, detector=(30, 80), **SETTINGS)
    with pytest.raises(ValueError, match="window"):
        haadf_multislice(atoms, detector=(30, 80), window="huge", **SETTINGS)
    with pytest.raises(ValueError, match="full-cell potential needs"):
        haadf_multislice(atoms, detector=(30, 80), memory_limit=1e6, **SETTINGS)
    with pytest.raises(ValueError, match="smaller than the probe window"):
        haadf_multislice(atoms, detector=(30, 80), window=40.0, **SETTINGS)
    with pytest.raises(ValueError, match="detector"):
        haadf_multislice(atoms, detector="haadf", **SETTINGS)
    # a probe wider than the band limit would lose its outer part unseen
    with pytest.raises(ValueError, match=r"the probe aperture reaches 150 mrad"):
        haadf_multislice(atoms, detector=(30, 80), **{**SETTINGS, "semiangle": 150.0})
    # the Gaussian source blurs on the scan grid, which must resolve it
    with pytest.raises(ValueError, match=r"use scan_sampling <= 0\.5 Å"):
        haadf_multislice(atoms, detector=(30, 80), source_size=0.5, **SETTINGS)
    # a window smaller than the probe's tails is taken, but not silently
    with pytest.warns(RuntimeWarning, match="cuts the probe's tails"):
        haadf_multislice(atoms, detector=(30, 80), window=8.0, **SETTINGS)


def test_the_suggested_sampling_is_accepted():
    atoms = small_particle()
    with pytest.raises(ValueError, match=r"use sampling <= ([0-9.]+) Å") as refused:
        haadf_multislice(atoms, detector=(50, 300), **SETTINGS)
    finer = float(re.search(r"use sampling <= ([0-9.]+) Å", str(refused.value)).group(1))
    settings = {**SETTINGS, "sampling": finer, "scan_sampling": 4.0}
    assert haadf_multislice(atoms, detector=(50, 300), **settings).max() > 0


def test_grid_is_fft_friendly():
    assert _core.next_fft_size(160) == 160  # 2^5 * 5
    assert _core.next_fft_size(1181) == 1200  # 2^4 * 3 * 5^2; nothing 7-smooth in between


def test_kirkland_parametrization_gives_a_close_but_distinct_image():
    atoms = small_particle()
    lobato = haadf_multislice(atoms, detector=(30, 80), **SETTINGS)
    kirkland = haadf_multislice(atoms, detector=(30, 80), parametrization="kirkland", **SETTINGS)
    assert not np.array_equal(lobato, kirkland)
    assert image_agreement(kirkland, lobato)["ncc"] > 0.99
