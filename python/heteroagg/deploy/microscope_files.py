"""Images from the microscope vendors' files, read through RosettaSciIO.

Gatan DigitalMicrograph (``.dm3``, ``.dm4``), Thermo Fisher Velox EMD
(``.emd``) and HyperSpy (``.hspy``) files are parsed by ``rosettasciio``
(``pip install rosettasciio``).  This module picks the HAADF image among the
signals such a file holds and reads its pixel size off the signal axes.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

RSCIIO_SUFFIXES = (".dm3", ".dm4", ".hspy")

_LENGTH_IN_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "Å": 0.1,
    "\u212b": 0.1,  # the Angstrom sign
    "A": 0.1,
    "angstrom": 0.1,
    "angstroms": 0.1,
    "pm": 1e-3,
    "µm": 1e3,
    "μm": 1e3,
    "um": 1e3,
    "micron": 1e3,
    "mm": 1e6,
    "m": 1e9,
}

#: Relative difference between the two pixel sides above which an image is refused.
SQUARE_PIXEL_TOLERANCE = 0.01


#: Units of axes that are not calibrated: the file states no pixel size.
_UNSTATED_UNITS = frozenset({"", "px", "pixel", "pixels", "<undefined>", "undefined", "none"})


def unit_text(units: Any) -> str:
    """An axis's units as plain text, however a file stores them: bytes are decoded, a
    one-element array is unwrapped, Java's ``\\uXXXX`` escapes (ImageJ) are decoded and
    EMD 1.0's bracketed form (``"[n_m]"``) is read as ``"nm"``."""
    if isinstance(units, np.ndarray):
        units = units.reshape(-1)[0] if units.size == 1 else ""
    if isinstance(units, np.generic):
        units = units.item()
    if isinstance(units, bytes):
        units = units.decode(errors="replace")
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(units).strip())
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].replace("_", "")
    return text.strip()


def length_in_nm(value: float, units: Any, path: Any = None) -> float | None:
    """``value`` in ``units`` converted to nm, or None for units that state no length
    (empty, pixels, undefined).

    Raises
    ------
    ValueError
        For units of another kind (1/nm, mrad, s): the file is not a real-space image.
    """
    text = unit_text(units)
    scale = _LENGTH_IN_NM.get(text, _LENGTH_IN_NM.get(text.lower()) if len(text) > 2 else None)
    if scale is not None:
        return float(value) * scale
    if text.lower() in _UNSTATED_UNITS:
        return None
    where = f"{path}: its" if path is not None else "the"
    raise ValueError(
        f"{where} image axes are in {text!r}, not a length: heteroagg reads real-space "
        "images, not diffraction patterns, Fourier transforms or other data"
    )


def is_velox(path: Path) -> bool:
    """Whether an ``.emd`` file is a Velox file (a ``Version`` entry naming that format)."""
    import h5py

    with h5py.File(path, "r") as f:
        version = f.get("Version")
        if not isinstance(version, h5py.Dataset) or version.size < 1:
            return False
        try:
            entry = version[()].flat[0]
            text = entry.decode() if isinstance(entry, bytes) else str(entry)
            return json.loads(text).get("format") in ("Velox", "DevelopersKit")
        except (ValueError, AttributeError):
            return False


