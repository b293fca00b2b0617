"""The CUDA multislice against its CPU twin (skipped without a CUDA device).

Tolerance: both paths work in single precision with different FFTs (cuFFT
against the built-in one), so intensities agree to 2e-4 of the largest
value; sums over the whole diffraction plane (the unit beam) to 1e-5.
"""

import numpy as np
import pytest

import heteroagg
from heteroagg import _core
from heteroagg.stem import haadf_multislice

CUDA = heteroagg.cuda_status()[0]
needs_cuda = pytest.mark.skipif(not CUDA, reason=heteroagg.cuda_status()[1])


def blob_potentials(slices: int, ny: int, nx: int, seed: int) -> np.ndarray:
    """Gaussian 'atoms' of random strength at random places (V·Å), periodic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ny, 0:nx]
    out = np.zeros((slices, ny, nx), dtype=np.float32)
    for s in range(slices):
        for _ in range(12):
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            dy = np.minimum(abs(y - cy), ny - abs(y - cy))
            dx = np.minimum(abs(x - cx), nx - abs(x - cx))
            out[s] += rng.uniform(100, 1500) * np.exp(-(dx**2 + dy**2) / 30.0)
    return out


def both(potentials, window, positions, **extra):
    args = dict(
        potentials=potentials,
        thickness=[2.0] * (len(potentials) - 1) + [1.5],
        sampling=(0.03, 0.025),
        energy=300e3,
        semiangle=20.0,
        aberrations=[(1, 0, -30.0, 0.0)],
        detectors=[(40.0, 150.0, [], []), (0.0, 200.0, [], [])],
        exit_planes=[2, len(potentials)],
        window=window,
        positions=positions,
    )
    from heteroagg import _cuda

    heteroagg._device.cuda_fft_extension("cuda")
    return _core.multislice(**args), _cuda.multislice(**args, **extra)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("window", [(0, 0), (48, 40)])
def test_cuda_multislice_matches_the_cpu_path(window):
    potentials = blob_potentials(5, 96, 80, seed=3)
    rng = np.random.default_rng(4)
    positions = np.column_stack([rng.uniform(-0.5, 3, 37), rng.uniform(-0.5, 3, 37)])
    cpu, gpu = both(potentials, window, positions)
    assert gpu.shape == cpu.shape == (2, 2, 37)
    np.testing.assert_allclose(gpu[:, 0], cpu[:, 0], atol=2e-4 * cpu[:, 0].max())
    # bright field and most of the dark field
    np.testing.assert_allclose(gpu[:, 1], cpu[:, 1], rtol=1e-5)
    assert cpu[:, 0].max() > 0.01  # the HAADF signal is not trivially zero


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(
    ("gpts", "window"),
    [
        ((96, 80), (64, 32)),
        ((96, 80), (32, 64)),
        ((128, 64), (0, 0)),
        ((64, 64), (8, 4)),
        ((64, 64), (2, 16)),
        ((64, 64), (16, 2)),
        ((1024, 1024), (256, 128)),
        ((1024, 1024), (512, 1024)),
        ((1024, 1024), (1024, 512)),
    ],
)
def test_fused_steps_match_the_cpu_path(gpts, window):
    """The row and column kernels against the CPU path: windows that wrap around the grid, the
    whole grid, the smallest sides (fewer columns than a column block reads), and every outer
    radix of the shared-memory FFTs (8 from 64 points up, 4 at 16 and 32, one pass below)."""
    potentials = blob_potentials(5, *gpts, seed=8)
    rng = np.random.default_rng(9)
    positions = np.column_stack([rng.uniform(-0.5, 3, 21), rng.uniform(-0.5, 3, 21)])
    cpu, gpu = both(potentials, window, positions, fused=True)
    _, unfused = both(potentials, window, positions, batch=4, fused=False)
    assert gpu.shape == cpu.shape == (2, 2, 21)
    np.testing.assert_allclose(gpu[:, 0], cpu[:, 0], atol=2e-4 * cpu[:, 0].max() + 1e-7)
    np.testing.assert_allclose(gpu[:, 1], cpu[:, 1], rtol=1e-5)
    np.testing.assert_allclose(gpu, unfused, atol=2e-4 * cpu.max())
    _, batched = both(potentials, window, positions, batch=4, fused=True)
    np.testing.assert_allclose(batched, gpu, rtol=1e-6, atol=1e-9)  # atomic sums may round apart


def test_fused_steps_reject_windows_that_are_not_powers_of_two():
    """Checked on the host before anything runs on a device."""
    _cuda = pytest.importorskip("heteroagg._cuda", reason="heteroagg was built without CUDA")
    args = dict(
        potentials=blob_potentials(2, 96, 80, seed=1),
        thickness=[2.0, 2.0],
        sampling=(0.03, 0.025),
        energy=300e3,
        semiangle=20.0,
        aberrations=[],
        detectors=[(40.0, 150.0, [], [])],
        exit_planes=[2],
        positions=np.zeros((1, 2)),
        fused=True,
    )
    with pytest.raises(ValueError, match="powers of two"):
        _cuda.multislice(window=(48, 32), **args)
    with pytest.raises(ValueError, match="powers of two"):
        _cuda.multislice(window=(0, 0), **args)  # the whole 96 x 80 grid


def test_fused_steps_take_power_of_two_windows_only():
    """Other windows are refused before any device is asked (so without one too)."""
    _cuda = pytest.importorskip("heteroagg._cuda", reason="heteroagg was built without CUDA")
    for ny, nx in ((1, 1), (96, 96), (48, 64), (64, 48), (2048, 2048), (1024, 2048), (384, 384)):
        assert not _cuda.fused_steps_fit(ny, nx), (ny, nx)


@pytest.mark.cuda
@needs_cuda
def test_fused_steps_are_the_default_where_they_fit():
    """Unset, `fused` follows fused_steps_fit: power-of-two sides from 2 to 1024 points,
    within the device's shared memory per block (all of them from compute capability 8.0)."""
    from heteroagg import _cuda

    for side in (2, 4, 32, 256, 512, 1024):
        assert _cuda.fused_steps_fit(side, side)
    assert _cuda.fused_steps_fit(1024, 2) and _cuda.fused_steps_fit(64, 256)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("fused", [False, True], ids=["cufft", "fused"])
