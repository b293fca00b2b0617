"""heteroagg.stem.render_haadf: the fast LUT renderer."""

import math
import warnings

import numpy as np
import pytest

import heteroagg
from heteroagg import Aggregate
from heteroagg.stem import (
    FieldOfViewWarning,
    HaadfLUT,
    HaadfRenderer,
    Probe,
    default_lut,
    probe_kernel,
    render_haadf,
)
from reference import owned_paths

OPTICS = {"energy_eV": 300e3, "semiangle_mrad": 20.0, "detector": {"kind": "annular"}}


def lut(material, rate, t_max=60.0, n=301, spread=0.1):
    """I(t) = 1 - exp(-rate t), orientation spread a fixed fraction of I."""
    t = np.linspace(0, t_max, n)
    mean = -np.expm1(-rate * t)
    samples = np.stack([mean * (1 - spread), mean * (1 + spread)])
    return HaadfLUT(material, t, mean, samples.std(axis=0, ddof=1), samples, dict(OPTICS))


LUTS = {"TiO2": lut("TiO2", 0.004), "WO3": lut("WO3", 0.02)}
PLAIN = dict(luts=LUTS, probe=None, orientation_spread=False)


def sphere(center=(0.0, 0.0, 0.0), radius=1.5, material=0):
    return Aggregate([center], [radius], [material])


def rotation_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


@pytest.mark.parametrize("material", [0, 1])
def test_sphere_centre_renders_the_lut(material):
    agg = sphere(center=(0.3, -0.2, 1.0), radius=1.37, material=material)
    image = render_haadf(agg, pixel_size=0.1, shape=41, center=(0.3, -0.2), rotation=np.eye(3),
                         **PLAIN)  # fmt: skip
    name = ("TiO2", "WO3")[material]
    assert image.dtype == np.float32 and image.shape == (41, 41)
    assert image[20, 20] == pytest.approx(float(LUTS[name](2 * 1.37)), rel=1e-6)
    assert image[0, 0] == 0.0


def test_luts_keyed_by_numpy_material_codes():
    # codes as an aggregate's materials array holds them
    agg = sphere(radius=1.37, material=1)
    by_code = {np.int64(0): LUTS["TiO2"], agg.materials[0]: LUTS["WO3"]}
    args = dict(pixel_size=0.1, shape=41, rotation=np.eye(3))
    np.testing.assert_array_equal(
        render_haadf(agg, **args, **{**PLAIN, "luts": by_code}), render_haadf(agg, **args, **PLAIN)
    )


def test_default_luts_render_a_sphere_as_their_value():
    agg = sphere(radius=2.0, material=1)
    image = render_haadf(agg, pixel_size=0.05, shape=81, probe=None, orientation_spread=False)
    assert image[40, 40] == pytest.approx(float(default_lut("WO3")(4.0)), rel=1e-6)


def test_wo3_is_brighter_than_tio2_at_equal_thickness():
    agg = Aggregate([[-3.0, 0, 0], [3.0, 0, 0]], [2.0, 2.0], [0, 1])
    image = render_haadf(agg, pixel_size=0.1, shape=(41, 101), rotation=np.eye(3),
                         probe=None, orientation_spread=False)  # fmt: skip
    assert image[20, 80] > 2.0 * image[20, 20]


def brute_force_paths(agg, x, y):
    """Per-material path at (x, y): each point belongs to its lowest-indexed sphere."""
    owned = owned_paths(agg, x, y)
    return [owned[agg.materials == m].sum() for m in (0, 1)]


