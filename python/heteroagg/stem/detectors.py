"""Radially symmetric STEM detectors (angles in mrad)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnnularDetector:
    """An ideal annular detector: weight 1 for ``inner <= alpha < outer``.

    Parameters
    ----------
    inner, outer
        Collection semiangles (mrad), ``0 <= inner < outer``.
    """

    inner: float
    outer: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.inner) and math.isfinite(self.outer)):
            raise ValueError(f"detector angles must be finite, got ({self.inner}, {self.outer})")
        if not 0 <= self.inner < self.outer:
            raise ValueError(f"need 0 <= inner < outer (mrad), got ({self.inner}, {self.outer})")

    @property
    def max_angle(self) -> float:
        """Largest angle the detector collects (mrad)."""
        return float(self.outer)

    def weight(self, alpha: np.ndarray) -> np.ndarray:
        """Sensitivity at scattering angles ``alpha`` (mrad)."""
        alpha = np.asarray(alpha, dtype=float)
        return ((alpha >= self.inner) & (alpha < self.outer)).astype(float)

    def to_core(self) -> tuple[float, float, list[float], list[float]]:
        return (float(self.inner), float(self.outer), [], [])


@dataclass(frozen=True)
class SensitivityDetector:
    """A detector with a measured radial sensitivity curve.

    The weight is interpolated linearly between the points and is zero
    outside them.  Real HAADF detectors are far from ideal: most of the
    signal lies at low angles, where their sensitivity is still rising.

    Parameters
    ----------
    angles
        Scattering angles (mrad), strictly increasing, at least two.
    weights
        Sensitivity at those angles, >= 0.
    """

    angles: tuple[float, ...]
    weights: tuple[float, ...]

    def __init__(self, angles, weights) -> None:
        a = np.asarray(angles, dtype=float)
        w = np.asarray(weights, dtype=float)
        if a.ndim != 1 or a.shape != w.shape or a.size < 2:
            raise ValueError("angles and weights must be 1D of the same length >= 2")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(w))):
            raise ValueError("angles and weights must be finite")
        if np.any(np.diff(a) <= 0) or a[0] < 0:
            raise ValueError("angles must be >= 0 and strictly increasing (mrad)")
        if np.any(w < 0) or not np.any(w > 0):
            raise ValueError("weights must be >= 0, and some > 0 (a detector that sees nothing)")
        object.__setattr__(self, "angles", tuple(a.tolist()))
        object.__setattr__(self, "weights", tuple(w.tolist()))

    @property
    def max_angle(self) -> float:
        """Largest angle with a nonzero weight (mrad)."""
        w = np.asarray(self.weights)
        nonzero = np.nonzero(w)[0]
        if nonzero.size == 0:
            return 0.0
        last = nonzero[-1]
        return float(self.angles[min(last + 1, len(self.angles) - 1)])

    def weight(self, alpha: np.ndarray) -> np.ndarray:
        """Sensitivity at scattering angles ``alpha`` (mrad)."""
        alpha = np.asarray(alpha, dtype=float)
        out = np.interp(alpha, self.angles, self.weights)
        return np.where((alpha < self.angles[0]) | (alpha > self.angles[-1]), 0.0, out)

    def to_core(self) -> tuple[float, float, list[float], list[float]]:
        return (0.0, 0.0, list(self.angles), list(self.weights))


Detector = AnnularDetector | SensitivityDetector


def as_detector(detector) -> Detector:
    """Accept a detector object or an ``(inner, outer)`` pair in mrad."""
    if isinstance(detector, (AnnularDetector, SensitivityDetector)):
        return detector
    try:
        inner, outer = detector
    except (TypeError, ValueError):
        raise ValueError(
            "detector must be AnnularDetector, SensitivityDetector or an (inner, outer) "
            f"pair in mrad, got {detector!r}"
        ) from None
    return AnnularDetector(float(inner), float(outer))
