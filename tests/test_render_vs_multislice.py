"""The LUT renderer against full multislice of the same atoms (a slow test).

Three particles of 2-2.6 nm (TiO2, WO3, TiO2) are filled with atoms in
random crystal orientations and simulated by multislice; the renderer sees
only LUTs calibrated with the same optics.  The LUT model has no atomic
columns, so both images are compared after the same 2 Å Gaussian low-pass.
Each seed draws new crystal orientations; their mean is the image the LUT
mean describes.
"""

import math

import numpy as np
import pytest

ase = pytest.importorskip("ase")

from scipy.ndimage import gaussian_filter  # noqa: E402

from heteroagg import Aggregate  # noqa: E402
from heteroagg.stem import calibrate  # noqa: E402
from heteroagg.validate.render_vs_multislice import compare_render_with_multislice  # noqa: E402

pytestmark = pytest.mark.slow

SCAN = 1.0  # Å
LOW_PASS = 2.0  # Å


def ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def comparisons():
    luts = {
        m: calibrate(m, detector=(50.0, 100.0), thickness_max=4.0, orientations=32, positions=2)
        for m in ("TiO2", "WO3")
    }
    agg = Aggregate([[0, 0, 0], [2.4, 0.3, 0.2], [4.6, -0.4, -0.3]], [1.2, 1.25, 1.0], [0, 1, 0])
    return [
        compare_render_with_multislice(agg, luts, seed=seed, scan_sampling=SCAN, binning=1)
        for seed in range(3)
    ]


def test_each_orientation_draw_correlates(comparisons):
    for c in comparisons:
        smooth = ncc(gaussian_filter(c.rendered, LOW_PASS / SCAN),
                     gaussian_filter(c.multislice, LOW_PASS / SCAN))  # fmt: skip
        assert smooth >= 0.95


def test_mean_image_and_integrated_intensity(comparisons):
    rendered = comparisons[0].rendered  # the renderer is deterministic here
    multislice = np.mean([c.multislice for c in comparisons], axis=0)
    low = LOW_PASS / SCAN
    assert ncc(gaussian_filter(rendered, low), gaussian_filter(multislice, low)) >= 0.95
    assert rendered.sum() / multislice.sum() == pytest.approx(1.0, abs=0.10)
    # vacuum stays dark in both
    assert rendered[0, 0] < 1e-6 and multislice[0, 0] < 0.02 * multislice.max()