@pytest.mark.filterwarnings("ignore::heteroagg.stem.FieldOfViewWarning")
def test_overlapping_spheres_count_each_point_once():
    rng = np.random.default_rng(3)
    agg = Aggregate(rng.uniform(-2, 2, (8, 3)), rng.uniform(0.8, 1.6, 8), rng.integers(0, 2, 8))
    shape, pixel = (24, 20), 0.25
    r = render_haadf(agg, pixel_size=pixel, shape=shape, rotation=np.eye(3), center=(0, 0),
                     labels=True, **PLAIN)  # fmt: skip
    for i in range(shape[0]):
        for j in range(shape[1]):
            x, y = (j - (shape[1] - 1) / 2) * pixel, (i - (shape[0] - 1) / 2) * pixel
            np.testing.assert_allclose(
                r.thickness[:, i, j], brute_force_paths(agg, x, y), atol=2e-5
            )
    # materials add in optical density: the clean image follows from the two maps
    expected = 1 - np.exp(-(0.004 * r.thickness[0] + 0.02 * r.thickness[1]))
    np.testing.assert_allclose(r.clean, expected, rtol=1e-5, atol=1e-7)
    matter = r.thickness.sum(axis=0) > 0
    assert np.array_equal(r.material >= 0, matter) and np.array_equal(r.particle >= 0, matter)
    assert np.all(r.material[matter] == np.argmax(r.thickness, axis=0)[matter])


def test_stacked_materials_add_in_optical_density():
    agg = Aggregate([[0, 0, -3.0], [0, 0, 3.0]], [1.0, 2.0], [0, 1])
    image = render_haadf(agg, pixel_size=0.1, shape=41, rotation=np.eye(3), center=(0, 0), **PLAIN)
    i_ti, i_w = float(LUTS["TiO2"](2.0)), float(LUTS["WO3"](4.0))
    assert image[20, 20] == pytest.approx(1 - (1 - i_ti) * (1 - i_w), rel=1e-6)


def test_rotation_turns_the_aggregate():
    agg = Aggregate([[-2.0, 0, 0], [2.0, 0, 0]], [1.0, 1.5], [0, 1])
    turn = rotation_z(0.7)
    turned = Aggregate(agg.centers @ turn.T, agg.radii, agg.materials)
    a = render_haadf(agg, pixel_size=0.1, shape=64, rotation=turn, **PLAIN)
    b = render_haadf(turned, pixel_size=0.1, shape=64, rotation=np.eye(3), **PLAIN)
    np.testing.assert_allclose(a, b, atol=1e-6)
    r = render_haadf(agg, pixel_size=0.1, shape=64, seed=11, labels=True, **PLAIN)
    assert np.allclose(r.rotation @ r.rotation.T, np.eye(3)) and np.linalg.det(r.rotation) > 0
    again = render_haadf(agg, pixel_size=0.1, shape=64, seed=11, **PLAIN)
    np.testing.assert_array_equal(r.image, again)


def test_random_rotations_are_uniform():
    renderer = HaadfRenderer(pixel_size=1.0, shape=4, **PLAIN)
    agg = sphere()
    n = 3000
    _, rotations, _ = renderer.batch([agg] * n, seeds=range(n))
    # Haar measure: every matrix element has mean 0 and variance 1/3
    np.testing.assert_allclose(rotations.mean(axis=0), 0.0, atol=4 / math.sqrt(3 * n))
    np.testing.assert_allclose((rotations**2).mean(axis=0), 1 / 3, atol=0.03)


def test_orientation_spread_draws_per_particle_brightness():
    renderer = HaadfRenderer(pixel_size=0.1, shape=41, luts=LUTS, probe=None)
    agg = sphere(radius=2.0)
    n = 2000
    images, _, _ = renderer.batch([agg] * n, seeds=range(n))
    centre = images[:, 20, 20].astype(float)
    expected = LUTS["TiO2"](4.0)
    spread = LUTS["TiO2"].spread(4.0)
    assert centre.mean() == pytest.approx(float(expected), rel=4 * spread / expected / math.sqrt(n))
    assert centre.std() == pytest.approx(float(spread), rel=0.1)
    # one factor per particle: the whole sphere scales in optical density together
    ratio = -np.log1p(-images[:5, 20, 25]) / -np.log1p(-images[:5, 20, 20])
    clean = render_haadf(agg, pixel_size=0.1, shape=41, **PLAIN)
    np.testing.assert_allclose(ratio, -math.log1p(-clean[20, 25]) / -math.log1p(-clean[20, 20]),
                               rtol=1e-4)  # fmt: skip


