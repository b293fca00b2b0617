"""Reading HAADF-STEM images from the files microscopes and scripts write.

Supported: ``.npy``, ``.tif``/``.tiff`` (tifffile, else Pillow), ``.png``
(Pillow), ``.emd``/``.h5``/``.hdf5`` (h5py; EMD 1.0 files and plain HDF5),
and through RosettaSciIO Gatan ``.dm3``/``.dm4``, Velox ``.emd`` and
``.hspy`` (:mod:`heteroagg.deploy.microscope_files`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._numbers import is_real
from heteroagg.deploy.microscope_files import (
    RSCIIO_SUFFIXES,
    is_velox,
    length_in_nm,
    read_signal_image,
    square_pixel_nm,
    unit_text,
)
from heteroagg.deploy.runtime import single_channel

#: Pixels along each edge that ``black_level="border"`` takes for vacuum.
BORDER_PIXELS = 4
#: What a vacuum border may read, in fractions of the beam, before ``heteroagg predict`` warns
#: (or twice the model's ``black_level_jitter``): a shift of 5e-5 costs a network trained with
#: vacuum at exactly 0 most of its R² (docs/results.md, "Intensity calibration").
VACUUM_TOLERANCE = 5e-5
#: The read noise, in fractions of the beam, a vacuum border may show before ``heteroagg predict``
#: warns (or the model's ``read_noise``): noise of 1e-4 costs a network trained without read
#: noise most of its R² (docs/results.md, "Intensity calibration").
READ_NOISE_TOLERANCE = 5e-5

#: Formats that hold one image (or stack) and no named datasets.
SINGLE_IMAGE_SUFFIXES = (".npy", ".tif", ".tiff", ".png")
SUFFIXES = (*SINGLE_IMAGE_SUFFIXES, ".emd", ".h5", ".hdf5", *RSCIIO_SUFFIXES)


@dataclass
class ImageFile:
    """Images read from one file.

    Attributes
    ----------
    path
        The file.
    images
        (B, H, W) float32 in fractions of the incident beam.
    pixel_size_nm
        The pixel size the file states (EMD dimension vectors, the signal
        axes of DigitalMicrograph, Velox and HyperSpy files, the calibration
        of ImageJ TIFFs), or None.
    """

    path: Path
    images: np.ndarray
    pixel_size_nm: float | None


def _hdf5_array(path: Path, key: str | None) -> tuple[np.ndarray, float | None]:
    import h5py

    with h5py.File(path, "r") as f:
        if key is not None:
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise ValueError(f"{path} has no dataset {key!r}")
            chosen = f[key]
            pixel = None if _emd_first_dim(chosen) is None else _emd_pixel_size_nm(chosen)
            return np.asarray(chosen[()]), pixel
        found: list[Any] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) and obj.dtype.kind in "uif":
                found.append(obj)

        f.visititems(visit)
        if not found:
            raise ValueError(f"{path} holds no 2D or 3D numeric dataset")
        # EMD 1.0 data groups hold 'data' and its dimension vectors; of several, the
        # first with a length along its last axis is the image (not a table of values)
        arrays = [d for d in found if _emd_first_dim(d) is not None]
        refused: dict[str, ValueError] = {}  # tables (item x field), diffraction patterns
        for dataset in arrays:
            try:
                pixel = _emd_pixel_size_nm(dataset)
            except ValueError as err:
                refused[dataset.name] = err
                continue
            if pixel is not None:
                return np.asarray(dataset[()]), pixel
        chosen = (arrays or found)[0]
        if chosen.name in refused:
            raise refused[chosen.name]
        return np.asarray(chosen[()]), None


def _emd_first_dim(dataset: Any) -> int | None:
    """The number of the first dimension vector if ``dataset`` is the data of an EMD 1.0
    group: 1 in the specification (``emd_group_type = 1``), 0 as py4DSTEM's emdfile
    writes them (``emd_group_type = "array"``); else None."""
    kind = dataset.parent.attrs.get("emd_group_type")
    if not dataset.name.endswith("/data") or kind is None:
        return None
    if isinstance(kind, np.ndarray) and kind.size == 1:  # h5py writes a list as an array
        kind = kind.reshape(-1)[0]
    if isinstance(kind, bytes):
        kind = kind.decode()
    elif isinstance(kind, np.generic):
        kind = kind.item()
    return {1: 1, "array": 0}.get(kind) if isinstance(kind, (int, str)) else None


def _emd_pixel_size_nm(dataset: Any) -> float | None:
    """The step of the image's two dimension vectors, converted to nm when their units say
    how; pixels that are not square raise ValueError."""
    path = dataset.file.filename
    first = _emd_first_dim(dataset) + dataset.ndim - 2
    sides = []
    for number in (first, first + 1):
        dim = dataset.parent.get(f"dim{number}")
        if dim is None or len(dim) < 2:
            return None
        step = abs(float(dim[1]) - float(dim[0]))  # a descending axis is a flipped image
        sides.append(length_in_nm(step, dim.attrs.get("units", b""), path))
    return None if None in sides else square_pixel_nm(Path(path), *sides)


def _raster(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            return np.asarray(tifffile.imread(path))
        except ImportError:
            pass
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"reading {path.suffix} files needs Pillow: pip install pillow") from None
    with Image.open(path) as image:
        tags = dict(getattr(image, "tag_v2", {}))
        # Pillow reads 32-bit unsigned TIFF samples as signed: view them as what they are
        unsigned_32 = tags.get(258) in (32, (32,)) and tags.get(339, 1) in (1, (1,))
        frames = []
        for k in range(getattr(image, "n_frames", 1)):
            image.seek(k)
            frame = image.convert("RGBA") if image.mode in ("P", "PA") else image
            pixels = np.asarray(frame)
            if unsigned_32 and pixels.dtype == np.int32:
                pixels = pixels.view(np.uint32)
            if pixels.dtype == bool:  # a bilevel image: counts 0 and 1
                pixels = pixels.astype(np.uint8)
            frames.append(pixels)
    stored = _stored_bits(path, tags)
    if stored > 8 * frames[0].dtype.itemsize:
        raise ValueError(
            f"{path} stores {stored}-bit samples, which Pillow reads as "
            f"{8 * frames[0].dtype.itemsize}-bit (it does so for colour and grey-with-alpha "
            "images): save the image as one grey channel, or install tifffile for TIFF"
        )
    if len({f.shape for f in frames}) > 1:
        shapes = sorted({f.shape for f in frames})
        raise ValueError(f"{path} holds pages of different shapes {shapes}; give one image size")
    return np.stack(frames) if len(frames) > 1 else frames[0]


def _stored_bits(path: Path, tags: dict) -> int:
    """Bits per sample the file stores: TIFF's BitsPerSample tag or the PNG header's
    bit depth (0 when neither says)."""
    bits = tags.get(258)
    if bits is not None:
        return int(max(bits)) if isinstance(bits, tuple) else int(bits)
    with open(path, "rb") as stream:
        header = stream.read(25)
    if header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR" and len(header) == 25:
        return header[24]
    return 0


def _imagej_pixel_size_nm(path: Path) -> float | None:
    """The pixel size an ImageJ-calibrated TIFF states (its unit and resolutions), or None."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with Image.open(path) as image:
        tags = dict(getattr(image, "tag_v2", {}))
    description = tags.get(270)
    if not (isinstance(description, str) and description.startswith("ImageJ=")):
        return None
    fields = dict(line.split("=", 1) for line in description.splitlines() if "=" in line)
    unit = unit_text(fields.get("unit", ""))  # ImageJ writes non-ASCII units as \\uXXXX
    per_unit = [float(tags.get(tag) or 0.0) for tag in (283, 282)]  # pixels per unit: y, x
    if min(per_unit) <= 0:
        return None
    sides = [length_in_nm(1.0 / n, unit, path) for n in per_unit]
    return None if None in sides else square_pixel_nm(path, *sides)


