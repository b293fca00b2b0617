"""Thickness-dependent HAADF intensity of one material: :class:`HaadfLUT`.

A LUT holds I(t), the fraction of the incident beam that reaches the
detector when the probe passes through a crystal of thickness t, averaged
over crystal orientations, probe positions and frozen phonons, with the
spread over orientations.  :func:`heteroagg.stem.calibrate` computes it by
multislice; :func:`default_lut` loads the LUTs that ship with heteroagg.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._atomic import replaced_on_success

#: Version of the file layout written by :meth:`HaadfLUT.save`.
LUT_FORMAT_VERSION = 1

#: Materials with a LUT shipped inside the package.
DEFAULT_LUT_MATERIALS: tuple[str, ...] = ("TiO2", "WO3", "C")


def _float_array(values: Any, name: str) -> np.ndarray:
    array = np.array(values, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class HaadfLUT:
    """HAADF intensity against thickness for one material.

    Parameters
    ----------
    material
        Name of the material, e.g. ``"TiO2"``.
    thickness
        Thicknesses (nm), strictly increasing from 0.
    mean
        Orientation-averaged intensity at each thickness, as a fraction of
        the incident beam, in [0, 1).
    std
        Standard deviation over orientations at each thickness.
    samples
        Per-orientation curves, shape (orientations, thickness): each the
        mean over that orientation's probe positions and frozen phonons.
    inputs
        Everything the LUT was computed from (JSON-compatible): optics,
        detector, sampling, seeds, structure and package version.

    Notes
    -----
    Call the LUT to interpolate: ``lut(t_nm)`` is the mean intensity,
    interpolated linearly in the optical density ``-ln(1 - I)`` between the
    tabulated thicknesses (the renderer does the same, so both agree
    exactly).  Thicknesses beyond the table raise, unless
    ``extrapolate=True``, which continues with the optical density of the
    thickest entry (``I = 1 - (1 - I_max) ** (t / t_max)``).
    """

    material: str
    thickness: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray
    inputs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        thickness = _float_array(self.thickness, "thickness")
        mean = _float_array(self.mean, "mean")
        std = _float_array(self.std, "std")
        samples = _float_array(self.samples, "samples")
        if thickness.ndim != 1 or thickness.size < 2:
            raise ValueError("thickness must be 1D with at least two entries (nm)")
        if thickness[0] != 0.0 or np.any(np.diff(thickness) <= 0):
            raise ValueError("thickness must start at 0 and increase strictly (nm)")
        if mean.shape != thickness.shape or std.shape != thickness.shape:
            raise ValueError("mean and std must have the shape of thickness")
        if samples.ndim != 2 or samples.shape[1] != thickness.size:
            raise ValueError("samples must have shape (orientations, len(thickness))")
        if np.any(mean < 0) or np.any(mean >= 1) or np.any(std < 0):
            raise ValueError("mean must lie in [0, 1) and std must be >= 0")
        if mean[0] != 0.0 or std[0] != 0.0 or np.any(samples[:, 0] != 0.0):
            raise ValueError(
                "no thickness scatters nothing: mean, std and samples must be 0 at thickness 0"
            )
        if not isinstance(self.inputs, Mapping):
            raise ValueError(f"inputs must be a mapping, got {type(self.inputs).__name__}")
        try:
            inputs = json.loads(json.dumps(dict(self.inputs)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"inputs must be JSON-compatible to be saved: {err}") from None
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "thickness", thickness)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "samples", samples)

    def __repr__(self) -> str:
        return (
            f"HaadfLUT({self.material!r}, thickness 0-{self.thickness_max:g} nm, "
            f"{self.orientations} orientations, I({self.thickness_max:g} nm) = "
            f"{self.mean[-1]:.4g})"
        )

    @property
    def thickness_max(self) -> float:
        """Largest tabulated thickness (nm)."""
        return float(self.thickness[-1])

    @property
    def orientations(self) -> int:
        """Number of crystal orientations averaged."""
        return int(self.samples.shape[0])

    def _check(self, t: np.ndarray, extrapolate: bool) -> None:
        if np.any(~np.isfinite(t)) or np.any(t < 0):
            raise ValueError("thickness must be finite and >= 0 nm")
        if not extrapolate and t.size and float(t.max()) > self.thickness_max * (1 + 1e-12):
            raise ValueError(
                f"thickness {float(t.max()):.4g} nm exceeds the {self.material} LUT's range "
                f"(0-{self.thickness_max:g} nm); calibrate a longer LUT or pass extrapolate=True"
            )

    def __call__(self, t_nm: Any, *, extrapolate: bool = False) -> np.ndarray:
        """Mean intensity at thicknesses ``t_nm`` (nm)."""
        t = np.asarray(t_nm, dtype=np.float64)
        self._check(t, extrapolate)
        density = np.interp(t, self.thickness, self.density)
        beyond = self.density[-1] * t / self.thickness_max
        return -np.expm1(-np.where(t > self.thickness_max, beyond, density))

    @property
    def density(self) -> np.ndarray:
        """Optical density ``-ln(1 - mean)`` at the tabulated thicknesses."""
        return -np.log1p(-self.mean)

    def spread(self, t_nm: Any, *, extrapolate: bool = False) -> np.ndarray:
        """Standard deviation over orientations at ``t_nm`` (nm).

        Beyond the table it scales with the intensity of the thickest entry.
        """
        t = np.asarray(t_nm, dtype=np.float64)
        self._check(t, extrapolate)
        inside = np.interp(t, self.thickness, self.std)
        scale = self.std[-1] / max(self.mean[-1], 1e-300)
        return np.where(t > self.thickness_max, scale * self(t, extrapolate=True), inside)

    def optical_density(self, t_nm: Any | None = None, *, extrapolate: bool = False) -> np.ndarray:
        """Log-scaled optical density R = -ln(1 - I) / t (1/nm).

        At the tabulated thicknesses when ``t_nm`` is None (where R at t = 0
        is the limit, the initial slope of -ln(1 - I)).  Beyond the table
        (``extrapolate=True``) R keeps its value at the thickest entry.
        """
        t = self.thickness if t_nm is None else np.asarray(t_nm, dtype=np.float64)
        density = -np.log1p(-self(t, extrapolate=extrapolate))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = density / t
        slope0 = -math.log1p(-self.mean[1]) / self.thickness[1]
        return np.where(t > 0, r, slope0)

    def to_dict(self) -> dict[str, Any]:
        """Arrays and inputs as a plain dict (what :meth:`save` stores)."""
        return {
            "material": self.material,
            "thickness": self.thickness,
            "mean": self.mean,
            "std": self.std,
            "samples": self.samples,
            "inputs": self.inputs,
        }

    def save(self, path: str | Path) -> Path:
        """Write the LUT to ``path`` (.npz); returns the path written."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise ValueError(f"a HaadfLUT is saved as .npz, got {path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format_version": LUT_FORMAT_VERSION, "material": self.material,
                  "inputs": self.inputs}  # fmt: skip
        with replaced_on_success(path) as tmp, open(tmp, "wb") as stream:
            np.savez_compressed(
                stream,
                header=np.array(json.dumps(header)),
                thickness=self.thickness,
                mean=self.mean,
                std=self.std,
                samples=self.samples,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> HaadfLUT:
        """Read a LUT written by :meth:`save`.

        Raises
        ------
        ValueError
            For a file that is not a LUT (or is damaged), or of another format version.
        """
        try:
            data = np.load(Path(path), allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} is not a heteroagg HaadfLUT file ({err})") from err
        # what a damaged member or a foreign header raises while it is read
        damaged = (
            KeyError,
            TypeError,
            ValueError,
            EOFError,
            OSError,
            zipfile.BadZipFile,
            zlib.error,
        )
        with data:
            try:
                header = json.loads(str(data["header"]))
                version = header["format_version"]
                material = header["material"]
            except damaged as err:
                raise ValueError(f"{path} is not a heteroagg HaadfLUT file ({err!r})") from err
            if version != LUT_FORMAT_VERSION:
                raise ValueError(
                    f"{path}: LUT format version {version}, this heteroagg reads "
                    f"{LUT_FORMAT_VERSION}"
                )
            try:
                arrays = {name: data[name] for name in ("thickness", "mean", "std", "samples")}
                inputs = header["inputs"]
            except damaged as err:
                raise ValueError(f"{path} is a damaged HaadfLUT file ({err!r})") from err
        return cls(material=material, inputs=inputs, **arrays)

    def plot(self, axes: Any = None) -> Any:
        """Plot I(t) with its orientation spread and R(t); returns the figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
        else:
            fig = axes[0].figure
        t = self.thickness
        axes[0].fill_between(t, self.mean - self.std, self.mean + self.std, alpha=0.3)
        axes[0].plot(t, self.mean, label=self.material)
        axes[0].set(xlabel="thickness (nm)", ylabel="HAADF intensity (fraction of beam)")
        axes[1].plot(t, self.optical_density(), label=self.material)
        axes[1].set(xlabel="thickness (nm)", ylabel="R = -ln(1 - I) / t (1/nm)")
        for ax in axes:
            ax.legend()
        return fig


def default_lut_path(material: str) -> Path:
    """Path of the LUT of ``material`` shipped inside the package."""
    from heteroagg.stem.calibration import canonical_material

    name = canonical_material(material)
    if name not in DEFAULT_LUT_MATERIALS:
        raise ValueError(
            f"no default LUT for {material!r}; heteroagg ships {list(DEFAULT_LUT_MATERIALS)}"
        )
    return Path(str(resources.files("heteroagg.stem") / "luts" / f"{name}.npz"))


def default_lut(material: str) -> HaadfLUT:
    """The LUT shipped with heteroagg for ``"TiO2"``, ``"WO3"`` or ``"C"``.

    They were computed by ``heteroagg calibrate`` at 300 kV, a 20 mrad probe
    and an annular 52-255 mrad detector; ``lut.inputs`` lists every setting.
    ``"C"`` is amorphous carbon, for support films.
    """
    return _load_default(default_lut_path(material))


_CACHE: dict[Path, HaadfLUT] = {}


def _load_default(path: Path) -> HaadfLUT:
    if path not in _CACHE:
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing from this installation; regenerate it with "
                "`heteroagg calibrate`"
            )
        _CACHE[path] = HaadfLUT.load(path)
    return _CACHE[path]


def plot_luts(luts: list[HaadfLUT], path: str | Path) -> Path:
    """Save I(t) with its orientation spread and R(t) of several LUTs side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    for lut in luts:
        lut.plot(axes)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
