"""heteroagg.stem.HaadfLUT and the LUTs shipped with heteroagg."""

import numpy as np
import pytest

from damaged_files import flip_member_bytes
from heteroagg.stem import HaadfLUT, default_lut
from heteroagg.stem.calibration import DEFAULT_CALIBRATIONS
from heteroagg.structures import ANATASE, GAMMA_WO3

OPTICS = {"energy_eV": 300e3, "semiangle_mrad": 20.0, "detector": {"kind": "annular"}}


def exponential_lut(rate=0.02, t_max=10.0, n=51, material="TiO2"):
    """I(t) = 1 - exp(-rate t): its optical density is exactly linear in t."""
    t = np.linspace(0, t_max, n)
    mean = -np.expm1(-rate * t)
    samples = np.stack([mean * 0.9, mean * 1.1])
    return HaadfLUT(material, t, mean, samples.std(axis=0, ddof=1), samples, dict(OPTICS))


def test_interpolation_is_linear_in_optical_density():
    lut = exponential_lut()
    t = np.array([0.0, 0.123, 3.33, 9.99, 10.0])
    np.testing.assert_allclose(lut(t), -np.expm1(-0.02 * t), rtol=1e-12)
    np.testing.assert_allclose(lut.optical_density(t[1:]), 0.02, rtol=1e-12)
    np.testing.assert_allclose(lut.optical_density()[0], 0.02, rtol=1e-9)


def test_thickness_beyond_the_table_raises_or_extrapolates():
    lut = exponential_lut()
    with pytest.raises(ValueError, match="exceeds the TiO2 LUT's range"):
        lut(10.5)
    # the thickest entry's optical density continues: exact for this law
    np.testing.assert_allclose(lut(25.0, extrapolate=True), -np.expm1(-0.02 * 25.0), rtol=1e-12)
    assert lut.spread(25.0, extrapolate=True) > lut.spread(10.0)
    # so does R, as the error message offers
    with pytest.raises(ValueError, match="extrapolate=True"):
        lut.optical_density(25.0)
    np.testing.assert_allclose(lut.optical_density(25.0, extrapolate=True), 0.02, rtol=1e-12)
    with pytest.raises(ValueError, match="finite and >= 0"):
        lut(-1.0)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(thickness=np.linspace(0.1, 1, 5)), "start at 0"),
        (dict(mean=np.full(5, 1.2)), r"\[0, 1\)"),
        (dict(std=np.full(5, -0.1)), "std must be"),
        (dict(samples=np.zeros((2, 4))), "samples must have shape"),
        (dict(thickness=np.array([0.0, 0.5, 0.4, 0.8, 1.0])), "increase strictly"),
        (dict(inputs={"probe": object()}), "JSON-compatible"),
        (dict(inputs=None), "inputs must be a mapping"),
        (dict(inputs=[("energy_eV", 3e5)]), "inputs must be a mapping"),
        (dict(mean=np.linspace(0.01, 0.1, 5)), "0 at thickness 0"),
        (dict(samples=np.full((2, 5), 0.01)), "0 at thickness 0"),
    ],
)
def test_bad_tables_are_refused(change, message):
    args = dict(
        material="TiO2", thickness=np.linspace(0, 1, 5), mean=np.linspace(0, 0.1, 5),
        std=np.zeros(5), samples=np.zeros((2, 5)),
    )  # fmt: skip
    args.update(change)
    with pytest.raises(ValueError, match=message):
        HaadfLUT(**args)