def border_level(images: np.ndarray, width: int = BORDER_PIXELS) -> np.ndarray:
    """The vacuum level of each image: the median of its pixels within ``width`` of the edge.

    Parameters
    ----------
    images
        (H, W) or (B, H, W).
    width
        How many pixels along each edge count as vacuum.

    Returns
    -------
    numpy.ndarray
        (B,) levels.  They are the vacuum's as long as the imaged object
        covers less than half of that frame.
    """
    x = _image_stack(images, width)
    edge = np.ones(x.shape[1:], dtype=bool)
    edge[width:-width, width:-width] = False
    return np.median(x[:, edge].astype(np.float64), axis=1)


def black_from_border(
    border: np.ndarray, vacuum_level: float = 0.0, full_beam: float = 1.0
) -> np.ndarray:
    """The black level b that maps a border's level to ``vacuum_level``.

    (border - b) / (full_beam - b) = vacuum_level: with vacuum around the
    particles b is the border's level; with a support film (its level the
    ``vacuum_level`` fraction of the beam) only the rest is the detector's.

    Parameters
    ----------
    border
        Stored levels of the images' borders (:func:`border_level`).
    vacuum_level
        The fraction of the beam the border should read, in [0, 1).
    full_beam
        The stored value of the full beam.
    """
    return (np.asarray(border, dtype=float) - vacuum_level * full_beam) / (1.0 - vacuum_level)