def test_shot_noise_is_poisson():
    dose = 200.0  # e/Å², 0.05 nm pixels: 50 electrons per pixel
    renderer = HaadfRenderer(pixel_size=0.05, shape=61, luts=LUTS, probe=None,
                             orientation_spread=False, dose=dose)  # fmt: skip
    agg = sphere(radius=1.0, material=1)
    n = 3000
    images, _, _ = renderer.batch([agg] * n, seeds=range(n), threads=2)
    electrons = dose * 0.5**2
    clean = float(LUTS["WO3"](2.0))
    counts = images[:, 30, 30].astype(float) * electrons
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)  # whole electrons
    mean = clean * electrons
    assert counts.mean() == pytest.approx(mean, abs=5 * math.sqrt(mean / n))
    assert counts.var() == pytest.approx(mean, rel=0.15)
    with pytest.raises(ValueError, match="dose"):
        render_haadf(agg, pixel_size=0.05, shape=61, dose=-1.0, **PLAIN)


def test_probe_kernel_is_the_probe_intensity():
    kernel = probe_kernel(Probe(energy=300e3, semiangle=20.0), 0.005)
    assert kernel.shape[0] % 2 == 1 and kernel.sum() == pytest.approx(1.0, rel=1e-6)
    c = kernel.shape[0] // 2
    assert kernel[c, c] == kernel.max()

    # a Gaussian source multiplies the kernel's spectrum by exp(-2 pi^2 sigma^2 k^2)
    def spectrum(k, pixel, freq):
        x = (np.arange(k.shape[1]) - k.shape[1] // 2) * pixel
        return abs((k.sum(axis=0) * np.exp(-2j * np.pi * freq * x)).sum())

    sigma, pixel = 1.5, 0.2  # Å
    blurred = probe_kernel(Probe(energy=300e3, semiangle=20.0, source_size=sigma), pixel / 10,
                           fraction=1.0)  # fmt: skip
    sharp = probe_kernel(Probe(energy=300e3, semiangle=20.0), pixel / 10, fraction=1.0)
    for freq in (0.05, 0.1, 0.2):
        ratio = spectrum(blurred, pixel, freq) / spectrum(sharp, pixel, freq)
        assert ratio == pytest.approx(math.exp(-2 * (math.pi * sigma * freq) ** 2), rel=3e-3)
    # a coarse pixel holds nearly all of an aberration-free probe
    assert probe_kernel(Probe(), 1.0).shape == (3, 3)
    # from 4 nm on one pixel holds it, computed on the fine grid; far coarser pixels
    # (whose fine grid would take GBs) give the same without it
    assert probe_kernel(Probe(), 4.0).tolist() == [[1.0]]
    assert probe_kernel(Probe(), 50.0).tolist() == [[1.0]]
    assert probe_kernel(Probe(defocus=500.0), 2.0).shape == (3, 3)


def test_probe_kernel_holds_its_share_of_any_aberrated_probe():
    from heteroagg.stem.renderer import PROBE_FRACTION, _binned_probe

    # one probe, its defocus given either way, gives one kernel
    by_defocus = probe_kernel(Probe(defocus=2000.0), 0.1)
    np.testing.assert_array_equal(probe_kernel(Probe(aberrations={"C10": -2000.0}), 0.1),
                                  by_defocus)  # fmt: skip
    # against the same probe binned on a window far wider than it spreads, the kernel holds
    # its share (to the 0.2 % that its own window's sampling of the aberrations costs)
    for probe in (Probe(cs=2e6), Probe(aberrations={"C12": 300.0, "phi12": 0.4})):
        kernel = probe_kernel(probe, 0.1)
        wide = _binned_probe(probe, 1.0, 11, 201)
        c, r = 100, kernel.shape[0] // 2
        assert wide[c - r : c + r + 1, c - r : c + r + 1].sum() > PROBE_FRACTION - 2e-3, probe
    with pytest.raises(ValueError, match="aberrations are too large"):
        probe_kernel(Probe(cs=1e12), 0.01)


@pytest.mark.parametrize("pixel_nm", [0.05, 0.1])
def test_probe_kernel_integrates_the_airy_disc_over_pixels(pixel_nm):
    # an aberration-free probe is the Airy pattern pi k^2 (2 J1(v) / v)^2, v = 2 pi k r,
    # k = semiangle / wavelength; the kernel holds its integral over each pixel,
    # renormalised to the kernel's window
    from heteroagg._core import electron_wavelength
    from scipy import integrate, special

    k = 20e-3 / electron_wavelength(300e3)  # 1/Å

    def airy(y, x):
        v = 2 * math.pi * k * math.hypot(x, y)
        return math.pi * k * k * (2 * special.j1(v) / v) ** 2 if v > 0 else math.pi * k * k

    def pixel_integral(x0, x1, y0, y1):
        return integrate.dblquad(airy, x0, x1, y0, y1, epsabs=1e-10)[0]

    kernel = probe_kernel(Probe(energy=300e3, semiangle=20.0), pixel_nm)
    p, c = 10 * pixel_nm, kernel.shape[0] // 2
    half = (c + 0.5) * p
    window = 4 * integrate.dblquad(airy, 0, half, 0, half, epsabs=1e-9, epsrel=1e-9)[0]
    centre = pixel_integral(-p / 2, p / 2, -p / 2, p / 2) / window
    beside = pixel_integral(p / 2, 3 * p / 2, -p / 2, p / 2) / window
    assert kernel[c, c] == pytest.approx(centre, rel=4e-3)
    assert kernel[c, c + 1] == pytest.approx(beside, rel=4e-3)


def test_blur_keeps_the_integrated_intensity():
    agg = Aggregate([[0, 0, 0], [2.5, 0.5, 0]], [1.5, 1.0], [0, 1])
    kw = dict(
        pixel_size=0.02, shape=(200, 300), rotation=np.eye(3), luts=LUTS, orientation_spread=False
    )
    sharp = render_haadf(agg, probe=None, **kw)
    blurred = render_haadf(agg, probe=Probe(energy=300e3, semiangle=20.0, source_size=0.5), **kw)
    assert blurred.sum() == pytest.approx(sharp.sum(), rel=1e-4)
    assert blurred.max() < sharp.max()


def test_detector_response_and_jitter():
    agg = sphere(radius=1.5)
    base = render_haadf(agg, pixel_size=0.1, shape=41, **PLAIN)
    scaled = render_haadf(agg, pixel_size=0.1, shape=41, gain=2.5, black_level=0.1, **PLAIN)
    np.testing.assert_allclose(scaled, 0.1 + 2.5 * base, rtol=1e-6)
    noisy = render_haadf(agg, pixel_size=0.1, shape=41, read_noise=0.01, **PLAIN)
    assert (noisy - base).std() == pytest.approx(0.01, rel=0.1)
    jittered = render_haadf(agg, pixel_size=0.1, shape=41, scan_jitter=2.0, **PLAIN)
    assert not np.array_equal(jittered, base)
    # each line is the clean line, shifted: same peak height within interpolation
    assert jittered.max() <= base.max() + 1e-7
    np.testing.assert_allclose(jittered.sum(axis=1), base.sum(axis=1), rtol=0.05, atol=1e-4)


def test_support_film_background():
    agg = sphere(radius=1.0)
    carbon = default_lut("C")
    image = render_haadf(agg, pixel_size=0.2, shape=64, probe=None, orientation_spread=False,
                         support=5.0)  # fmt: skip
    vacuum = image[:10, :10]
    assert vacuum.std() > 0  # the film's atoms fluctuate from pixel to pixel
    spread = vacuum.std() / np.sqrt(vacuum.size)
    assert vacuum.mean() == pytest.approx(float(carbon(5.0)), abs=5 * spread)


def test_field_of_view_and_lut_range():
    agg = Aggregate([[-6.0, 0, 0], [6.0, 0, 0]], [2.0, 2.0], [0, 1])
    with pytest.warns(FieldOfViewWarning, match="field of view"):
        r = render_haadf(agg, pixel_size=0.1, shape=64, rotation=np.eye(3), labels=True, **PLAIN)
    assert r.clipped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inside = render_haadf(
            agg, pixel_size=0.2, shape=128, rotation=np.eye(3), labels=True, **PLAIN
        )
    assert not inside.clipped
    short = {"TiO2": lut("TiO2", 0.004, t_max=2.0, n=11), "WO3": LUTS["WO3"]}
    with pytest.raises(ValueError, match=r"exceeds its LUT.*extrapolate"):
        render_haadf(agg, pixel_size=0.2, shape=128, luts=short, probe=None)
    image = render_haadf(
        agg, pixel_size=0.2, shape=128, luts=short, probe=None, orientation_spread=False,
        extrapolate=True, rotation=np.eye(3),
    )  # fmt: skip
    assert np.isfinite(image).all() and image.max() < 1


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(pixel_size=0.0), "pixel_size"),
        (dict(pixel_size=math.inf), "pixel_size"),
        (dict(shape=(0, 4)), "shape"),
        (dict(shape=(4, 4, 4)), "shape"),
        (dict(rotation=np.diag([1.0, 1.0, -1.0])), "proper rotation"),
        (dict(rotation=np.ones((2, 2))), "3x3"),
        (dict(seed=-3), "seed"),
        (dict(luts={"TiO2": LUTS["TiO2"]}), "no LUT for"),
        (dict(luts={"TiO2": LUTS["TiO2"], "WO3": 3}), "must be a HaadfLUT"),
        (dict(scan_jitter=-1.0), "scan_jitter"),
        (dict(probe="gaussian"), "probe must be"),
        (dict(support=-2.0), "support"),
        (dict(dose=1e20), "dose must be"),  # its counts would overflow
        (dict(dose=1e12, pixel_size=300.0), "electrons per pixel"),  # and so would these
        (dict(pixel_size=1e-300), "pixel_size"),
        (dict(gain="2"), "gain must be a number"),
        (dict(read_noise=None), "read_noise must be a number"),
        (dict(black_level=1e300), "black_level must be a number"),
        (dict(support="5"), "support must be"),
        (dict(support=True), "support must be"),
        (dict(luts={"TiO2": LUTS["WO3"], "WO3": LUTS["TiO2"]}), "holds the WO3 LUT"),
        (dict(dose=1e-320, pixel_size=1e-3), "fewer than 1e-300 electrons"),  # 0/0 before
        (dict(support=1e6, pixel_size=1e6), "atoms in a pixel's column"),  # an overflow
    ],
)
def test_bad_input_is_refused(kw, message):
    args = dict(pixel_size=0.1, shape=16, luts=LUTS)
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        render_haadf(sphere(), **args)


