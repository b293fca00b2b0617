"""The compiled core refuses arguments out of its contracts with ValueError.

The public Python classes check most of these first; the core checks them
again, so direct calls into ``heteroagg._core`` (and C++ callers) get an
error instead of an out-of-bounds read, a wrapped size or silent NaNs.
"""

import math

import numpy as np
import pytest

from heteroagg import _core

NAN = math.nan


def potentials(gpts=(8, 8), sampling=(0.5, 0.5), origin=(0.0, 0.0)):
    atoms = np.full((1, 3), 0.5)
    numbers = np.array([8], np.int32)
    return _core.projected_potentials(
        atoms, numbers, gpts, sampling, origin, [0.0, 1.0], "lobato", True, 1
    )


@pytest.mark.parametrize(
    ("gpts", "sampling", "origin", "message"),
    [
        ((2**32, 2**32), (0.1, 0.1), (0.0, 0.0), "exceeds"),  # ny * nx wraps to 0 in 64 bits
        ((8, 8), (math.inf, 0.5), (0.0, 0.0), "positive, finite size"),
        ((8, 8), (0.5, 0.5), (NAN, 0.0), "origin must be finite"),
    ],
)
def test_potentials_refuse_bad_grids(gpts, sampling, origin, message):
    assert np.isfinite(potentials()).all()
    with pytest.raises(ValueError, match=message):
        potentials(gpts, sampling, origin)


def scan(detector=(0.0, 30.0, [], []), thickness=(2.0,), aberrations=()):
    return _core.multislice(
        np.zeros((1, 32, 32), np.float32), list(thickness), (0.2, 0.2), 200e3, 20.0,
        list(aberrations), [detector], [1], (0, 0), np.array([[3.2, 3.2]]), 1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("detector", "message"),
    [
        ((0.0, 0.0, [0.0, 10.0, 20.0, 30.0], [1.0]), "as many weights as angles"),
        ((0.0, 0.0, [0.0, 10.0, 20.0, 30.0], []), "as many weights as angles"),
        ((0.0, 0.0, [0.0], [1.0] * 1000), "as many weights as angles"),
        ((0.0, 0.0, [30.0, 0.0, 20.0], [1.0, 1.0, 1.0]), "increase strictly"),
        ((0.0, 0.0, [0.0, NAN], [1.0, 1.0]), "finite"),
        ((40.0, 30.0, [], []), "inner < outer"),
    ],
)
def test_multislice_refuses_bad_detectors(detector, message):
    # vacuum sends nothing beyond the probe's 20 mrad: a curve over 0-30 mrad catches all of it
    curve = scan((0.0, 0.0, [0.0, 10.0, 20.0, 30.0], [1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_allclose(curve.ravel(), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match=message):
        scan(detector)


def test_multislice_refuses_bad_thicknesses_and_aberrations():
    with pytest.raises(ValueError, match="thicknesses"):
        scan(thickness=[NAN])
    with pytest.raises(ValueError, match="orders n >= 1"):
        scan(aberrations=[(-1, 0, 1.0, 0.0)])
    with pytest.raises(ValueError, match="finite coefficients"):
        scan(aberrations=[(1, 0, NAN, 0.0)])


def test_fill_sphere_refuses_a_non_finite_rotation():
    cell, frac, numbers = np.eye(3) * 3, np.zeros((1, 3)), np.array([22], np.uint8)
    positions, _, _ = _core.fill_sphere(
        cell, frac, numbers, np.zeros(3), 5.0, np.eye(3), np.zeros(3)
    )
    assert len(positions) > 0
    with pytest.raises(ValueError, match="rotation must be finite"):
        _core.fill_sphere(cell, frac, numbers, np.zeros(3), 5.0, np.full((3, 3), NAN), np.zeros(3))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("pair_tries", 0, "pair_tries must be an integer >= 1"),
        ("pair_tries", -1, "pair_tries must be an integer >= 1"),
        ("placement_tries", 0, "placement_tries"),
        ("gamma_relaxations", -1, "gamma_relaxations"),
        ("max_rg_error", NAN, "max_rg_error must be a finite number"),
        ("aggregate_tries", -3, "aggregate_tries must be an integer >= 1"),
    ],
)
def test_sampler_refuses_bad_options(option, value, message):
    params = _core.CoreParams()
    _core.sample_aggregate(params, 1, _core.SamplerOptions())
    options = _core.SamplerOptions()
    setattr(options, option, value)
    with pytest.raises(ValueError, match=message):
        _core.sample_aggregate(params, 1, options)


def test_integer_arrays_are_refused_rather_than_wrapped():
    """numpy's unsafe cast would make material 257 into 1 and atomic number 300
    into 44; the core takes integer arrays only when they convert exactly."""
    centers, radii = np.array([[0.0, 0, 0], [2.0, 0, 0]]), np.ones(2)
    exact = _core.descriptors(centers, radii, np.array([0, 1]), 1e-3)
    assert exact["n_w"] == 1 and exact["n_contacts"] == 1
    assert _core.descriptors(centers, radii, [0.0, 1.0], 1e-3)["n_w"] == 1  # whole floats
    for materials in ([0, 257], [0.0, 0.9], [-1, 1], [0.0, NAN]):
        with pytest.raises(ValueError, match=r"whole numbers in \[0, 255\]"):
            with np.errstate(invalid="ignore"):  # numpy's own note on casting NaN
                _core.descriptors(centers, radii, np.array(materials), 1e-3)
    cell, frac = np.eye(3) * 3, np.zeros((1, 3))
    with pytest.raises(ValueError, match="whole numbers"):
        _core.fill_sphere(cell, frac, np.array([300]), np.zeros(3), 5.0, np.eye(3), np.zeros(3))
    atoms, grid = np.full((1, 3), 0.5), ((8, 8), (0.5, 0.5), (0.0, 0.0), [0.0, 1.0])
    with pytest.raises(ValueError, match="whole numbers"):
        _core.projected_potentials(atoms, np.array([2**32 + 8]), *grid, "lobato", True, 1)