def border_noise(images: np.ndarray, width: int = BORDER_PIXELS) -> np.ndarray:
    """The read noise of each image's vacuum, from the quietest of its four edges.

    Each edge is the strip of ``width`` pixels along it; its spread is 1.4826
    times the median absolute deviation from its median, which equals the
    standard deviation of Gaussian noise.  The smallest of the four is taken,
    so an object that reaches into the border, but leaves one edge clear, is
    ignored.

    Parameters
    ----------
    images
        (H, W) or (B, H, W).
    width
        How many pixels along each edge count as vacuum.

    Returns
    -------
    numpy.ndarray
        (B,) standard deviations, in the images' units.
    """
    x = _image_stack(images, width)
    b = len(x)
    edges = (x[:, :width], x[:, -width:], x[:, :, :width], x[:, :, -width:])
    spreads = []
    for edge in edges:
        pixels = edge.reshape(b, -1).astype(np.float64)
        deviation = np.abs(pixels - np.median(pixels, axis=1, keepdims=True))
        spreads.append(1.4826 * np.median(deviation, axis=1))
    return np.min(spreads, axis=0)


def _image_stack(images: np.ndarray, width: int) -> np.ndarray:
    """(B, H, W) images as given (not copied), checked to be larger than a border of
    ``width`` on each side; what is read of them is read in float64."""
    x = np.asarray(images)
    x = x if x.ndim == 3 else x[None]
    if width < 1 or min(x.shape[1:]) <= 2 * width:
        raise ValueError(f"a border of {width} pixels needs images larger than {2 * width}")
    return x


def _fractions_of_beam(
    path: Path,
    raw: np.ndarray,
    intensity_scale: float | None,
    black_level: float | str | None,
    vacuum_level: float,
) -> np.ndarray:
    """(B, H, W) float32 (v - black) / (full - black), after checking that it can be formed;
    with ``black_level="border"`` the black level that maps the border to ``vacuum_level``."""
    if intensity_scale is None:
        if raw.dtype.kind in "ui":
            raise ValueError(
                f"{path} holds integer values ({raw.dtype}); give the value of the full incident "
                "beam (--intensity-scale) so they can be turned into fractions of it"
            )
        peak = float(np.nanmax(raw)) if raw.size else 0.0
        if peak > 1.0:
            raise ValueError(
                f"{path} holds values up to {peak:.4g}, which cannot be fractions of the incident "
                "beam; give the value of the full beam (--intensity-scale)"
            )
        intensity_scale = 1.0
    if not (is_real(intensity_scale) and intensity_scale > 0 and math.isfinite(intensity_scale)):
        raise ValueError(f"intensity_scale must be positive and finite, got {intensity_scale!r}")
    data = raw if raw.ndim == 3 else raw[None]  # not copied: stacks of scans can be large
    if black_level is None:
        black = np.zeros(len(data))
    elif isinstance(black_level, str):
        if black_level != "border":
            raise ValueError(f"black_level must be a number or 'border', got {black_level!r}")
        border = border_level(data)
        if not np.all(np.isfinite(border)):
            k = int(np.flatnonzero(~np.isfinite(border))[0])
            raise ValueError(
                f"{path}: the border of image {k} holds values that are not finite (a mask?), "
                "so it gives no black level; give --black-level as a number"
            )
        black = black_from_border(border, vacuum_level, intensity_scale)
    elif is_real(black_level) and math.isfinite(black_level):
        black = np.full(len(data), float(black_level))
    else:
        raise ValueError(f"black_level must be a finite number or 'border', got {black_level!r}")
    if not np.all(black < intensity_scale):
        raise ValueError(
            f"{path}: the black level ({black.max():.4g}) must lie below the value of the full "
            f"beam ({intensity_scale:.4g})"
        )
    out = np.empty(data.shape, dtype=np.float32)
    for k, frame in enumerate(data):  # one frame at a time in float64
        out[k] = (frame.astype(np.float64) - black[k]) / (intensity_scale - black[k])
    return out


