"""Speed of the compiled 2D FFT (complex64, one thread).

Each case runs a forward and an inverse transform; scipy.fft.fft2/ifft2 with
workers=1 on the same data, measured in the same run, is the anchor.
"""

import numpy as np
import pytest
import scipy.fft

from heteroagg import _core

SHAPES = [(256, 256), (512, 512), (1024, 1024), (1200, 1200), (4, 512, 512)]


def data(shape):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def heteroagg_round_trip(a):
    return _core.fft2(_core.fft2(a), inverse=True)


def scipy_round_trip(a):
    axes = (-2, -1)
    return scipy.fft.ifft2(scipy.fft.fft2(a, axes=axes, workers=1), axes=axes, workers=1)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_heteroagg_fft2(benchmark, shape):
    a = data(shape)
    out = benchmark(heteroagg_round_trip, a)
    np.testing.assert_allclose(out, a, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_scipy_fft2(benchmark, shape):
    a = data(shape)
    out = benchmark(scipy_round_trip, a)
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out, a, atol=1e-4)
