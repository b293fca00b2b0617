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
def test_cuda_batches_do_not_change_the_result():
    potentials = blob_potentials(3, 64, 64, seed=5)
    positions = np.random.default_rng(6).uniform(0, 1.6, (23, 2))
    _, whole = both(potentials, (32, 32), positions, batch=0)
    _, batched = both(potentials, (32, 32), positions, batch=5)  # short last batch
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
