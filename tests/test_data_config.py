"""heteroagg.ParameterSpace and the dataset configuration."""

import math

import numpy as np
import pytest
from scipy import stats

from heteroagg import GenerationError, ModelParams, ParameterSpace, derive_seed, sample_aggregate
from heteroagg.data import DatasetConfig, ImagingConfig, Prior, default_config
from heteroagg.stem import default_lut

SPACE = {
    "n_particles": {"prior": "uniform", "low": 10, "high": 20},
    "frac_w": {"prior": "uniform", "low": 0.1, "high": 0.4},
    "radius_ti": {"prior": "log-uniform", "low": 2.0, "high": 10.0},
    "radius_w": 3.0,
    "sigma_g": {"prior": "fixed", "value": 1.3},
    "fractal_dim": {"prior": "uniform", "low": 1.7, "high": 2.0},
    "prefactor": 1.3,
    "segregation": {"prior": "uniform", "low": 0.0, "high": 1.0},
    "overlap": 0.0,
}


@pytest.fixture(scope="module")
def draws():
    space = ParameterSpace(SPACE)
    return space, space.sample_many(11, range(4000))


def test_draws_are_pure_functions_of_seed_and_index(draws):
    space, many = draws
    assert space.sample(11, 123) == many[123]
    assert space.sample(12, 123) != many[123]
    assert space.varied == ("n_particles", "frac_w", "radius_ti", "fractal_dim", "segregation")


def test_draws_follow_their_priors(draws):
    _, many = draws
    radius = np.array([p.radius_ti for p in many])
    frac = np.array([p.frac_w for p in many])
    n = np.array([p.n_particles for p in many])
    assert {p.radius_w for p in many} == {3.0} and {p.sigma_g for p in many} == {1.3}
    # log-uniform: log(r) is uniform on [log 2, log 10]
    ks = stats.kstest(np.log(radius), stats.uniform(math.log(2), math.log(5)).cdf)
    assert ks.pvalue > 1e-3
    assert stats.kstest(frac, stats.uniform(0.1, 0.3).cdf).pvalue > 1e-3
    # integers 10..20, both ends included, equally likely
    counts = np.bincount(n - 10, minlength=11)
    assert counts.size == 11 and stats.chisquare(counts).pvalue > 1e-3


def test_log_uniform_integers_weigh_by_log_ratio():
    space = ParameterSpace(
        {**SPACE, "n_particles": {"prior": "log-uniform", "low": 10, "high": 150}}
    )
    n = np.array([p.n_particles for p in space.sample_many(5, range(20000))])
    assert n.min() >= 10 and n.max() <= 150
    expected = np.log((np.arange(10, 151) + 1) / np.arange(10, 151)) / math.log(151 / 10)
    counts = np.bincount(n - 10, minlength=141)
    assert stats.chisquare(counts, expected * n.size).pvalue > 1e-3


def test_normalize_round_trip(draws):
    space, many = draws
    columns = {
        name: np.array([getattr(p, name) for p in many]) for name in ModelParams.field_names()
    }
    x = space.normalize(columns)
    assert x.shape == (len(many), 5) and x.min() >= 0 and x.max() <= 1
    back = space.denormalize(x)
    for name, values in columns.items():
        np.testing.assert_allclose(back[name], values, rtol=1e-12)
    # log-uniform fields are normalised on a log scale: the geometric middle maps to 0.5
    middle = space.normalize(ModelParams(n_particles=15, radius_ti=math.sqrt(20.0)))
    assert middle[space.varied.index("radius_ti")] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="expected 5"):
        space.denormalize(np.zeros(3))
    # a space where nothing varies has no columns, and reads back its fixed values
    fixed = ParameterSpace(ModelParams().as_dict())
    assert fixed.varied == () and fixed.normalize(columns).shape == (len(many), 0)
    assert fixed.normalize(ModelParams()).shape == (0,)
    assert fixed.denormalize(np.empty((3, 0)))["frac_w"].tolist() == [ModelParams().frac_w] * 3


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sizes": 3}, "unknown ModelParams fields"),
        ({"frac_w": {"prior": "gaussian", "low": 0, "high": 1}}, "prior must be one of"),
        ({"frac_w": {"prior": "uniform", "low": 0.5, "high": 0.1}}, "low < high"),
        ({"radius_ti": {"prior": "log-uniform", "low": 0.0, "high": 2.0}}, "low > 0"),
        ({"prefactor": {"prior": "log-uniform", "low": 5e-324, "high": 10.0}}, "spans more"),
        ({"frac_w": {"prior": "uniform", "low": 0.1}}, "missing 'high'"),
        ({"n_particles": {"prior": "uniform", "low": 2.5, "high": 9}}, "integers"),
        ({"frac_w": {"prior": "uniform", "low": 0.1, "high": 1.5}}, "prior of frac_w leaves"),
        # the field at fault is named, whichever field is checked first
        ({"fractal_dim": {"prior": "uniform", "low": 1.0, "high": 2.0}}, "prior of fractal_dim"),
        ({"frac_w": math.nan}, "^frac_w: prior bounds must be finite"),
        ({"frac_w": "half"}, "give a number"),
        # a key that does nothing for the chosen kind would be silently ignored
        (
            {"frac_w": {"prior": "uniform", "low": 0.1, "high": 0.4, "value": 0.3}},
            r"frac_w: keys \['value'\] do not apply to a 'uniform' prior",
        ),
        ({"frac_w": {"prior": "fixed", "value": 0.3, "low": 0.1}}, "do not apply to a 'fixed'"),
    ],
)
def test_bad_priors_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        ParameterSpace({**SPACE, **change})
    missing = dict(SPACE)
    del missing["overlap"]
    with pytest.raises(ValueError, match="no prior for"):
        ParameterSpace(missing)


