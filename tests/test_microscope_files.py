"""Reading HAADF images from DigitalMicrograph, Velox EMD and HyperSpy files."""

import struct

import numpy as np
import pytest

pytest.importorskip("rsciio")

from heteroagg.deploy.images import read_images
from heteroagg.deploy.microscope_files import length_in_nm
from microscope_writers import write_dm, write_png_16, write_tiff, write_velox


def pattern(*shape: int) -> np.ndarray:
    """Every element a different value, so a transposed or reordered read shows."""
    return np.arange(np.prod(shape), dtype=np.float64).reshape(shape)


@pytest.mark.parametrize("version", [3, 4])
def test_digitalmicrograph_image_skips_the_thumbnail(tmp_path, version):
    image = (pattern(48, 64) / 1e4).astype(np.float32)  # fractions of the beam
    path = tmp_path / f"scan.dm{version}"
    write_dm(path, image, (0.25, 0.25), ("nm", "nm"), version=version)
    got = read_images(path)
    assert got.images.shape == (1, 48, 64)
    np.testing.assert_array_equal(got.images[0], image)
    assert got.pixel_size_nm == pytest.approx(0.25)


def test_digitalmicrograph_integer_stack_in_angstrom(tmp_path):
    counts = pattern(3, 40, 56).astype(np.uint16)
    path = tmp_path / "series.dm4"
    write_dm(path, counts, (1.0, 2.5, 2.5), ("", "Å", "Å"))
    with pytest.raises(ValueError, match="intensity-scale"):
        read_images(path)
    got = read_images(path, intensity_scale=60000.0)
    assert got.images.shape == (3, 40, 56)
    np.testing.assert_allclose(got.images, counts / 60000.0, rtol=1e-6)
    assert got.pixel_size_nm == pytest.approx(0.25)


def test_float_counts_are_refused_without_a_scale(tmp_path):
    counts = (pattern(32, 32) + 100).astype(np.float32)
    path = tmp_path / "counts.dm3"
    write_dm(path, counts, (0.5, 0.5), ("nm", "nm"), version=3)
    with pytest.raises(ValueError, match="cannot be fractions"):
        read_images(path)
    got = read_images(path, intensity_scale=1e5)
    np.testing.assert_allclose(got.images[0], counts / 1e5, rtol=1e-6)


def test_pixel_calibrations(tmp_path):
    image = np.full((16, 24), 0.01, dtype=np.float32)
    write_dm(tmp_path / "rect.dm4", image, (0.5, 0.25), ("nm", "nm"))
    with pytest.raises(ValueError, match="square pixels"):
        read_images(tmp_path / "rect.dm4")
    write_dm(tmp_path / "um.dm4", image, (0.0005, 0.0005), ("µm", "µm"))
    assert read_images(tmp_path / "um.dm4").pixel_size_nm == pytest.approx(0.5)
    # a diffraction pattern or a Fourier transform is not an image of the aggregate
    for name, unit in (("fft.dm4", "1/nm"), ("angles.dm4", "mrad")):
        write_dm(tmp_path / name, image, (0.1, 0.1), (unit, unit))
        with pytest.raises(ValueError, match=f"image axes are in '{unit}', not a length"):
            read_images(tmp_path / name)
    write_dm(tmp_path / "raw.dm4", image, (1.0, 1.0), ("", ""))
    assert read_images(tmp_path / "raw.dm4").pixel_size_nm is None  # uncalibrated
    assert length_in_nm(3.0, b"pm") == pytest.approx(0.003)
    for units in ("px", "<undefined>", np.array([b""])):
        assert length_in_nm(1.0, units) is None
    with pytest.raises(ValueError, match="not a length"):
        length_in_nm(1.0, "counts")
    # units as EMD 1.0, ImageJ and others store them
    for units, nm in (("[n_m]", 0.5), ("[A]", 0.05), (np.array([b"[n_m]"]), 0.5),
                      (np.bytes_(b"nm"), 0.5), ("\\u00C5", 0.05), ("\\u03BCm", 500.0),
                      ("\u212b", 0.05), ("Angstrom", 0.05)):  # fmt: skip
        assert length_in_nm(0.5, units) == pytest.approx(nm), units


def test_axes_given_as_vectors():
    from heteroagg.deploy.microscope_files import _pixel_size_nm

    uniform = [
        {"units": "nm", "axis": np.arange(16) * 0.4},
        {"units": "nm", "axis": np.arange(8) * 0.4},
    ]
    assert _pixel_size_nm("x.hspy", uniform) == pytest.approx(0.4)
    # a descending axis is a flipped image, its pixels as long
    descending = [
        {"units": "nm", "axis": np.arange(16)[::-1] * 0.4},
        {"units": "nm", "scale": -0.4},
    ]
    assert _pixel_size_nm("x.hspy", descending) == pytest.approx(0.4)
    uneven = [{"units": "nm", "axis": np.r_[0.0, 0.4, 1.0]}, uniform[1]]
    with pytest.raises(ValueError, match="unequal steps"):
        _pixel_size_nm("x.hspy", uneven)


