"""heteroagg.learn.image_observer: each particle's brightness read off a noisy image."""

import math

import numpy as np
import pytest

pytest.importorskip("torch")  # heteroagg.learn imports torch; this module does not

from heteroagg import Aggregate, sample_aggregate
from heteroagg.data import default_config
from heteroagg.learn.brightness_observer import ObserverGrid, _LogBrightnessLaw, observe_particles
from heteroagg.learn.image_observer import (
    ParticleReading,
    blur_matrix,
    brightness_log_likelihood,
    observe_image,
    read_particle_densities,
)
from heteroagg.model import ModelParams
from heteroagg.stem import HaadfLUT, HaadfRenderer, default_lut, particle_paths

OPTICS = {"energy_eV": 300e3, "semiangle_mrad": 20.0, "detector": {"kind": "annular"}}
RATES = {"TiO2": 0.004, "WO3": 0.02}  # optical density per nm of the test LUTs


def exponential_lut(material: str, rate: float) -> HaadfLUT:
    """I(t) = 1 - exp(-rate t): optical density rate · t, exactly linear."""
    t = np.linspace(0, 60.0, 301)
    mean = -np.expm1(-rate * t)
    samples = np.stack([mean * 0.9, mean * 1.1])
    return HaadfLUT(material, t, mean, samples.std(axis=0, ddof=1), samples, dict(OPTICS))


LUTS = {m: exponential_lut(m, rate) for m, rate in RATES.items()}
AGG = Aggregate(
    [[0.0, 0.0, 0.0], [2.6, 0.4, 0.5], [-1.0, 2.4, -3.0], [4.0, -2.5, 1.0]],
    [1.5, 1.2, 1.0, 1.4],
    [0, 1, 1, 0],
)


def clean_image(renderer: HaadfRenderer) -> tuple[np.ndarray, object]:
    image = renderer(AGG, rotation=np.eye(3), center=(1.0, 0.0))
    paths = particle_paths(AGG, pixel_size=renderer.pixel_size, shape=renderer.shape,
                           center=(1.0, 0.0))  # fmt: skip
    return np.asarray(image, float), paths


@pytest.mark.parametrize("probe", [None, "lut"])
def test_a_clean_image_gives_back_each_particles_density(probe):
    renderer = HaadfRenderer(pixel_size=0.25, shape=(48, 56), luts=LUTS, probe=probe,
                             orientation_spread=False)  # fmt: skip
    image, paths = clean_image(renderer)
    reading = read_particle_densities(image, paths, electrons_per_pixel=1e6,
                                      kernel=renderer.kernel)  # fmt: skip
    expected = [RATES["WO3"] if m else RATES["TiO2"] for m in AGG.materials]
    # float32 images: the fit is exact to their precision
    np.testing.assert_allclose(reading.density, expected, rtol=2e-3)
    assert reading.seen.all() and np.all(reading.std > 0)


def test_standard_errors_match_the_spread_over_noise_draws():
    renderer = HaadfRenderer(pixel_size=0.25, shape=(48, 56), luts=LUTS, probe=None,
                             orientation_spread=False)  # fmt: skip
    image, paths = clean_image(renderer)
    electrons = 2000.0
    rng = np.random.default_rng(4)
    fits, stds = [], []
    for _ in range(400):
        noisy = rng.poisson(image * electrons) / electrons
        reading = read_particle_densities(noisy, paths, electrons_per_pixel=electrons)
        fits.append(reading.density)
        stds.append(reading.std)
    fits, stds = np.array(fits), np.array(stds)
    expected = [RATES["WO3"] if m else RATES["TiO2"] for m in AGG.materials]
    np.testing.assert_allclose(fits.mean(axis=0), expected, atol=3 * fits.std(axis=0).max() / 20)
    np.testing.assert_allclose(fits.std(axis=0), stds.mean(axis=0), rtol=0.12)


def dense_log_likelihood(a_hat, s, radius, material, nodes=2_000_001):
    """N(â; a, s²) averaged over the renderer's brightness law on a dense, even grid."""
    mu, var = _LogBrightnessLaw({"TiO2": default_lut("TiO2"), "WO3": default_lut("WO3")})(
        material, np.array([2 * radius])
    )
    sd = math.sqrt(var[0])
    u = np.linspace(mu[0] - 10 * sd, min(mu[0] + 10 * sd, -1e-9), nodes)
    a = -np.log1p(-np.exp(u)) / (2 * radius)
    f = np.exp(-0.5 * ((u - mu[0]) / sd) ** 2 - 0.5 * ((a_hat - a) / s) ** 2)
    return math.log(f.sum() * (u[1] - u[0]) / (2 * math.pi * sd * s))


@pytest.mark.parametrize("relative_error", [0.003, 0.05, 0.5, 3.0])
def test_the_likelihood_integrates_the_measurement_over_the_brightness_law(relative_error):
    radius = 3.0
    a_hat = 0.0011  # between the two materials' typical densities
    reading = ParticleReading(np.array([a_hat]), np.array([a_hat * relative_error]),
                              np.array([True]))  # fmt: skip
    got = brightness_log_likelihood(reading, np.array([radius]))
    for material in (0, 1):
        expected = dense_log_likelihood(a_hat, a_hat * relative_error, radius, material)
        assert got[0, material] == pytest.approx(expected, abs=0.005)


