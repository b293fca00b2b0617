import math
import os
import subprocess
import sys

import numpy as np
import pytest

import reference_stem as ref
from heteroagg import _core
from heteroagg.stem import AnnularDetector, Probe, SensitivityDetector
from heteroagg.stem.multislice import exit_plane_counts, simulation_grid

ENERGY = 200e3


def run_core(potentials, thickness, sampling, detector, positions, planes=None, window=(0, 0)):
    planes = planes or [len(thickness)]
    return _core.multislice(
        np.asarray(potentials, np.float32),
        list(thickness),
        sampling,
        ENERGY,
        20.0,
        [],
        [detector.to_core()],
        planes,
        window,
        np.asarray(positions, float),
        1,
        None,
    )


def smooth_potential(seed, gpts, slices):
    """Random, band-limited potentials of a few hundred V·Å."""
    g = np.random.default_rng(seed)
    field = g.normal(size=(slices, *gpts))
    ky = np.fft.fftfreq(gpts[0])[:, None]
    kx = np.fft.fftfreq(gpts[1])[None, :]
    smooth = np.exp(-((kx**2 + ky**2) / 0.02))
    v = np.fft.ifft2(np.fft.fft2(field) * smooth).real
    return (np.abs(v) / np.abs(v).max() * 300.0).astype(np.float32)


def test_wavelength_and_interaction_constant_match_textbook_values():
    # Kirkland (2010) Table 2.2: 200 kV 0.02508 Å, 300 kV 0.01969 Å
    assert _core.electron_wavelength(200e3) == pytest.approx(0.025079, abs=2e-6)
    assert _core.electron_wavelength(300e3) == pytest.approx(0.019687, abs=2e-6)
    for energy in (80e3, 200e3, 300e3):
        assert _core.electron_wavelength(energy) == pytest.approx(ref.wavelength(energy), rel=1e-12)
        assert _core.interaction_constant(energy) == pytest.approx(ref.sigma(energy), rel=1e-12)


def test_probe_is_normalised_and_matches_the_reference():
    probe = Probe(energy=ENERGY, semiangle=20.0, defocus=50.0, cs=1e5)
    psi = probe.reciprocal((96, 80), (0.1, 0.12))
    assert np.sum(np.abs(psi) ** 2) == pytest.approx(1.0, rel=1e-6)
    expected = ref.probe((96, 80), (0.1, 0.12), ENERGY, 20.0, (0, 0), defocus=50.0, cs=1e5)
    np.testing.assert_allclose(psi, expected, atol=2e-6)


def test_vacuum_sends_everything_into_the_bright_field():
    sampling = (0.08, 0.08)
    v = np.zeros((3, 64, 64), np.float32)
    bright = run_core(v, [2.0] * 3, sampling, AnnularDetector(0, 30.0), [[2.0, 3.0]])
    dark = run_core(v, [2.0] * 3, sampling, AnnularDetector(30.0, 100.0), [[2.0, 3.0]])
    assert bright[0, 0, 0] == pytest.approx(1.0, abs=1e-5)
    assert dark[0, 0, 0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "detector", [AnnularDetector(15.0, 70.0), SensitivityDetector([5, 40, 75], [0, 1, 0.3])]
)
@pytest.mark.parametrize("gpts", [(72, 80), (75, 98)])  # the second leaves partial blocks of 8
def test_multislice_matches_the_numpy_reference(detector, gpts):
    sampling = (0.1, 0.09)
    v = smooth_potential(1, gpts, 4)
    thickness = [1.5, 2.0, 2.0, 1.0]
    position = (3.1, 2.7)
    got = run_core(v, thickness, sampling, detector, [position], planes=[1, 2, 3, 4])[:, 0, 0]
    expected = ref.multislice_intensity(
        v.astype(float), thickness, sampling, ENERGY, 20.0, detector.weight, position
    )
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)


def test_window_converges_to_the_full_cell():
    sampling = (0.1, 0.1)
    v = smooth_potential(2, (160, 160), 3)
    # a continuous sensitivity: hard annulus edges would add a pixelation error that
    # depends on the reciprocal sampling, which differs between window and cell
    det = SensitivityDetector([30, 45, 65, 80], [0, 1, 1, 0])
    positions = [[4.0, 5.0], [11.0, 13.5]]
    full = run_core(v, [2.0] * 3, sampling, det, positions)[0, 0]
    errors = []
    for w in (48, 80, 128):
        windowed = run_core(v, [2.0] * 3, sampling, det, positions, window=(w, w))[0, 0]
        errors.append(np.max(np.abs(windowed - full) / full))
    # the probe's aperture tails decay slowly, so convergence is gradual
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3


