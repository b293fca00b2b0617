"""heteroagg.learn.particle_fit: projected positions and radii refined against an image."""

import numpy as np
import pytest

pytest.importorskip("torch")  # heteroagg.learn imports torch; this module does not

from heteroagg import sample_aggregate
from heteroagg.learn.particle_fit import refine_particles
from heteroagg.model import ModelParams
from heteroagg.stem import HaadfRenderer, particle_paths

PARAMS = ModelParams(n_particles=12, frac_w=0.4, radius_ti=5.0, radius_w=4.0, sigma_g=1.2)


def imaged(seed: int):
    """An aggregate imaged along z at 1 nm pixels and 10⁵ e/Å², with its image centre."""
    agg = sample_aggregate(PARAMS, seed=seed)
    image = HaadfRenderer(pixel_size=1.0, shape=96, dose=1e5)(agg, seed=1, rotation=np.eye(3))
    return agg, image, particle_paths(agg, pixel_size=1.0, shape=96).center


def errors(centers, radii, agg) -> tuple[float, float]:
    position = np.sqrt(np.mean((centers[:, :2] - agg.centers[:, :2]) ** 2))
    return float(position), float(np.sqrt(np.mean(np.log(radii / agg.radii) ** 2)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_true_geometry_stays_and_a_rough_one_comes_closer(seed):
    agg, image, center = imaged(seed)
    fit = dict(pixel_size=1.0, center=center, electrons_per_pixel=1e5 * 100)
    kept = refine_particles(image, agg.centers, agg.radii, **fit)
    position, radius = errors(kept.centers, kept.radii, agg)
    # the image's particles differ in brightness (orientation spread), which the fit does
    # not model: over seeds 0-9 it moves the truth by at most 0.09 nm and 1.8 %, against
    # the 0.4 nm and 4 % of the rough start below
    assert position < 0.1 and radius < 0.02
    rng = np.random.default_rng(seed)
    start = agg.centers.copy()
    start[:, :2] += 0.4 * rng.standard_normal((12, 2))
    radii = agg.radii * np.exp(0.04 * rng.standard_normal(12))
    refined = refine_particles(image, start, radii, **fit)
    position_0, radius_0 = errors(start, radii, agg)
    position, radius = errors(refined.centers, refined.radii, agg)
    assert position < 0.8 * position_0 and radius < radius_0
    np.testing.assert_array_equal(refined.centers[:, 2], start[:, 2])  # depths are kept


def test_bad_input_is_refused():
    agg, image, center = imaged(0)
    fit = dict(pixel_size=1.0, center=center, electrons_per_pixel=1e7)
    with pytest.raises(ValueError, match="radii"):
        refine_particles(image, agg.centers, agg.radii[:-1], **fit)
    with pytest.raises(ValueError, match="radii positive"):
        refine_particles(image, agg.centers, -agg.radii, **fit)
    with pytest.raises(ValueError, match="finite"):
        refine_particles(image, agg.centers + np.nan, agg.radii, **fit)
    with pytest.raises(ValueError, match="sweeps"):
        refine_particles(image, agg.centers, agg.radii, sweeps=0, **fit)
    with pytest.raises(ValueError, match="radius_step"):
        refine_particles(image, agg.centers, agg.radii, radius_step=1.0, **fit)
    with pytest.raises(ValueError, match="position_step"):
        refine_particles(image, agg.centers, agg.radii, position_step=np.inf, **fit)
    with pytest.raises(ValueError, match="electrons_per_pixel"):
        refine_particles(image, agg.centers, agg.radii, **(fit | {"electrons_per_pixel": 0.0}))