def test_emd_1_0_units_and_rectangular_pixels(tmp_path):
    import h5py

    def emd(path, steps, units):
        with h5py.File(path, "w") as f:
            group = f.create_group("data/image")
            group.attrs["emd_group_type"] = 1
            group.create_dataset("data", data=np.full((48, 64), 0.01, np.float32))
            for number, (n, step) in enumerate(zip((48, 64), steps, strict=True), start=1):
                group.create_dataset(f"dim{number}", data=np.arange(n) * step).attrs["units"] = (
                    units
                )

    emd(tmp_path / "spec.emd", (0.5, 0.5), "[n_m]")  # as the specification writes it
    assert read_images(tmp_path / "spec.emd").pixel_size_nm == pytest.approx(0.5)
    for steps in ((-0.5, 0.5), (-0.5, -0.5)):  # descending dimension vectors: flipped images
        emd(tmp_path / "down.emd", steps, "nm")
        assert read_images(tmp_path / "down.emd").pixel_size_nm == pytest.approx(0.5), steps
    emd(tmp_path / "rect.emd", (2.0, 0.5), "nm")
    with pytest.raises(ValueError, match="square pixels"):
        read_images(tmp_path / "rect.emd")


def test_emd_group_type_as_an_array_and_unsigned_descending_axes(tmp_path):
    import h5py

    image = np.linspace(0, 0.5, 16 * 16).reshape(16, 16)
    with h5py.File(tmp_path / "listed.emd", "w") as f:
        f["a_table"] = np.zeros((4, 4))  # another 2D dataset, found first
        group = f.create_group("data/haadf")
        group.attrs["emd_group_type"] = [1]  # h5py stores a list as a one-element array
        group["data"] = image
        for number in (1, 2):  # a flipped image on unsigned axes, 2 nm steps
            axis = group.create_dataset(f"dim{number}", data=(np.arange(16) * 2)[::-1].astype("u2"))
            axis.attrs["units"] = "nm"
    read = read_images(tmp_path / "listed.emd")
    np.testing.assert_array_equal(read.images[0], image.astype(np.float32))
    assert read.pixel_size_nm == pytest.approx(2.0)


def test_sixteen_bit_colour_pngs_are_refused_and_bilevel_ones_read(tmp_path):
    from PIL import Image

    grey = (np.random.default_rng(0).random((8, 10)) * 60000).astype(np.uint16)
    write_png_16(tmp_path / "grey.png", grey)
    np.testing.assert_allclose(
        read_images(tmp_path / "grey.png", intensity_scale=65535).images[0], grey / 65535, rtol=1e-6
    )
    # Pillow reads these as 8-bit: they would come back about 257 times too dark
    write_png_16(tmp_path / "rgb.png", np.repeat(grey[..., None], 3, 2))
    write_png_16(tmp_path / "alpha.png", np.stack([grey, np.full_like(grey, 65535)], 2))
    for name in ("rgb.png", "alpha.png"):
        with pytest.raises(ValueError, match="stores 16-bit samples, which Pillow reads as 8-bit"):
            read_images(tmp_path / name, intensity_scale=65535)
    bits = np.zeros((6, 8), bool)
    bits[2, 3] = True
    Image.fromarray(bits).save(tmp_path / "bilevel.png")
    np.testing.assert_array_equal(
        read_images(tmp_path / "bilevel.png", intensity_scale=1).images[0], bits.astype(np.float32)
    )