def _read_raw(path: Path, suffix: str, dataset: str | None) -> tuple[np.ndarray, float | None]:
    """The stored array of a file and the pixel size (nm) it states, or None."""
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except ValueError as err:  # numpy's own words, without the file's name
            raise ValueError(f"{path} could not be read as a .npy file: {err}") from err
    if suffix in RSCIIO_SUFFIXES or (suffix == ".emd" and is_velox(path)):
        return read_signal_image(path, dataset)
    if suffix in (".emd", ".h5", ".hdf5"):
        return _hdf5_array(path, dataset)
    raw = _raster(path)
    return raw, _imagej_pixel_size_nm(path) if suffix in (".tif", ".tiff") else None


def read_images(
    path: str | Path,
    intensity_scale: float | None = None,
    dataset: str | None = None,
    black_level: float | str | None = None,
    vacuum_level: float = 0.0,
) -> ImageFile:
    """Read images as fractions of the incident beam.

    A stored value v becomes (v - black) / (full - black): the detector's
    black level (its value in vacuum) maps to 0 and the full beam to 1.

    Parameters
    ----------
    path
        A ``.npy``, TIFF, PNG, EMD (1.0 or Velox), HDF5, DigitalMicrograph
        (``.dm3``, ``.dm4``) or HyperSpy file with one image (H, W) or a
        stack (B, H, W).
    intensity_scale
        The stored value of the full incident beam: images are divided by
        it.  Integer images need it (a raw detector count is not a fraction
        of the beam); float images default to 1 (already fractions).
    dataset
        The HDF5/EMD 1.0 dataset to read (default: the EMD data group, else
        the first 2D or 3D numeric dataset); for DigitalMicrograph, Velox and
        HyperSpy files, the title of the image (default: the only one, else
        the one titled HAADF).  Refused for ``.npy``, TIFF and PNG files.
    black_level
        The stored value of vacuum (no electrons scattered onto the
        detector), subtracted first; ``"border"`` takes each image's own
        from its edge (:func:`border_level`).  Default 0.
    vacuum_level
        With ``black_level="border"``: the fraction of the beam the border
        reads once the black level is gone, in [0, 1).  0 for vacuum; a model
        trained on a support film takes the film's level
        (:attr:`heteroagg.deploy.Predictor.vacuum_level`), and only the rest
        of the border's level is the detector's.

    Returns
    -------
    ImageFile

    Raises
    ------
    ValueError
        For unknown suffixes, unreadable content, colour images, integer
        images without ``intensity_scale``, float images with values above
        1 without it (they cannot be fractions of the beam), a black level
        not below the full beam, a scale or black level that is not a
        number, or a ``dataset`` for a format without datasets.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not (is_real(vacuum_level) and 0.0 <= vacuum_level < 1.0):
        raise ValueError(
            f"vacuum_level must be a fraction of the beam in [0, 1), got {vacuum_level!r}"
        )
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the image files in it")
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown image format {suffix!r}; use one of {SUFFIXES}")
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    if dataset is not None and suffix in SINGLE_IMAGE_SUFFIXES:
        raise ValueError(f"{path}: a {suffix} file holds no named datasets; leave out dataset")
    try:
        raw, pixel = _read_raw(path, suffix, dataset)
    except (ValueError, ImportError):
        raise
    except Exception as err:  # a damaged file: every reader fails its own way
        raise ValueError(f"{path} could not be read as a {suffix} file: {err!r}") from err
    raw = single_channel(raw, str(path))
    if raw.ndim not in (2, 3) or raw.dtype.kind not in "uif":
        raise ValueError(f"{path}: expected a 2D image or a 3D stack of numbers, got {raw.shape}")
    images = _fractions_of_beam(path, raw, intensity_scale, black_level, float(vacuum_level))
    return ImageFile(path, images, pixel)