def test_a_particle_lut_is_no_support_film():
    with pytest.raises(ValueError, match="not a film's"):
        HaadfRenderer(pixel_size=0.5, shape=16, support=2.0, support_lut=default_lut("WO3"))


def test_luts_with_other_optics_are_refused():
    other = lut("WO3", 0.02)
    other.inputs["semiangle_mrad"] = 25.0
    with pytest.raises(ValueError, match="different optics"):
        render_haadf(sphere(), pixel_size=0.1, shape=16, luts={"TiO2": LUTS["TiO2"], "WO3": other})


@pytest.mark.skipif(heteroagg.cuda_status()[0], reason="a CUDA device is available")
def test_explicit_cuda_without_a_device_raises():
    with pytest.raises(RuntimeError, match="device='cuda' was requested"):
        render_haadf(sphere(), pixel_size=0.1, shape=16, luts=LUTS, device="cuda")
    with pytest.raises(RuntimeError, match="device='cuda' was requested"):
        HaadfRenderer(pixel_size=0.1, shape=16, luts=LUTS, device="cuda")


def test_batch_equals_single_renders_on_any_thread_count():
    rng = np.random.default_rng(1)
    aggs = [
        Aggregate(rng.uniform(-3, 3, (5, 3)), rng.uniform(0.8, 1.5, 5), rng.integers(0, 2, 5))
        for _ in range(6)
    ]
    renderer = HaadfRenderer(pixel_size=0.1, shape=(48, 40), luts=LUTS, dose=500.0, scan_jitter=0.3)
    seeds = [7, 8, 9, 10, 11, 12]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        one, rot1, clipped = renderer.batch(aggs, seeds, threads=1)
        two, rot2, _ = renderer.batch(aggs, seeds, threads=2**40)  # more than images
        singles = [renderer(a, s) for a, s in zip(aggs, seeds, strict=True)]
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(rot1, rot2)
    for image, single in zip(one, singles, strict=True):
        np.testing.assert_array_equal(image, single)
    assert clipped.dtype == bool and clipped.shape == (6,)
    with pytest.raises(ValueError, match="seeds"):
        renderer.batch(aggs, seeds[:2])


