"""Dataset configuration: the parameter space and the imaging settings.

A config is a TOML file with a ``[params]`` table (see
:class:`~heteroagg.data.space.ParameterSpace`) and an ``[imaging]`` table
(:class:`ImagingConfig`).  :func:`default_config` loads the one shipped
with heteroagg, ``heteroagg/data/default.toml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heteroagg._numbers import is_real
from heteroagg.data.space import ParameterSpace, Prior

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from heteroagg.stem import HaadfRenderer

#: Rotation policies: a Haar-random rotation per item, or the sampled frame.
ROTATION_POLICIES = ("random", "fixed")


@dataclass(frozen=True)
class ImagingConfig:
    """How the images of a dataset are formed (units: eV, mrad, nm, e/Å²).

    Attributes
    ----------
    energy, semiangle, detector
        Optics and annular detector ``(inner, outer)``.  They record the
        optics of the shipped LUTs, which render the images; other values are
        refused where images are made (:meth:`check_optics`).
    pixel_size
        nm.
    shape
        (H, W) pixels.
    dose
        Prior of the electron dose per image (e/Å²), drawn when shot noise is
        applied: at load time, or at generation with ``bake_noise``.
    rotation
        ``"random"`` (Haar per item) or ``"fixed"``.
    orientation_spread
        Per-particle brightness drawn from the LUT's orientation spread.
    support
        Amorphous-carbon film thickness (nm), 0 for none.
    bake_noise
        Store noisy images instead of clean ones.
    extrapolate
        Continue the LUTs past their end at constant optical density instead
        of failing the item (see docs/data.md for how often that happens).
    """

    energy: float = 300e3
    semiangle: float = 20.0
    detector: tuple[float, float] = (52.0, 255.0)
    pixel_size: float = 1.0
    shape: tuple[int, int] = (256, 256)
    dose: Prior = field(default_factory=lambda: Prior("log-uniform", 1e3, 1e5))
    rotation: str = "random"
    orientation_spread: bool = True
    support: float = 0.0
    bake_noise: bool = False
    extrapolate: bool = True

    def __post_init__(self) -> None:
        for name in ("energy", "semiangle", "pixel_size"):
            if not _number(getattr(self, name)) > 0:
                raise ValueError(
                    f"imaging.{name} must be a positive number, got {getattr(self, name)!r}"
                )
        detector = _sequence(self.detector, 2, "imaging.detector", "[inner, outer] mrad")
        if not (all(_number(v) >= 0 for v in detector) and detector[0] < detector[1]):
            raise ValueError(f"imaging.detector must be [inner, outer] mrad, got {self.detector!r}")
        shape = _sequence(self.shape, 2, "imaging.shape", "[H, W] positive integers")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
            raise ValueError(f"imaging.shape must be [H, W] positive integers, got {self.shape!r}")
        if not isinstance(self.dose, Prior) or self.dose.low <= 0:
            raise ValueError("imaging.dose must be a prior over doses > 0 e/Å²")
        self._check_dose_range()
        if self.rotation not in ROTATION_POLICIES:
            raise ValueError(f"imaging.rotation must be one of {ROTATION_POLICIES}")
        if not _number(self.support) >= 0:
            raise ValueError(f"imaging.support must be a number >= 0 nm, got {self.support!r}")
        for name in ("orientation_spread", "bake_noise", "extrapolate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"imaging.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in ("energy", "semiangle", "pixel_size", "support"):  # plain floats for JSON
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "detector", tuple(float(v) for v in detector))
        object.__setattr__(self, "shape", shape)

    def _check_dose_range(self) -> None:
        """Refuse doses the renderer refuses: above MAX_DOSE, or giving a pixel more
        electrons than a count holds or fewer than underflow to nothing."""
        from heteroagg.stem.renderer import MAX_DOSE, MAX_PIXEL_ELECTRONS, MIN_PIXEL_ELECTRONS

        area = (10.0 * float(self.pixel_size)) ** 2  # Å² of a pixel
        low, high = float(self.dose.low), float(self.dose.high)
        if high > MAX_DOSE or high * area > MAX_PIXEL_ELECTRONS:
            raise ValueError(
                f"imaging.dose reaches {high:g} e/Å², {high * area:.3g} electrons per pixel: "
                f"doses must stay within {MAX_DOSE:g} e/Å² and {MAX_PIXEL_ELECTRONS:g} per pixel"
            )
        if not low * area >= MIN_PIXEL_ELECTRONS:
            raise ValueError(
                f"imaging.dose from {low:g} e/Å² gives a pixel fewer than "
                f"{MIN_PIXEL_ELECTRONS:g} electrons"
            )

    def check_optics(self) -> None:
        """Raise unless ``energy``, ``semiangle`` and ``detector`` are the optics of
        the LUTs shipped with heteroagg, which render a dataset's images."""
        from heteroagg.stem.lut import default_lut

        inputs = default_lut("TiO2").inputs
        detector = inputs.get("detector") or {}
        lut = {
            "energy": inputs.get("energy_eV"),
            "semiangle": inputs.get("semiangle_mrad"),
            "detector": (detector.get("inner_mrad"), detector.get("outer_mrad")),
        }
        ours = {"energy": self.energy, "semiangle": self.semiangle, "detector": self.detector}
        differ = [f"imaging.{k} = {ours[k]} (LUTs: {lut[k]})" for k in ours if ours[k] != lut[k]]
        if differ:
            raise ValueError(
                "images are rendered with the LUTs shipped with heteroagg, which were "
                f"calibrated for other optics: {'; '.join(differ)}; set the LUTs' values"
            )

    def renderer(self, device: str = "cpu") -> HaadfRenderer:
        """The renderer of these images, after :meth:`check_optics`."""
        from heteroagg.stem import HaadfRenderer

        self.check_optics()
        return HaadfRenderer(
            pixel_size=self.pixel_size, shape=self.shape, support=self.support or None,
            orientation_spread=self.orientation_spread, extrapolate=self.extrapolate,
            device=device,
        )  # fmt: skip

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> ImagingConfig:
        """Build from the ``[imaging]`` table; unknown keys raise."""
        known = set(cls.__dataclass_fields__)
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"unknown imaging settings {sorted(unknown)}; known: {sorted(known)}")
        values = dict(table)
        if "dose" in values:
            values["dose"] = Prior.from_config("imaging.dose", values["dose"])
        return cls(**values)

    def to_config(self) -> dict[str, Any]:
        """The settings as TOML-ready values."""
        out = asdict(self)
        out["dose"] = self.dose.to_config()
        out["detector"], out["shape"] = list(self.detector), list(self.shape)
        return out


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset's parameter space and imaging settings."""

    params: ParameterSpace
    imaging: ImagingConfig

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> DatasetConfig:
        unknown = set(config) - {"params", "imaging"}
        if unknown:
            raise ValueError(f"unknown config tables {sorted(unknown)}; known: params, imaging")
        if "params" not in config:
            raise ValueError("the config needs a [params] table")
        for table in ("params", "imaging"):
            if not isinstance(config.get(table, {}), Mapping):
                raise ValueError(f"{table} must be a table, got {config[table]!r}")
        return cls(
            params=ParameterSpace.from_config(config["params"]),
            imaging=ImagingConfig.from_config(config.get("imaging", {})),
        )

    @classmethod
    def from_toml(cls, path: str | Path) -> DatasetConfig:
        """Read a TOML config file."""
        try:
            with open(path, "rb") as stream:
                return cls.from_dict(tomllib.load(stream))
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (what :meth:`from_dict` reads back)."""
        return {"params": self.params.to_config(), "imaging": self.imaging.to_config()}


def _number(value: Any) -> float:
    """``value`` as a float if it is a finite real number (not a bool), else NaN."""
    return float(value) if is_real(value) and math.isfinite(value) else math.nan


def _sequence(value: Any, length: int, name: str, what: str) -> tuple[Any, ...]:
    """``value`` as a tuple of ``length`` items, or a ValueError naming ``what`` it must be."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != length:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return tuple(value)


def default_config() -> DatasetConfig:
    """The configuration shipped with heteroagg (``heteroagg/data/default.toml``)."""
    return DatasetConfig.from_toml(Path(str(resources.files("heteroagg.data") / "default.toml")))