def test_exit_planes_match_truncated_stacks():
    sampling = (0.1, 0.1)
    v = smooth_potential(3, (64, 64), 5)
    det = AnnularDetector(20.0, 80.0)
    series = run_core(v, [2.0] * 5, sampling, det, [[3.0, 3.0]], planes=[2, 5])[:, 0, 0]
    two = run_core(v[:2], [2.0] * 2, sampling, det, [[3.0, 3.0]])[0, 0, 0]
    five = run_core(v, [2.0] * 5, sampling, det, [[3.0, 3.0]])[0, 0, 0]
    assert series[0] == pytest.approx(two, rel=1e-6)
    assert series[1] == pytest.approx(five, rel=1e-6)


def test_threads_do_not_change_the_result():
    sampling = (0.1, 0.1)
    v = smooth_potential(4, (64, 64), 2)
    positions = np.random.default_rng(0).uniform(0, 6, (9, 2))
    args = (
        v,
        [2.0, 2.0],
        sampling,
        200e3,
        20.0,
        [],
        [AnnularDetector(20, 80).to_core()],
        [2],
        (0, 0),
        positions,
    )
    one = _core.multislice(*args, 1, None)
    many = _core.multislice(*args, 3, None)
    np.testing.assert_array_equal(one, many)


def test_more_threads_than_probe_positions_cost_no_more_memory():
    """A workspace per thread that runs (2 here), not per thread asked for: 200 000
    workspaces of a 64² window would need over 10 GB, beyond the 3 GB allowed."""
    script = (
        "import resource, numpy as np\n"
        "from heteroagg import _core\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "v = np.random.default_rng(0).random((3, 128, 128)).astype(np.float32)\n"
        "args = (v, [2.0] * 3, (0.05, 0.05), 300e3, 20.0, [], [(40.0, 120.0, [], [])], [3],\n"
        "        (64, 64), np.array([[1.0, 1.0], [2.0, 2.0]]))\n"
        "np.testing.assert_array_equal(_core.multislice(*args, 1, None),\n"
        "                              _core.multislice(*args, 200000, None))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_fast_window_sizes_are_fft_sizes_at_or_above_n():
    from heteroagg.stem.multislice import fast_window_size

    for n in range(1, 3000, 7):
        m = fast_window_size(n)
        assert m >= n and _core.next_fft_size(m) == m
        assert m < 2 * n + 2  # never far above
    assert fast_window_size(368) == 384


def test_progress_reports_and_a_raising_callback_stops_the_run():
    v = smooth_potential(5, (64, 64), 2)
    positions = np.random.default_rng(1).uniform(0, 6, (40, 2))
    det = [AnnularDetector(20, 80).to_core()]
    seen = []
    _core.multislice(
        v, [2.0, 2.0], (0.1, 0.1), 200e3, 20.0, [], det, [2], (0, 0), positions, 2, seen.append
    )
    assert seen and seen[-1] == 40 and seen == sorted(seen)

    class Stop(Exception):
        pass

    def stop(done):
        raise Stop(done)

    with pytest.raises(Stop):
        _core.multislice(
            v, [2.0, 2.0], (0.1, 0.1), 200e3, 20.0, [], det, [2], (0, 0), positions, 2, stop
        )


def test_exit_plane_counts():
    assert exit_plane_counts(None, 7) == [7]
    assert exit_plane_counts(3, 7) == [3, 6, 7]
    assert exit_plane_counts([5, 2, 2], 7) == [2, 5]
    for bad in (0, [0], [8], [2.5], [True]):  # a fraction is not a slice count
        with pytest.raises(ValueError):
            exit_plane_counts(bad, 7)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"scan_limit": (1.5, 2)}, "scan_limit must lie within"),
        ({"scan_limit": 3}, "scan_limit must lie within"),
        ({"memory_limit": None}, "memory_limit must be positive"),
        ({"seed": -1}, "seed must be an integer"),  # also without phonons to draw
        ({"seed": 2.5, "frozen_phonons": 0}, "seed must be an integer"),
    ],
)
def test_multislice_options_out_of_contract_are_refused(option, message):
    from ase import Atoms

    from heteroagg.stem import haadf_multislice

    atoms = Atoms("Au", positions=[[8, 8, 1]], cell=[16, 16, 2])
    settings = dict(energy=300e3, semiangle=20, sampling=0.1, slice_thickness=2,
                    scan_sampling=2.0, detector=(40, 60))  # fmt: skip
    with pytest.raises(ValueError, match=message):
        haadf_multislice(atoms, device="cpu", **settings, **option)


