"""The split of a dataset's items into training and validation items.

Every item is a distinct aggregate, so the split is by aggregate; whether an
item is held out is a pure function of (seed, item), the same for stored
datasets and for items generated while training.
"""

from __future__ import annotations

import numpy as np

from heteroagg.rng import derive_seed, uniform

#: Stream of an item's seed that decides the validation split ("split").
SPLIT_STREAM = 0x73706C6974


def split_items(n: int, failed: np.ndarray, seed: int, val_fraction: float):
    """Training and validation items: the split is a pure function of (seed, item).

    Each item of a dataset is a distinct aggregate, so splitting items splits
    aggregates; items that failed are in neither set.
    """
    validation = np.array([is_validation_item(seed, i, val_fraction) for i in range(n)], bool)
    valid = ~np.asarray(failed, dtype=bool)
    return np.flatnonzero(valid & ~validation), np.flatnonzero(valid & validation)


def is_validation_item(seed: int, i: int, val_fraction: float) -> bool:
    """Whether item ``i`` is held out: a uniform draw from ``(seed, i)`` below ``val_fraction``."""
    return bool(uniform(derive_seed(seed, i), SPLIT_STREAM, 1, device="cpu")[0] < val_fraction)
