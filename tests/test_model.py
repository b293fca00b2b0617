import math
from fractions import Fraction

import numpy as np
import pytest

import heteroagg
from heteroagg import ModelParams
from heteroagg.model import wo3_counts

BAD_VALUES = [
    ("n_particles", 1, r"n_particles.*\[2,"),
    ("n_particles", 2.5, "n_particles"),
    ("n_particles", True, "n_particles"),
    ("n_particles", 10**12, r"n_particles.*\[2,"),
    ("frac_w", -0.1, r"frac_w.*\[0, 1\]"),
    ("frac_w", 1.01, r"frac_w.*\[0, 1\]"),
    ("frac_w", math.nan, "frac_w"),
    ("radius_ti", 0.0, r"radius_ti.*\[0\.001, 10000\] nm"),
    ("radius_w", -1.0, r"radius_w.*\[0\.001, 10000\] nm"),
    ("radius_w", math.inf, "radius_w"),
    ("radius_ti", 1e-300, "radius_ti"),  # r^3 and r^5 of the moments would underflow
    ("radius_w", 1e50, "radius_w"),  # and overflow
    ("sigma_g", 0.9, r"sigma_g.*\[1, 3\]"),
    ("sigma_g", math.nan, "sigma_g"),
    ("fractal_dim", 1.0, r"fractal_dim.*\(1, 3\)"),
    ("fractal_dim", 3.0, r"fractal_dim.*\(1, 3\)"),
    ("fractal_dim", math.nan, "fractal_dim"),
    ("prefactor", 0.0, "prefactor"),
    ("segregation", 1.5, r"segregation.*\[0, 1\]"),
    ("overlap", 0.5, r"overlap.*\[0, 0.5\)"),
    ("overlap", "0.1", "overlap"),
    ("frac_w", 10**400, "frac_w must be a finite number"),  # no float holds it
    ("n_particles", 10**400, "n_particles"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES)
def test_invalid_fields_raise_value_error_naming_field_and_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelParams(**{field: value})


def test_integral_float_particle_count_is_accepted():
    assert ModelParams(n_particles=12.0).n_particles == 12


@pytest.mark.parametrize("n", [2, 3, 7, 10, 33, 100, 101])
@pytest.mark.parametrize("frac_w", [0.0, 0.05, 0.25, 0.5, 0.55, 1.0])
def test_wo3_count_is_round_half_up(n, frac_w):
    p = ModelParams(n_particles=n, frac_w=frac_w)
    assert p.n_wo3 == math.floor(Fraction(str(frac_w)) * n + Fraction(1, 2))
    assert p.n_tio2 == n - p.n_wo3


def test_wo3_count_rounds_the_halves_of_the_decimal_product_up():
    # 0.29 * 50 is 14.499999999999998 in binary; the decimal product is 14.5
    assert ModelParams(n_particles=50, frac_w=0.29).n_wo3 == 15
    assert ModelParams(n_particles=45, frac_w=0.7).n_wo3 == 32
    fracs = [k / 1000 for k in range(1001)]
    counts = range(2, 120)
    expected = [[math.floor(Fraction(str(f)) * n + Fraction(1, 2)) for f in fracs] for n in counts]
    got = [[ModelParams(n_particles=n, frac_w=f).n_wo3 for f in fracs] for n in counts]
    assert got == expected
    # the vectorised twin counts as the sampler does
    f, n = np.meshgrid(fracs, counts)
    np.testing.assert_array_equal(wo3_counts(f, n), expected)


def test_params_are_frozen_and_round_trip():
    p = ModelParams(n_particles=40, segregation=0.3)
    with pytest.raises(AttributeError):
        p.n_particles = 3  # type: ignore[misc]
    assert ModelParams.from_dict(p.as_dict()) == p
    with pytest.raises(ValueError, match="unknown"):
        ModelParams.from_dict({"n_particles": 4, "bogus": 1})
    assert ModelParams.field_names()[0] == "n_particles"


def test_fractal_law():
    assert heteroagg.fractal_law_rg(100, 2.0, 2.0, 1.0) == pytest.approx(20.0)
    for args, name in (((0, 2.0, 2.0, 1.0), "n"), ((10, -1.0, 1.8, 1.3), "r_geo"),
                       ((10, 2.0, 0.0, 1.3), "fractal_dim"), ((10, 2.0, 1.8, -1.0), "prefactor"),
                       ((10, math.nan, 1.8, 1.3), "r_geo")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^{name} must be"):
            heteroagg.fractal_law_rg(*args)
