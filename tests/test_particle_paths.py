"""heteroagg.stem.particle_paths: the beam's path through each particle, pixel by pixel."""

import math

import numpy as np
import pytest

from heteroagg import Aggregate, sample_aggregate
from heteroagg.model import ModelParams
from heteroagg.stem import particle_paths, pixel_positions, render_haadf
from reference import owned_paths


def test_each_point_belongs_to_its_lowest_indexed_particle():
    rng = np.random.default_rng(5)
    agg = Aggregate(rng.uniform(-2, 2, (9, 3)), rng.uniform(0.8, 1.6, 9), rng.integers(0, 2, 9))
    shape, pixel = (26, 22), 0.25
    paths = particle_paths(agg, pixel_size=pixel, shape=shape, center=(0.0, 0.0))
    dense = paths.matrix.toarray().reshape(*shape, -1)
    for i in range(shape[0]):
        for j in range(shape[1]):
            x, y = (j - (shape[1] - 1) / 2) * pixel, (i - (shape[0] - 1) / 2) * pixel
            np.testing.assert_allclose(dense[i, j], owned_paths(agg, x, y), atol=1e-9)


def test_columns_of_a_material_add_up_to_the_renderers_thickness():
    agg = sample_aggregate(ModelParams(n_particles=40, frac_w=0.3, overlap=0.1), seed=11)
    rotation = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))[0]
    rotation *= np.linalg.det(rotation)
    rendering = render_haadf(agg, pixel_size=0.7, shape=(96, 80), rotation=rotation, labels=True)
    paths = particle_paths(agg, pixel_size=0.7, shape=(96, 80), rotation=rotation)
    assert paths.center == pytest.approx(rendering.center, abs=1e-9)
    for material in (0, 1):
        summed = paths.matrix[:, agg.materials == material].sum(axis=1).reshape(96, 80)
        np.testing.assert_allclose(summed, rendering.thickness[material], atol=5e-5)


def test_an_isolated_sphere_has_its_chord():
    agg = Aggregate([[0.3, -0.2, 4.0]], [2.5], [1])
    paths = particle_paths(agg, pixel_size=0.5, shape=15, center=(0.0, 0.0))
    x = (np.arange(15) - 7) * 0.5
    rho2 = (x[None, :] - 0.3) ** 2 + (x[:, None] + 0.2) ** 2
    chord = 2 * np.sqrt(np.clip(2.5**2 - rho2, 0, None))
    np.testing.assert_allclose(paths.matrix.toarray()[:, 0].reshape(15, 15), chord, atol=1e-12)
    assert paths.shape == (15, 15) and paths.pixel_size == 0.5


def test_particles_outside_the_field_have_empty_columns():
    agg = Aggregate([[0.0, 0, 0], [40.0, 0, 0]], [1.0, 1.0], [0, 1])
    paths = particle_paths(agg, pixel_size=0.5, shape=9, center=(0.0, 0.0))
    counts = np.diff(paths.matrix.indptr)
    assert counts[0] > 0 and counts[1] == 0


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"pixel_size": 0.0}, "pixel_size"),
        ({"pixel_size": True}, "pixel_size"),
        ({"shape": (4, 0)}, "shape"),
        ({"shape": (4, 4, 4)}, "shape"),
        ({"rotation": np.ones((3, 3))}, "rotation"),
        ({"center": (math.nan, 0.0)}, "center"),
    ],
)
def test_bad_input_is_refused(kw, message):
    args = {"pixel_size": 1.0, "shape": 8} | kw
    with pytest.raises(ValueError, match=message):
        particle_paths(Aggregate([[0.0, 0, 0]], [1.0], [0]), **args)


def test_pixel_positions_are_where_each_particles_path_is_centred():
    """The path-weighted centroid of an isolated sphere's pixels is its centre."""
    centres = np.array([[-9.3, 4.1, 0.0], [8.2, -6.7, 30.0], [3.4, 11.6, -30.0]])
    agg = Aggregate(centres, [4.0, 3.0, 3.5], [0, 1, 0])
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    shape, pixel = (112, 104), 0.25
    got = pixel_positions(agg, pixel_size=pixel, shape=shape, rotation=rotation)
    paths = particle_paths(agg, pixel_size=pixel, shape=shape, rotation=rotation)
    rows, cols = np.divmod(np.arange(shape[0] * shape[1]), shape[1])
    for j in range(3):
        weight = paths.matrix[:, j].toarray().ravel()
        centroid = [weight @ rows / weight.sum(), weight @ cols / weight.sum()]
        np.testing.assert_allclose(got[j], centroid, atol=0.02)  # the pixels' sampling
    moved = pixel_positions(
        agg, pixel_size=pixel, shape=shape, rotation=rotation, center=(1.0, -2.0)
    )
    shift = [(paths.center[1] + 2.0) / pixel, (paths.center[0] - 1.0) / pixel]
    np.testing.assert_allclose(moved - got, [shift] * 3, atol=1e-9)
    with pytest.raises(ValueError, match="rotation"):
        pixel_positions(agg, pixel_size=pixel, shape=shape, rotation=np.ones((3, 3)))
    mirror = np.diag([1.0, 1.0, -1.0])  # as the renderer, no reflections
    with pytest.raises(ValueError, match="not a reflection"):
        particle_paths(agg, pixel_size=pixel, shape=shape, rotation=mirror)
