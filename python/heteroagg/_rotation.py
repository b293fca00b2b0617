"""What counts as a rotation of an aggregate."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_rotation(rotation: Any) -> np.ndarray:
    """A proper rotation matrix (orthonormal, determinant +1) as a contiguous float64
    (3, 3) array, or ``ValueError``."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise ValueError(f"rotation must be a finite 3x3 matrix, got shape {r.shape}")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise ValueError("rotation must be a proper rotation matrix (orthonormal, det +1)")
    return np.ascontiguousarray(r)