def _signals(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() in (".dm3", ".dm4"):
            from rsciio.digitalmicrograph import file_reader
        elif path.suffix.lower() == ".hspy":
            from rsciio.hspy import file_reader
        else:
            from rsciio.emd import file_reader
    except ImportError:
        raise ImportError(
            f"reading {path.suffix} files needs rosettasciio: pip install rosettasciio"
        ) from None
    if path.suffix.lower() != ".emd":
        return file_reader(str(path))
    try:
        return file_reader(str(path), select_type="images")
    except ValueError:  # releases that spell the image-only selection differently
        return file_reader(str(path))


def _title(signal: dict[str, Any]) -> str:
    return str(signal.get("metadata", {}).get("General", {}).get("title", ""))


def _image_axes(signal: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The two signal axes of an image or image stack, in array order, else None."""
    axes = sorted(signal.get("axes", []), key=lambda a: a.get("index_in_array", 0))
    data = signal["data"]
    if data.ndim not in (2, 3) or np.dtype(data.dtype).kind not in "uif":
        return None
    if len(axes) != data.ndim or any(a.get("navigate", False) for a in axes[-2:]):
        return None
    return axes[-2:]


def _choose(path: Path, images: list[dict[str, Any]], dataset: str | None) -> dict[str, Any]:
    titles = [_title(s) for s in images]
    if dataset is not None:
        chosen = [s for s, t in zip(images, titles, strict=True) if t.lower() == dataset.lower()]
        if len(chosen) != 1:
            raise ValueError(f"{path} has no single image titled {dataset!r}; it has {titles}")
        return chosen[0]
    if len(images) == 1:
        return images[0]
    haadf = [s for s, t in zip(images, titles, strict=True) if "haadf" in t.lower()]
    if len(haadf) == 1:
        return haadf[0]
    raise ValueError(f"{path} holds {len(images)} images {titles}; choose one with --dataset TITLE")


def square_pixel_nm(path: Path, height_nm: float, width_nm: float) -> float:
    """The side of a file's square pixels; pixels that are not square raise ValueError."""
    if abs(height_nm - width_nm) > SQUARE_PIXEL_TOLERANCE * max(height_nm, width_nm):
        raise ValueError(
            f"{path} has pixels of {width_nm:.4g} nm by {height_nm:.4g} nm; heteroagg needs "
            "square pixels: resample the image first"
        )
    return width_nm


def _axis_step(path: Path, axis: dict[str, Any]) -> float:
    """The length of a signal axis's step: its ``scale``, or that of a uniform ``axis``
    vector (a descending axis is a flipped image, with steps of the same length)."""
    if "scale" in axis:
        return abs(float(axis["scale"]))
    values = np.asarray(axis.get("axis", []), dtype=float)
    if values.size < 2:
        return 1.0
    steps = np.diff(values)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0.0):
        raise ValueError(f"{path} has an image axis of unequal steps; resample it first")
    return abs(float(steps[0]))


def _pixel_size_nm(path: Path, axes: list[dict[str, Any]]) -> float | None:
    sides = [length_in_nm(_axis_step(path, a), a.get("units", ""), path) for a in axes]
    return None if None in sides else square_pixel_nm(path, *sides)


def read_signal_image(path: Path, dataset: str | None = None) -> tuple[np.ndarray, float | None]:
    """The HAADF image (or stack) of a file RosettaSciIO reads, and its pixel size.

    Parameters
    ----------
    path
        A ``.dm3``, ``.dm4``, ``.hspy`` or Velox ``.emd`` file.
    dataset
        The title of the image to read (Velox names each by its detector,
        e.g. ``"HAADF"``).  Default: the only image, else the one whose title
        contains "HAADF".

    Returns
    -------
    data
        (H, W) or (B, H, W), as stored.
    pixel_size_nm
        The pixel size from the signal axes, or None when their units are not lengths.

    Raises
    ------
    ValueError
        When the file holds no image, several and none is chosen, or pixels
        that are not square.
    ImportError
        Without ``rosettasciio``.
    """
    try:
        signals = _signals(path)
    except (OSError, KeyError, IndexError, NotImplementedError, struct.error) as err:
        raise ValueError(f"{path} could not be read as a {path.suffix} file: {err}") from err
    images = []
    for signal in signals:
        axes = _image_axes(signal)
        if axes is not None:
            images.append({**signal, "axes_of_image": axes})
    if not images:
        raise ValueError(f"{path} holds no 2D image or image stack")
    chosen = _choose(path, images, dataset)
    return np.asarray(chosen["data"]), _pixel_size_nm(path, chosen["axes_of_image"])