class Cell:
    """A minimal stand-in for ase.Atoms: what the grid needs."""

    def __init__(self, cell):
        self.cell = np.asarray(cell, float)


def test_simulation_grid_follows_abtem_scan_and_slicing():
    grid = simulation_grid(
        Cell(np.diag([10.0, 12.0, 7.0])), sampling=0.05, slice_thickness=2.0, scan_sampling=0.7
    )
    assert grid.gpts == (_core.next_fft_size(240), _core.next_fft_size(200))
    assert grid.slice_thickness == pytest.approx((7.0 / 4,) * 4)
    assert grid.scan_gpts == (math.ceil(12 / 0.7), math.ceil(10 / 0.7))
    assert grid.scan_sampling == pytest.approx((12 / 18, 10 / 15))
    with pytest.raises(ValueError, match=r"needs a grid of 10000000000000 x .* sample it more"):
        simulation_grid(Cell(np.diag([10.0, 12.0, 7.0])), sampling=1.2e-12, slice_thickness=2.0,
                        scan_sampling=0.7)  # fmt: skip
    with pytest.raises(ValueError, match="orthogonal"):
        simulation_grid(
            Cell([[10, 1, 0], [0, 10, 0], [0, 0, 5]]),
            sampling=0.1,
            slice_thickness=1,
            scan_sampling=1,
        )


def test_core_rejects_inconsistent_requests():
    v = np.zeros((2, 32, 32), np.float32)
    det = [AnnularDetector(10, 50).to_core()]
    base = dict(
        potentials=v,
        thickness=[1.0, 1.0],
        sampling=(0.1, 0.1),
        energy=ENERGY,
        semiangle=20.0,
        aberrations=[],
        detectors=det,
        exit_planes=[2],
        window=(0, 0),
        positions=np.zeros((1, 2)),
    )
    for change, match in [
        ({"thickness": [1.0]}, "thickness"),
        ({"exit_planes": [3]}, "exit planes"),
        ({"window": (64, 64)}, "window"),
        ({"detectors": [AnnularDetector(10, 900).to_core()]}, "beyond the largest angle"),
        ({"positions": np.full((1, 2), np.nan)}, "finite"),
        ({"semiangle": -1.0}, "semiangle"),
    ]:
        with pytest.raises(ValueError, match=match):
            _core.multislice(**{**base, **change})


@pytest.mark.parametrize("defocus", [0.0, 500.0])
def test_auto_window_holds_a_defocused_probe(defocus):
    """A defocused probe spreads over |defocus| alpha: the automatic window must
    hold it, or the windowed image drifts from the full cell's."""
    from ase import Atoms

    from heteroagg.stem import auto_window, haadf_multislice

    atoms = Atoms("Au", positions=[[16, 16, 1]], cell=[32, 32, 2])
    settings = dict(energy=300e3, semiangle=20, sampling=0.1, slice_thickness=2,
                    scan_sampling=2.0, detector=(40, 60), defocus=defocus)  # fmt: skip
    full = haadf_multislice(atoms, window=None, device="cpu", **settings)
    windowed = haadf_multislice(atoms, window="auto", device="cpu", **settings)
    assert np.abs(windowed - full).max() < 0.01 * full.max()
    spread = 2 * defocus * 20e-3  # twice the geometric radius of the defocused probe
    assert auto_window(Probe(defocus=defocus), 2.0) >= 16.0 + spread


def test_probe_takes_numpy_numbers_and_refuses_bad_aberrations():
    plain = Probe(energy=3e5, semiangle=20.0, defocus=10.0)
    same = Probe(energy=np.float32(3e5), semiangle=np.int64(20), defocus=np.float32(10.0))
    np.testing.assert_allclose(same.reciprocal((32, 32), (0.2, 0.2)),
                               plain.reciprocal((32, 32), (0.2, 0.2)), rtol=1e-6)  # fmt: skip
    for bad in ({"x": 1.0}, {"": 1.0}, {"C12": "1"}, {"C12": True}):
        with pytest.raises(ValueError, match="aberration"):
            Probe(aberrations=bad)
    with pytest.raises(ValueError, match="energy"):
        Probe(energy=np.bool_(True))


def test_sensitivity_curves_out_of_contract_are_refused():
    for angles, weights, message in (
        ([0, 10], [0, 0], "some > 0"),
        ([0, 10], [1, -1], "weights must be >= 0"),
        ([10, 0], [1, 1], "strictly increasing"),
        ([0, 10, 20], [1, 1], "same length"),
    ):
        with pytest.raises(ValueError, match=message):
            SensitivityDetector(angles, weights)
    assert SensitivityDetector([0, 10, 20], [0, 1, 0]).max_angle == 20.0