def test_cuda_batches_do_not_change_the_result(fused):
    potentials = blob_potentials(3, 64, 64, seed=5)
    positions = np.random.default_rng(6).uniform(0, 1.6, (23, 2))
    _, whole = both(potentials, (32, 32), positions, batch=0, fused=fused)
    _, batched = both(potentials, (32, 32), positions, batch=5, fused=fused)  # short last batch
    if fused:  # the column blocks' atomic sums may round apart
        np.testing.assert_allclose(whole, batched, rtol=1e-6, atol=1e-9)
    else:
        np.testing.assert_array_equal(whole, batched)


@pytest.mark.cuda
@needs_cuda
def test_haadf_multislice_on_cuda_matches_cpu():
    pytest.importorskip("ase")
    from heteroagg.validate.against_abtem import rutile_slab

    atoms = rutile_slab((3, 3, 4))
    settings = dict(energy=300e3, semiangle=20.0, detector=(50.0, 150.0), sampling=0.04,
                    slice_thickness=2.0, scan_sampling=0.5, window=6.0)  # fmt: skip
    cpu = haadf_multislice(atoms, device="cpu", **settings)
    gpu = haadf_multislice(atoms, device="cuda", **settings)
    np.testing.assert_allclose(gpu, cpu, atol=2e-4 * cpu.max())


def random_atoms(count: int, extent: tuple[float, float], depth: float, seed: int):
    rng = np.random.default_rng(seed)
    positions = np.column_stack(
        [rng.uniform(-1, extent[1] + 1, count), rng.uniform(-1, extent[0] + 1, count),
         rng.uniform(0, depth, count)]
    )  # fmt: skip
    numbers = rng.choice(np.array([8, 22, 74], dtype=np.int32), count)
    return positions, numbers


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("gpts", [(96, 80), (64, 64)])
def test_cuda_potentials_match_the_cpu(gpts):
    """Same FFT superposition; deposits are atomic sums and the FFTs differ,
    so the potentials agree to 1e-5 of their largest value."""
    from heteroagg import _cuda

    heteroagg._device.cuda_fft_extension("cuda")
    positions, numbers = random_atoms(300, (gpts[0] * 0.05, gpts[1] * 0.04), 9.0, seed=7)
    edges = [0.0, 2.0, 4.5, 9.0]
    args = (positions, numbers, gpts, (0.05, 0.04), (0.3, -0.2), edges, "lobato", True, 0)
    cpu = _core.projected_potentials(*args)
    gpu = _cuda.projected_potentials(*args)
    assert gpu.shape == cpu.shape == (3, *gpts)
    np.testing.assert_allclose(gpu, cpu, atol=1e-5 * cpu.max())
    assert cpu.max() > 100  # tungsten columns are there
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        out = torch.zeros((3, *gpts), device="cuda")
        _cuda.projected_potentials(*args, out=out.data_ptr())
        np.testing.assert_array_equal(out.cpu().numpy(), gpu)


@pytest.mark.cuda
@needs_cuda
def test_cuda_multislice_from_atoms_matches_the_cpu():
    from heteroagg import _cuda
    from heteroagg.stem.multislice import _cpu_engine

    heteroagg._device.cuda_fft_extension("cuda")
    positions, numbers = random_atoms(200, (96 * 0.03, 80 * 0.025), 8.0, seed=8)
    scan = np.random.default_rng(9).uniform(0, 2.0, (29, 2))
    args = (positions, numbers, (96, 80), (0.0, 0.0), [0.0, 2.0, 4.0, 6.0, 8.0], "lobato",
            [2.0] * 4, (0.03, 0.025), 300e3, 20.0, [], [(40.0, 150.0, [], [])], [2, 4], (48, 40),
            scan, 0, None)  # fmt: skip
    cpu = _cpu_engine(*args)
    gpu = _cuda.multislice_atoms(*args)
    assert gpu.shape == cpu.shape == (2, 1, 29)
    np.testing.assert_allclose(gpu, cpu, atol=2e-4 * cpu.max())
    assert cpu.max() > 1e-3


def test_explicit_cuda_without_a_device_raises():
    if CUDA:
        pytest.skip("a CUDA device is present")
    pytest.importorskip("ase")
    from heteroagg.validate.against_abtem import rutile_slab

    with pytest.raises(RuntimeError, match="cuda"):
        haadf_multislice(rutile_slab((1, 1, 1)), energy=300e3, semiangle=20.0,
                         detector=(50.0, 150.0), sampling=0.1, slice_thickness=2.0,
                         scan_sampling=1.0, device="cuda")  # fmt: skip


def test_cufft_is_found_or_named_in_a_clear_error():
    cuda = pytest.importorskip("heteroagg._cuda")
    missing = "/nonexistent/libcufft.so.12"
    try:
        path = cuda.load_cufft([missing])
    except RuntimeError as err:
        assert missing in str(err) and "nvidia-cufft" in str(err)
    else:
        assert path != missing and "cufft" in path
