"""The STEM probe: electron energy, probe-forming aperture and aberrations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from heteroagg import _core
from heteroagg._numbers import is_real

#: Polar aberration coefficients (abTEM's names): symbol -> (n, m).  Their
#: phase is chi = 2 pi / lambda * C_nm alpha^(n+1) / (n+1) cos(m (phi - phi_nm)).
POLAR_SYMBOLS: dict[str, tuple[int, int]] = {
    f"C{n}{m}": (n, m) for n in range(1, 6) for m in range(n + 2) if (n + 1 - m) % 2 == 0
}


def electron_wavelength(energy: float) -> float:
    """Relativistic electron wavelength (Å) at ``energy`` (eV)."""
    return _core.electron_wavelength(float(energy))


def interaction_constant(energy: float) -> float:
    """Relativistic interaction constant sigma (1/(V·Å)) at ``energy`` (eV)."""
    return _core.interaction_constant(float(energy))


@dataclass(frozen=True)
class Probe:
    """An aberrated, aperture-limited electron probe.

    Parameters
    ----------
    energy
        Electron energy (eV).
    semiangle
        Convergence semiangle of the probe-forming aperture (mrad).  The
        aperture edge is softened over one pixel, as in abTEM.
    defocus
        Defocus (Å), equal to -C10 (positive values underfocus).
    cs
        Spherical aberration C30 (Å).
    aberrations
        Further polar coefficients by abTEM's names, e.g. ``{"C12": 20.0,
        "phi12": 0.3, "C50": 1e7}`` (Å and rad).  ``C10`` and ``C30`` here add
        to ``-defocus`` and ``cs``.
    source_size
        Standard deviation (Å) of the Gaussian effective source, applied as
        an incoherent blur of the image.
    """

    energy: float = 300e3
    semiangle: float = 20.0
    defocus: float = 0.0
    cs: float = 0.0
    aberrations: dict[str, float] = field(default_factory=dict)
    source_size: float = 0.0

    def __post_init__(self) -> None:
        for name in ("energy", "semiangle"):
            value = getattr(self, name)
            if not (is_real(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"Probe.{name} must be a positive number, got {value!r}")
        for name in ("defocus", "cs", "source_size"):
            value = getattr(self, name)
            if not (is_real(value) and math.isfinite(value)):
                raise ValueError(f"Probe.{name} must be a finite number, got {value!r}")
        if self.source_size < 0:
            raise ValueError(f"Probe.source_size must be >= 0, got {self.source_size}")
        for name, value in self.aberrations.items():
            name = str(name)
            symbol = name[3:] if name.startswith("phi") else name[1:]
            if not (name[:1] in ("C", "p") and f"C{symbol}" in POLAR_SYMBOLS):
                known = ", ".join(sorted(POLAR_SYMBOLS))
                raise ValueError(f"unknown aberration {name!r}; known: {known} and phiNM")
            if name.startswith("phi") and POLAR_SYMBOLS[f"C{symbol}"][1] == 0:
                raise ValueError(f"{name!r}: round aberration C{symbol} has no angle")
            if not (is_real(value) and math.isfinite(value)):
                raise ValueError(f"aberration {name} must be a finite number, got {value!r}")

    @property
    def wavelength(self) -> float:
        """Relativistic electron wavelength (Å)."""
        return electron_wavelength(self.energy)

    def polar_coefficients(self) -> list[tuple[int, int, float, float]]:
        """Nonzero aberrations as ``(n, m, C_nm, phi_nm)`` for the core."""
        values = {symbol: 0.0 for symbol in POLAR_SYMBOLS}
        values["C10"] = -self.defocus
        values["C30"] = self.cs
        for name, value in self.aberrations.items():
            if name.startswith("C"):
                values[name] += value
        out = []
        for symbol, (n, m) in POLAR_SYMBOLS.items():
            if values[symbol] != 0.0:
                angle = self.aberrations.get(f"phi{symbol[1:]}", 0.0)
                out.append((n, m, values[symbol], angle))
        return out

    def reciprocal(self, gpts: tuple[int, int], sampling: tuple[float, float]) -> np.ndarray:
        """The probe at the origin in reciprocal space on a grid, (ny, nx) complex64.

        Normalised so that ``sum(abs(psi)**2) == 1``; ``numpy.fft.ifft2`` of it
        is the probe in real space.
        """
        return _core.probe_reciprocal(
            tuple(gpts), tuple(sampling), self.energy, self.semiangle, self.polar_coefficients()
        )