def test_a_likelihood_of_exact_brightness_gives_the_brightness_observers_posterior():
    space = default_config().params
    grid = ObserverGrid.from_space(space, nodes=12, sigma_nodes=3)
    law = _LogBrightnessLaw({"TiO2": default_lut("TiO2"), "WO3": default_lut("WO3")})
    radii = np.array([2.5, 4.0, 6.0, 3.0, 7.5])
    ln_b = np.log([0.004, 0.02, 0.006, 0.012, 0.03])
    columns = []
    for material in (0, 1):
        mu, var = law(material, 2 * radii)
        columns.append(-0.5 * (ln_b - mu) ** 2 / var - 0.5 * np.log(2 * math.pi * var))
    by_value = observe_particles(grid, np.log(radii), ln_brightness=ln_b)
    by_likelihood = observe_particles(
        grid, np.log(radii), brightness_log_likelihood=np.column_stack(columns)
    )
    for name, value in by_value.items():
        assert by_likelihood[name] == pytest.approx(value, rel=1e-9)


def test_a_noisy_image_tells_the_materials_apart():
    params = ModelParams(n_particles=30, frac_w=0.3, radius_ti=5.0, radius_w=4.0, sigma_g=1.3)
    agg = sample_aggregate(params, seed=3)
    renderer = HaadfRenderer(pixel_size=1.0, shape=128, dose=1e4)
    image = renderer(agg, seed=5, rotation=np.eye(3))
    paths = particle_paths(agg, pixel_size=1.0, shape=128, rotation=np.eye(3))
    electrons = 1e4 * 10.0**2
    reading = read_particle_densities(image, paths, electrons_per_pixel=electrons,
                                      kernel=blur_matrix((128, 128), renderer.kernel))  # fmt: skip
    likelihood = brightness_log_likelihood(reading, agg.radii)
    said_wo3 = likelihood[:, 1] > likelihood[:, 0]
    assert np.mean(said_wo3 == (agg.materials == 1)) >= 0.9
    grid = ObserverGrid.from_space(default_config().params, nodes=16, sigma_nodes=4)
    got = observe_image(grid, image, agg, paths, electrons_per_pixel=electrons,
                        kernel=renderer.kernel)  # fmt: skip
    assert got["frac_w"][0] == pytest.approx(np.mean(agg.materials == 1), abs=0.06)


def test_bad_input_is_refused():
    renderer = HaadfRenderer(pixel_size=0.25, shape=(48, 56), luts=LUTS, probe=None)
    image, paths = clean_image(renderer)
    with pytest.raises(ValueError, match="shape"):
        read_particle_densities(image[:-1], paths, electrons_per_pixel=1e3)
    with pytest.raises(ValueError, match="non-finite"):
        read_particle_densities(np.full_like(image, np.nan), paths, electrons_per_pixel=1e3)
    for electrons in (0.0, -1.0, math.inf, True):
        with pytest.raises(ValueError, match="electrons_per_pixel"):
            read_particle_densities(image, paths, electrons_per_pixel=electrons)
    with pytest.raises(ValueError, match="iterations"):
        read_particle_densities(image, paths, electrons_per_pixel=1e3, iterations=0)
    # numpy numbers, as read from arrays, are numbers
    as_numpy = read_particle_densities(
        image, paths, electrons_per_pixel=np.float32(1e3), iterations=np.int64(20)
    )
    plain = read_particle_densities(image, paths, electrons_per_pixel=1e3, iterations=20)
    np.testing.assert_array_equal(as_numpy.density, plain.density)
    with pytest.raises(ValueError, match="odd sides"):
        blur_matrix((8, 8), np.ones((2, 3)))
    reading = read_particle_densities(image, paths, electrons_per_pixel=1e3)
    with pytest.raises(ValueError, match="radius_nm"):
        brightness_log_likelihood(reading, AGG.radii[:2])
    with pytest.raises(ValueError, match="radius_nm"):
        brightness_log_likelihood(reading, -AGG.radii)
    grid = ObserverGrid.from_space(default_config().params, nodes=4, sigma_nodes=2)
    far = Aggregate(AGG.centers + 500.0, AGG.radii, AGG.materials)
    far_paths = particle_paths(far, pixel_size=0.25, shape=(48, 56), center=(1.0, 0.0))
    with pytest.raises(ValueError, match="no particle"):
        observe_image(grid, image, far, far_paths, electrons_per_pixel=1e3)
    ln_r = np.log(AGG.radii)
    likelihood = np.zeros((4, 2))
    with pytest.raises(ValueError, match="replaces ln_brightness"):
        observe_particles(grid, ln_r, ln_brightness=ln_r, brightness_log_likelihood=likelihood)
    with pytest.raises(ValueError, match="replaces ln_brightness"):
        observe_particles(grid, ln_r, radius_error=0.1, brightness_log_likelihood=likelihood)
    with pytest.raises(ValueError, match="shape"):
        observe_particles(grid, ln_r, brightness_log_likelihood=likelihood[:3])
    with pytest.raises(ValueError, match="NaN"):
        observe_particles(grid, ln_r, brightness_log_likelihood=likelihood + np.nan)
