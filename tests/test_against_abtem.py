"""heteroagg against abTEM on the same settings (full cell, Lobato, infinite projection)."""

import pytest

pytest.importorskip("abtem")

from heteroagg.validate.against_abtem import CASES, compare


@pytest.mark.parametrize(
    "name", ["rutile-slab", "rutile-sphere-off-zone", "anatase-particle", "wo3-particle"]
)
def test_full_cell_images_match_abtem(name):
    result = compare(CASES[name], threads=2)
    assert result.heteroagg_image.shape == result.abtem_image.shape
    assert result.metrics["ncc"] >= 0.999
    assert result.metrics["mean_relative_difference"] <= 0.01