def test_save_and_load_round_trip(tmp_path):
    lut = exponential_lut()
    path = lut.save(tmp_path / "lut.npz")
    back = HaadfLUT.load(path)
    assert back.material == "TiO2" and back.inputs == lut.inputs
    for name in ("thickness", "mean", "std", "samples"):
        np.testing.assert_array_equal(getattr(back, name), getattr(lut, name))
    with pytest.raises(ValueError, match=r"\.npz"):
        lut.save(tmp_path / "lut.json")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a heteroagg HaadfLUT"):
        HaadfLUT.load(tmp_path / "other.npz")
    # a file cut short (an interrupted copy) or empty is not one either
    whole = path.read_bytes()
    for name, content in (("cut.npz", whole[: len(whole) // 2]), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="not a heteroagg HaadfLUT"):
            HaadfLUT.load(tmp_path / name)


def test_damaged_or_foreign_lut_files_raise_value_error(tmp_path):
    import json
    import shutil

    lut = exponential_lut()
    path = lut.save(tmp_path / "lut.npz")
    flipped = shutil.copy(path, tmp_path / "flipped.npz")
    flip_member_bytes(flipped, "samples")
    arrays = {name: getattr(lut, name) for name in ("thickness", "mean", "std", "samples")}
    header = {"format_version": 1, "material": "TiO2", "inputs": lut.inputs}
    no_thickness = {k: v for k, v in arrays.items() if k != "thickness"}
    np.savez(tmp_path / "no_thickness.npz", header=np.array(json.dumps(header)), **no_thickness)
    no_inputs = {k: v for k, v in header.items() if k != "inputs"}
    np.savez(tmp_path / "no_inputs.npz", header=np.array(json.dumps(no_inputs)), **arrays)
    np.savez(tmp_path / "list.npz", header=np.array("[1, 2]"), **arrays)
    for name in ("flipped", "no_thickness", "no_inputs", "list"):
        with pytest.raises(ValueError, match="HaadfLUT file"):
            HaadfLUT.load(tmp_path / f"{name}.npz")


@pytest.mark.parametrize("material", ["TiO2", "WO3", "C"])
def test_default_luts_record_their_settings(material):
    lut = default_lut(material)
    inputs = lut.inputs
    assert lut.material == material
    assert inputs["energy_eV"] == 300e3 and inputs["semiangle_mrad"] == 20.0
    assert inputs["detector"] == {"kind": "annular", "inner_mrad": 52.0, "outer_mrad": 255.0}
    assert inputs["orientations"] == lut.orientations >= 6
    assert np.all(np.diff(lut.mean) > 0), "HAADF intensity grows with thickness"
    assert default_lut(material.lower()) is lut
    # `heteroagg calibrate` with no options regenerates exactly these
    settings = DEFAULT_CALIBRATIONS[material]
    for key in ("thickness_max", "orientations", "positions", "frozen_phonons"):
        assert inputs[{"thickness_max": "thickness_max_nm"}.get(key, key)] == settings[key]
    assert inputs["slice_thickness_A"] == settings.get("slice_thickness", 2.0)


def test_wo3_is_brighter_than_tio2_as_z_contrast_expects():
    tio2, wo3 = default_lut("TiO2"), default_lut("WO3")
    t = np.linspace(0.2, min(tio2.thickness_max, wo3.thickness_max), 50)
    ratio = wo3.optical_density(t) / tio2.optical_density(t)
    assert np.all(ratio > 2.0)

    # incoherent scattering per volume, sum of n_i Z_i^p for p = 1.5 ... 2
    # (screened Rutherford), from the two crystals' atom densities
    def z_sum(structure, p):
        _, symbols = structure.expand()
        z = {"Ti": 22, "O": 8, "W": 74}
        return sum(z[s] ** p for s in symbols) / structure.volume

    low, high = (z_sum(GAMMA_WO3, p) / z_sum(ANATASE, p) for p in (1.5, 2.0))
    thick = tio2.thickness >= 5.0  # past the orientation noise of the first slices
    measured = wo3.optical_density()[thick].mean() / tio2.optical_density()[thick].mean()
    assert low < measured < high
    carbon = default_lut("C")
    assert np.all(carbon(t[t <= carbon.thickness_max]) < tio2(t[t <= carbon.thickness_max]))


def test_unknown_default_lut():
    with pytest.raises(ValueError, match="unknown material"):
        default_lut("Au")