def test_damaged_files_of_every_format_name_themselves(tmp_path):
    from PIL import Image

    np.save(tmp_path / "whole.npy", np.zeros((64, 64), np.float32))
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(tmp_path / "whole.png")
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(tmp_path / "whole.tif")
    import h5py

    with h5py.File(tmp_path / "whole.h5", "w") as f:
        f.create_dataset("image", data=np.zeros((64, 64), np.float32))
    for suffix in (".npy", ".png", ".tif", ".h5"):
        whole = (tmp_path / f"whole{suffix}").read_bytes()
        for kind, content in (("cut", whole[: len(whole) // 3]), ("empty", b"")):
            path = tmp_path / f"{kind}{suffix}"
            path.write_bytes(content)
            with pytest.raises(ValueError, match=f"{path.name} could not be read as a"):
                read_images(path, intensity_scale=1.0)


def test_unsigned_32_bit_tiffs_through_pillow(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_tifffile(name, *args, **kwargs):
        if name == "tifffile":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_tifffile)
    counts = np.full((8, 12), 3_000_000_000, np.uint32)  # beyond the signed range
    counts[0, :3] = (0, 7, 4_000_000_000)
    write_tiff(tmp_path / "u32.tif", counts)
    got = read_images(tmp_path / "u32.tif", intensity_scale=4e9).images
    np.testing.assert_allclose(got[0], counts / 4e9, rtol=1e-6)
    signed = np.full((8, 12), -5, np.int32)  # signed samples stay signed
    write_tiff(tmp_path / "i32.tif", signed)
    np.testing.assert_array_equal(
        read_images(tmp_path / "i32.tif", intensity_scale=10).images, -0.5
    )


def test_unreadable_digitalmicrograph_files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "cut.dm4").write_bytes(struct.pack(">l", 4) + rng.bytes(200))
    (tmp_path / "noise.dm4").write_bytes(rng.bytes(200))
    (tmp_path / "empty.dm3").write_bytes(b"")
    for name in ("cut.dm4", "noise.dm4", "empty.dm3"):
        with pytest.raises(ValueError, match="could not be read"):
            read_images(tmp_path / name)


def test_velox_frames_and_detectors(tmp_path):
    haadf = pattern(3, 40, 56).astype(np.uint16)  # (frame, y, x)
    df4 = (2 * pattern(40, 56)).astype(np.uint16)
    path = tmp_path / "velox.emd"
    write_velox(path, {"DF4": df4[..., None], "HAADF": np.moveaxis(haadf, 0, -1)}, 2.5e-10)
    got = read_images(path, intensity_scale=1e5)
    assert got.images.shape == (3, 40, 56)
    np.testing.assert_allclose(got.images, haadf / 1e5, rtol=1e-6)
    assert got.pixel_size_nm == pytest.approx(0.25)
    other = read_images(path, intensity_scale=1e5, dataset="df4")
    np.testing.assert_allclose(other.images[0], df4 / 1e5, rtol=1e-6)
    with pytest.raises(ValueError, match="no single image titled 'BF'"):
        read_images(path, intensity_scale=1e5, dataset="BF")
    write_velox(tmp_path / "dark.emd", {"DF2": df4[..., None], "DF4": df4[..., None]}, 1e-9)
    with pytest.raises(ValueError, match="--dataset"):
        read_images(tmp_path / "dark.emd", intensity_scale=1e5)


def hspy_signal(data: np.ndarray, axes: list[dict], title: str) -> dict:
    """The signal dictionary RosettaSciIO's HyperSpy writer takes."""
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""}},
        "original_metadata": {},
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "learning_results": {},
        "models": {},
        "package_info": {"name": "tests", "version": "0"},
    }


def test_hyperspy_stack_and_a_spectrum(tmp_path):
    from rsciio.hspy import file_writer

    images = (pattern(2, 24, 32) / 1e4).astype(np.float32)
    axes = [
        {"name": "frame", "size": 2, "offset": 0.0, "scale": 1.0, "units": "", "navigate": True},
        {"name": "y", "size": 24, "offset": 0.0, "scale": 4.0, "units": "Å", "navigate": False},
        {"name": "x", "size": 32, "offset": 0.0, "scale": 4.0, "units": "Å", "navigate": False},
    ]
    file_writer(str(tmp_path / "stack.hspy"), hspy_signal(images, axes, "HAADF"))
    got = read_images(tmp_path / "stack.hspy")
    np.testing.assert_array_equal(got.images, images)
    assert got.pixel_size_nm == pytest.approx(0.4)
    energy = [{"name": "E", "size": 50, "offset": 0.0, "scale": 1.0, "units": "eV",
               "navigate": False}]  # fmt: skip
    file_writer(str(tmp_path / "spectrum.hspy"), hspy_signal(np.linspace(0, 1, 50), energy, "EELS"))
    with pytest.raises(ValueError, match="no 2D image"):
        read_images(tmp_path / "spectrum.hspy")


def imagej_tiff(path, image: np.ndarray, per_unit: tuple[float, float], unit: str) -> None:
    """A TIFF calibrated the ImageJ way: ``unit=`` in the description, pixels per unit (x, y)."""
    from PIL import Image, TiffImagePlugin

    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[270] = f"ImageJ=1.54f\nunit={unit}\n"
    info[282], info[283] = per_unit
    info[296] = 1  # no absolute unit: the resolution counts pixels per ImageJ unit
    Image.fromarray(image).save(path, tiffinfo=info)


def test_imagej_tiff_calibration(tmp_path):
    pytest.importorskip("PIL")
    counts = pattern(40, 56).astype(np.uint16)
    imagej_tiff(tmp_path / "nm.tif", counts, (4.0, 4.0), "nm")
    got = read_images(tmp_path / "nm.tif", intensity_scale=1e5)
    np.testing.assert_allclose(got.images[0], counts / 1e5, rtol=1e-6)
    assert got.pixel_size_nm == pytest.approx(0.25)
    imagej_tiff(tmp_path / "um.tif", counts, (2000.0, 2000.0), "\\u00B5m")  # ImageJ's escape
    assert read_images(tmp_path / "um.tif", intensity_scale=1e5).pixel_size_nm == pytest.approx(0.5)
    imagej_tiff(tmp_path / "micron.tif", counts, (1000.0, 1000.0), "micron")
    assert read_images(tmp_path / "micron.tif", intensity_scale=1e5).pixel_size_nm == 1.0
    imagej_tiff(tmp_path / "pixel.tif", counts, (1.0, 1.0), "pixel")  # uncalibrated
    assert read_images(tmp_path / "pixel.tif", intensity_scale=1e5).pixel_size_nm is None
    imagej_tiff(tmp_path / "rect.tif", counts, (4.0, 2.0), "nm")
    with pytest.raises(ValueError, match="square pixels"):
        read_images(tmp_path / "rect.tif", intensity_scale=1e5)