def test_batch_writes_into_out_in_place():
    rng = np.random.default_rng(2)
    aggs = [
        Aggregate(rng.uniform(-2, 2, (4, 3)), rng.uniform(0.8, 1.2, 4), rng.integers(0, 2, 4))
        for _ in range(3)
    ]
    # the C++ core's own output is the reference below, so the renderer is pinned to the CPU
    renderer = HaadfRenderer(pixel_size=0.1, shape=(40, 32), luts=LUTS, dose=300.0, device="cpu")
    expected, _, _ = renderer.batch(aggs, [1, 2, 3])
    out = np.full((3, 40, 32), np.nan, np.float32)
    returned, _, _ = renderer.batch(aggs, [1, 2, 3], out=out)
    assert returned is out
    np.testing.assert_array_equal(out, expected)
    # the core renders straight into a C-contiguous array: no copy in between
    arrays = [renderer._arrays(a) for a in aggs]
    target = np.zeros_like(out)
    images, _, _ = heteroagg._core.render_haadf_batch(
        arrays, [1, 2, 3], renderer._settings, 1, target
    )
    assert np.shares_memory(images, target)
    np.testing.assert_array_equal(target, expected)
    # a strided out is filled through a copy
    wide = np.zeros((3, 40, 64), np.float32)
    renderer.batch(aggs, [1, 2, 3], out=wide[:, :, ::2])
    np.testing.assert_array_equal(wide[:, :, ::2], expected)
    with pytest.raises(ValueError, match="shape"):
        renderer.batch(aggs, [1, 2, 3], out=np.zeros((3, 32, 40), np.float32))
    with pytest.raises(ValueError, match="float32"):
        renderer.batch(aggs, [1, 2, 3], out=np.zeros((3, 40, 32)))
    frozen = np.zeros((3, 40, 32), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        renderer.batch(aggs, [1, 2, 3], out=frozen)


def test_material_label_is_the_material_with_the_longest_total_path():
    """Two TiO2 spheres (3 nm chords each) above one WO3 sphere (a 4 nm chord):
    the beam crosses 6 nm of TiO2 and 4 nm of WO3, so the label is TiO2, though
    the single longest chord is WO3's."""
    agg = Aggregate([[0, 0, 0], [0, 0, 4], [0, 0, -5]], [1.5, 1.5, 2.0], [0, 0, 1])
    r = render_haadf(agg, pixel_size=0.5, shape=9, rotation=np.eye(3), center=(0.0, 0.0),
                     labels=True, probe=None, luts=LUTS)  # fmt: skip
    assert r.thickness[:, 4, 4].tolist() == pytest.approx([6.0, 4.0])
    assert r.material[4, 4] == 0 and r.particle[4, 4] == 2  # the longest chord's particle
    hit = r.thickness.sum(axis=0) > 0
    np.testing.assert_array_equal(r.material[hit], np.argmax(r.thickness, axis=0)[hit])
    assert np.all(r.material[~hit] == -1)


@pytest.mark.parametrize(("pixel_size", "film"), [(0.5, 5.0), (0.1, 5.0), (0.05, 1.0), (0.02, 1.0)])
def test_support_film_keeps_its_mean_at_any_pixel_size(pixel_size, film):
    """A pixel's film column holds a Poisson number of atoms N (mean n A t): the
    film's optical density there is the LUT's at t times N / <N>, never negative
    and of the LUT's mean at any pixel size.  The vacuum's mean intensity is
    therefore 1 - E[exp(-D N / <N>)], the Poisson generating function.  (At
    0.05 nm a column holds 0.24 atoms on average.)"""
    from heteroagg.structures import AMORPHOUS_CARBON_DENSITY

    carbon = default_lut("C")
    far = Aggregate([[1e3, 1e3, 0.0]], [0.1], [0])  # nothing in the field but the film
    with pytest.warns(FieldOfViewWarning):
        image = render_haadf(far, pixel_size=pixel_size, shape=128, probe=None, support=film,
                             center=(0.0, 0.0), rotation=np.eye(3))  # fmt: skip
    per_nm3 = AMORPHOUS_CARBON_DENSITY / 12.011 * 6.02214076e23 * 1e-21
    atoms = film * pixel_size**2 * per_nm3
    density = -np.log1p(-carbon(film))  # the LUT's optical density of the film
    expected = 1 - np.exp(atoms * np.expm1(-density / atoms))  # E[1 - exp(-D N / atoms)]
    spread = image.std() / np.sqrt(image.size)  # pixels are independent
    assert image.mean() == pytest.approx(expected, abs=5 * spread)
    # the optical density itself keeps the LUT's mean
    densities = -np.log1p(-image.astype(np.float64))
    assert densities.mean() == pytest.approx(density, abs=5 * densities.std() / np.sqrt(image.size))


def test_numpy_numbers_are_numbers():
    agg = sphere(radius=1.5)
    plain = render_haadf(agg, pixel_size=0.5, shape=16, seed=3, **PLAIN)
    same = render_haadf(agg, pixel_size=np.float32(0.5), shape=np.int64(16), seed=3, **PLAIN)
    np.testing.assert_array_equal(same, plain)
    with pytest.raises(ValueError, match="pixel_size"):
        render_haadf(agg, pixel_size=np.bool_(True), shape=16, **PLAIN)


def test_the_field_of_view_warning_points_at_the_callers_line():
    import inspect

    far = Aggregate([[-20.0, 0.0, 0.0], [20.0, 0.0, 0.0]], [2.0, 2.0], [0, 0])  # wider than 8 nm
    renderer = HaadfRenderer(pixel_size=0.5, shape=16, **PLAIN)
    with pytest.warns(FieldOfViewWarning) as direct:
        line = inspect.currentframe().f_lineno + 1
        renderer(far)
    assert (direct[0].filename, direct[0].lineno) == (__file__, line)
    with pytest.warns(FieldOfViewWarning) as through:
        line = inspect.currentframe().f_lineno + 1
        render_haadf(far, pixel_size=0.5, shape=16, **PLAIN)
    assert (through[0].filename, through[0].lineno) == (__file__, line)
