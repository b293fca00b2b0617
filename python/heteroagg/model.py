"""The parameter vector of the stochastic 3D hetero-aggregate model.

Geometry is in nm.  The sampling algorithm is described in ``docs/model.md``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from heteroagg import _core

GenerationError = _core.GenerationError
GenerationError.__module__ = "heteroagg"
GenerationError.__doc__ = (
    "Raised when a parameter set cannot be built by non-overlapping spheres "
    "within the sampler's bounded search."
)

#: Unit of each field of :class:`ModelParams` ("" for dimensionless).
PARAM_UNITS: dict[str, str] = {
    "n_particles": "",
    "frac_w": "",
    "radius_ti": "nm",
    "radius_w": "nm",
    "sigma_g": "",
    "fractal_dim": "",
    "prefactor": "",
    "segregation": "",
    "overlap": "",
}


@dataclass(frozen=True)
class ModelParams:
    """Parameters theta of the hetero-aggregate model.

    Parameters
    ----------
    n_particles
        Number of primary particles N (integer >= 2).
    frac_w
        Number fraction of WO3 particles; exactly ``round(frac_w * N)``
        particles (halves rounded up) are WO3.
    radius_ti, radius_w
        Median radius in nm of the lognormal radius laws of TiO2 and WO3,
        in [0.001, 10000].
    sigma_g
        Geometric standard deviation of both radius laws (1 = monodisperse).
    fractal_dim, prefactor
        D_f and k_f of the fractal law ``N = k_f (R_g / r_geo)^D_f``, with
        R_g the volume-weighted radius of gyration (including the (3/5) r^2
        self term of each sphere) and r_geo the geometric-mean radius.
    segregation
        0 = random mixing of the materials, 1 = each material forms one
        connected homo-cluster; homo-cluster sizes grow monotonically between.
    overlap
        Neck overlap at contacts as a fraction of r_i + r_j (0 = touching).

    Raises
    ------
    ValueError
        If a field is NaN, of the wrong type or outside its valid range; the
        message names the field and the range.
    """

    n_particles: int = 50
    frac_w: float = 0.3
    radius_ti: float = 5.0
    radius_w: float = 3.0
    sigma_g: float = 1.2
    fractal_dim: float = 1.8
    prefactor: float = 1.3
    segregation: float = 0.0
    overlap: float = 0.0

    def __post_init__(self) -> None:
        n = self.n_particles
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            if isinstance(n, numbers.Real) and math.isfinite(n) and float(n).is_integer():
                n = int(n)
            else:
                raise ValueError(
                    f"n_particles must be an integer in [2, {_core.MAX_PARTICLES}], got {n!r}"
                )
        object.__setattr__(self, "n_particles", int(n))
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{f.name} must be a real number, got {value!r}")
            try:
                object.__setattr__(self, f.name, float(value))
            except OverflowError:  # an integer beyond any float: out of every range
                raise ValueError(f"{f.name} must be a finite number, got {value!r}") from None
        _core.validate(self._to_core())

    def _to_core(self) -> Any:
        core = _core.CoreParams()
        n = self.n_particles
        if not 2 <= n <= _core.MAX_PARTICLES:
            raise ValueError(
                f"n_particles must be an integer in [2, {_core.MAX_PARTICLES}], got {n}"
            )
        for name, value in asdict(self).items():
            setattr(core, name, value)
        return core

    @property
    def n_wo3(self) -> int:
        """Number of WO3 particles, ``round(frac_w * N)`` with halves rounded up.

        Halves are those of the decimal product: ``frac_w = 0.29`` with
        ``N = 50`` gives 15, although ``0.29 * 50`` is 14.499999999999998 in
        binary.
        """
        return int(_core.n_wo3(self._to_core()))

    @property
    def n_tio2(self) -> int:
        """Number of TiO2 particles."""
        return self.n_particles - self.n_wo3

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the fields in vector order."""
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelParams:
        """Build from a dict; unknown keys raise ``ValueError``."""
        unknown = set(values) - set(cls.field_names())
        if unknown:
            raise ValueError(f"unknown ModelParams fields: {sorted(unknown)}")
        return cls(**values)


def fractal_law_rg(n: int, r_geo: float, fractal_dim: float, prefactor: float) -> float:
    """Radius of gyration that the fractal law assigns to ``n`` particles.

    ``R_g = r_geo (n / k_f)^(1 / D_f)``, in the unit of ``r_geo``.
    """
    return float(_core.fractal_law_rg(n, r_geo, fractal_dim, prefactor))


def wo3_counts(frac_w: np.ndarray, n_particles: np.ndarray) -> np.ndarray:
    """Numbers of WO3 particles for arrays of ``frac_w`` and N, as the sampler counts them.

    The vectorised twin of :attr:`ModelParams.n_wo3`: ``round(frac_w * N)``
    with the halves of the decimal product rounded up.

    Parameters
    ----------
    frac_w, n_particles
        Arrays (or scalars) that broadcast together.

    Returns
    -------
    numpy.ndarray
        int64 counts.
    """
    product = np.asarray(frac_w, dtype=np.float64) * np.asarray(n_particles, dtype=np.float64)
    return np.floor(product + 0.5 + 8.0 * np.finfo(np.float64).eps * product).astype(np.int64)
