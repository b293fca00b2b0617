"""The compiled 2D FFT against numpy.fft."""

import numpy as np
import pytest

from heteroagg import _core


def random_complex64(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def rel_rms(got, want):
    return float(np.sqrt(np.sum(np.abs(got - want) ** 2) / np.sum(np.abs(want) ** 2)))


# Every radix (2, 3, 4, 5, 7, 8), odd sizes and degenerate axes.
SIZES = [
    (512, 512),
    (1200, 1176),
    (7, 49),
    (1, 8),
    (8, 1),
    (1, 1),
    (2, 3),
    (6, 10),
    (25, 27),
    (64, 343),
    (125, 14),
    (256, 256),
]


@pytest.mark.parametrize("shape", SIZES)
def test_matches_numpy(shape):
    a = random_complex64(shape, seed=shape[0] * 7 + shape[1])
    reference = a.astype(np.complex128)
    forward = _core.fft2(a)
    assert forward.dtype == np.complex64
    assert forward.shape == a.shape
    assert rel_rms(forward, np.fft.fft2(reference)) < 1e-6
    assert rel_rms(_core.fft2(a, inverse=True), np.fft.ifft2(reference)) < 1e-6


@pytest.mark.parametrize("shape", [(512, 512), (7, 49), (1, 1), (1200, 1176)])
def test_round_trip(shape):
    a = random_complex64(shape, seed=3)
    back = _core.fft2(_core.fft2(a), inverse=True)
    assert rel_rms(back, a) < 1e-6


def test_input_untouched():
    a = random_complex64((16, 16))
    copy = a.copy()
    _core.fft2(a)
    np.testing.assert_array_equal(a, copy)


@pytest.mark.parametrize("inverse", [False, True])
def test_batch_equals_per_array(inverse):
    batch = random_complex64((4, 60, 28), seed=5)
    out = _core.fft2(batch, inverse=inverse)
    assert out.shape == batch.shape
    for k in range(batch.shape[0]):
        np.testing.assert_array_equal(out[k], _core.fft2(batch[k], inverse=inverse))


def test_non_contiguous_input():
    a = random_complex64((32, 64))[:, ::2]
    assert rel_rms(_core.fft2(a), np.fft.fft2(a.astype(np.complex128))) < 1e-6


@pytest.mark.parametrize("dtype", [np.complex128, np.float32, np.float64, np.int32])
def test_bad_dtype(dtype):
    with pytest.raises(ValueError, match="complex64"):
        _core.fft2(np.zeros((8, 8), dtype=dtype))


@pytest.mark.parametrize("shape", [(8,), (2, 2, 2, 2)])
def test_bad_rank(shape):
    with pytest.raises(ValueError, match="2D"):
        _core.fft2(np.zeros(shape, dtype=np.complex64))


@pytest.mark.parametrize("shape", [(11, 8), (8, 13), (0, 8), (3, 0, 4)])
def test_bad_sizes(shape):
    with pytest.raises(ValueError, match="2, 3, 5 and 7"):
        _core.fft2(np.zeros(shape, dtype=np.complex64))


def test_portable_kernel(monkeypatch):
    # Plans are built per call, so the override takes effect at once.
    monkeypatch.setenv("HETEROAGG_FFT_KERNEL", "portable")
    a = random_complex64((120, 98), seed=11)
    assert rel_rms(_core.fft2(a), np.fft.fft2(a.astype(np.complex128))) < 1e-6


def smooth(n):
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


def test_next_fft_size():
    expected = [0] * 5002
    expected[5001] = next(m for m in range(5001, 6000) if smooth(m))
    for n in range(5000, 0, -1):
        expected[n] = n if smooth(n) else expected[n + 1]
    assert [_core.next_fft_size(n) for n in range(1, 5001)] == expected[1:5001]
    assert _core.next_fft_size(0) == 1
    assert _core.next_fft_size(1201) == 1215  # 3**5 * 5
    # far apart at large sizes: found at once, not by counting up
    smooth_sizes = sorted(
        2**a * 3**b * 5**c * 7**d
        for a in range(64) for b in range(41) for c in range(28) for d in range(23)
        if 2**a * 3**b * 5**c * 7**d < 2**64
    )  # fmt: skip
    for n in (2**40 + 1, 10**13 + 7, 3**39 + 1, 2**63 + 1):
        assert _core.next_fft_size(n) == next(m for m in smooth_sizes if m >= n)
    with pytest.raises(OverflowError):
        _core.next_fft_size(smooth_sizes[-1] + 1)