def test_default_config_builds_models_and_round_trips(tmp_path):
    config = default_config()
    assert isinstance(config.params, ParameterSpace)
    assert config.imaging.shape == (256, 256) and config.imaging.rotation == "random"
    assert config.imaging.detector == (52.0, 255.0) and not config.imaging.bake_noise
    lut = default_lut("TiO2").inputs  # the shipped LUTs render it
    assert config.imaging.energy == lut["energy_eV"]
    assert config.imaging.semiangle == lut["semiangle_mrad"]
    assert config.imaging.extrapolate
    draws = config.params.sample_many(0, range(300))
    n = [p.n_particles for p in draws]
    assert 10 <= min(n) and max(n) <= 150
    # docs/data.md: about 5 % of default draws cannot be built
    failed = 0
    for i, theta in enumerate(draws):
        try:
            sample_aggregate(theta, derive_seed(0, i))
        except GenerationError:
            failed += 1
    assert failed / len(draws) < 0.10
    # the resolved config reads back unchanged
    again = DatasetConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    path = tmp_path / "cfg.toml"
    path.write_text(
        "[params]\n"
        + "".join(
            f"{name} = {value!r}\n" for name, value in SPACE.items() if not isinstance(value, dict)
        )
        + 'n_particles = { prior = "uniform", low = 10, high = 20 }\n'
        + "frac_w = 0.2\nradius_ti = 4.0\nsigma_g = 1.3\nfractal_dim = 1.8\nsegregation = 0.5\n"
        + "[imaging]\npixel_size = 0.5\nshape = [128, 96]\ndose = 2000.0\n"
    )
    custom = DatasetConfig.from_toml(path)
    assert custom.params.varied == ("n_particles",)
    assert custom.imaging.shape == (128, 96) and custom.imaging.dose == Prior("fixed", 2e3, 2e3)


def test_bad_configs_are_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[params\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        DatasetConfig.from_toml(path)
    with pytest.raises(ValueError, match=r"needs a \[params\] table"):
        DatasetConfig.from_dict({"imaging": {}})
    with pytest.raises(ValueError, match="unknown config tables"):
        DatasetConfig.from_dict({"params": SPACE, "training": {}})
    for table in ({"params": 5}, {"params": SPACE, "imaging": "abc"}):
        with pytest.raises(ValueError, match="must be a table"):
            DatasetConfig.from_dict(table)
    with pytest.raises(ValueError, match="must be a table of field"):
        ParameterSpace([("frac_w", 0.3)])
    with pytest.raises(ValueError, match="unknown imaging settings"):
        ImagingConfig.from_config({"voltage": 300})
    with pytest.raises(ValueError, match="rotation"):
        ImagingConfig(rotation="tilted")
    with pytest.raises(ValueError, match="shape"):
        ImagingConfig(shape=(256,))
    with pytest.raises(ValueError, match="dose"):
        ImagingConfig(dose=Prior("uniform", -5.0, 10.0))
    # doses the renderer refuses (shot noise of 1e20 e/Å² stopped generation with numpy's
    # words), and doses that leave a pixel no electrons
    with pytest.raises(ValueError, match="doses must stay within"):
        ImagingConfig(dose=Prior("log-uniform", 1e3, 1e20))
    with pytest.raises(ValueError, match="fewer than 1e-300 electrons"):
        ImagingConfig(dose=Prior("uniform", 1e-310, 1e3), pixel_size=0.001)
    with pytest.raises(ValueError, match="pixel_size"):
        ImagingConfig.from_config({"pixel_size": -1.0})


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("support", "0", "support must be a number"),
        ("support", math.nan, "support must be a number"),
        ("shape", 256, "shape must be"),
        ("shape", "ab", "shape must be"),
        ("shape", [256.0, 256.0], "shape must be"),
        ("detector", 52.0, "detector must be"),
        ("detector", ["52", "255"], "detector must be"),
        ("detector", [255.0, 52.0], "detector must be"),
        ("energy", True, "energy must be a positive number"),
        ("extrapolate", "false", "extrapolate must be true or false"),
        ("bake_noise", 1, "bake_noise must be true or false"),
        ("orientation_spread", "yes", "orientation_spread must be true or false"),
        ("dose", 0, "doses > 0"),
        ("dose", {"prior": "uniform", "low": 0, "high": 10}, "doses > 0"),
    ],
)
def test_mistyped_imaging_settings_are_refused(setting, value, message):
    with pytest.raises(ValueError, match=message):
        ImagingConfig.from_config({setting: value})


def test_optics_must_be_the_luts(tmp_path):
    """The images are rendered with the shipped LUTs; other optics are refused
    where images are made, not written into a dataset that does not have them."""
    from heteroagg.data import generate

    ImagingConfig().check_optics()
    config = default_config().to_dict()
    config["imaging"].update(energy=200e3, detector=[80.0, 200.0])
    other = DatasetConfig.from_dict(config)  # a dataset's record of other optics still reads
    with pytest.raises(ValueError, match=r"imaging.energy = 200000.0 \(LUTs: 300000.0\)"):
        other.imaging.check_optics()
    with pytest.raises(ValueError, match=r"imaging.detector = \(80.0, 200.0\)"):
        other.imaging.renderer()
    with pytest.raises(ValueError, match="calibrated for other optics"):
        generate(other, 2, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_numpy_numbers_are_stored_as_plain_floats():
    import json

    import numpy as np

    imaging = ImagingConfig(pixel_size=np.float32(0.5), support=np.float64(2.0))
    assert type(imaging.pixel_size) is float and imaging.pixel_size == 0.5
    assert json.loads(json.dumps(imaging.to_config()))["support"] == 2.0
