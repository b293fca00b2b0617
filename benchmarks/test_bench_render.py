"""Speed of the LUT renderer: 256 x 256 images of 100-particle aggregates.

The case: aggregates of the default model (``ModelParams(n_particles=100)``,
about 150 nm across) at 0.6 nm pixels with the shipped LUTs.  The anchor,
measured in the same run, is a plain numpy renderer of the same image
(chords summed per sphere, ``np.interp`` through the LUT, ``scipy.ndimage``
convolution, ``numpy`` Poisson noise).  Figures go to docs/performance.md.

Run with ``pytest benchmarks/test_bench_render.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import heteroagg
from heteroagg.stem import FieldOfViewWarning, HaadfRenderer, default_lut

SHAPE = (256, 256)
PIXEL = 0.6  # nm
DOSE = 1e4  # e/Å²

warnings.simplefilter("ignore", FieldOfViewWarning)


@pytest.fixture(scope="module")
def aggregates():
    params = heteroagg.ModelParams(n_particles=100)
    return [heteroagg.sample_aggregate(params, seed) for seed in range(16)]


def numpy_render(agg, kernel, rng, dose=DOSE):
    """The anchor: the same image formation in plain numpy and scipy."""
    from scipy.ndimage import convolve

    luts = [default_lut("TiO2"), default_lut("WO3")]
    ny, nx = SHAPE
    centre = 0.5 * ((agg.centers[:, :2] - agg.radii[:, None]).min(0)
                    + (agg.centers[:, :2] + agg.radii[:, None]).max(0))  # fmt: skip
    x = centre[0] + (np.arange(nx) - (nx - 1) / 2) * PIXEL
    y = centre[1] + (np.arange(ny) - (ny - 1) / 2) * PIXEL
    thickness = np.zeros((2, ny, nx))
    for c, r, m in zip(agg.centers, agg.radii, agg.materials, strict=True):
        i = slice(max(0, int((c[1] - r - y[0]) / PIXEL)), int((c[1] + r - y[0]) / PIXEL) + 2)
        j = slice(max(0, int((c[0] - r - x[0]) / PIXEL)), int((c[0] + r - x[0]) / PIXEL) + 2)
        h2 = r * r - (x[None, j] - c[0]) ** 2 - (y[i, None] - c[1]) ** 2
        thickness[m, i, j] += 2 * np.sqrt(np.clip(h2, 0, None))
    density = sum(
        np.where(
            thickness[m] > lut.thickness_max,
            lut.density[-1] * thickness[m] / lut.thickness_max,
            np.interp(thickness[m], lut.thickness, lut.density),
        )
        for m, lut in enumerate(luts)
    )
    image = -np.expm1(-density)
    if kernel is not None:
        image = convolve(image, kernel, mode="nearest")
        electrons = dose * (PIXEL * 10) ** 2
        image = rng.poisson(image * electrons) / electrons
    return image.astype(np.float32)


def _renderer(**kw):
    return HaadfRenderer(pixel_size=PIXEL, shape=SHAPE, extrapolate=True, **kw)


def test_render_no_blur_no_noise(benchmark, aggregates):
    renderer = _renderer(probe=None, orientation_spread=False)
    agg = aggregates[0]
    benchmark(lambda: renderer(agg, 1, rotation=np.eye(3)))


def test_render_with_probe_and_noise(benchmark, aggregates):
    renderer = _renderer(dose=DOSE)
    agg = aggregates[0]
    benchmark(lambda: renderer(agg, 1, rotation=np.eye(3)))
    benchmark.extra_info["kernel_shape"] = list(renderer.kernel.shape)


def test_numpy_anchor_no_blur_no_noise(benchmark, aggregates):
    agg = aggregates[0]
    benchmark(lambda: numpy_render(agg, None, None))


def test_numpy_anchor_with_probe_and_noise(benchmark, aggregates):
    kernel = _renderer(dose=DOSE).kernel
    rng = np.random.default_rng(0)
    agg = aggregates[0]
    benchmark(lambda: numpy_render(agg, kernel, rng))


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_threads(benchmark, aggregates, threads):
    renderer = _renderer(dose=DOSE)
    seeds = list(range(len(aggregates)))
    benchmark(lambda: renderer.batch(aggregates, seeds, threads=threads))
    benchmark.extra_info["images"] = len(aggregates)


def test_numpy_anchor_agrees(aggregates):
    """The anchor computes the same noise-free image (sums of chords: no overlaps here)."""
    renderer = _renderer(probe=None, orientation_spread=False)
    for agg in aggregates[:3]:
        ours = renderer(agg, 1, rotation=np.eye(3))
        np.testing.assert_allclose(numpy_render(agg, None, None), ours, rtol=2e-4, atol=1e-7)
