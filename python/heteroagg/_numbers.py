"""What counts as a number in heteroagg's arguments."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or numpy int or float, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_count(value: Any) -> bool:
    """Whether ``value`` is an integer: a Python or numpy int, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
