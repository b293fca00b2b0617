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


class ItemRows:
    """The row of each item in a table of ``items``, looked up as one array.

    An array of the largest item's size, not a dict of Python numbers, so it
    stays small and fast for millions of items; an item not in the table is
    refused (KeyError), as a dict refuses it.
    """

    def __init__(self, items: np.ndarray) -> None:
        items = np.asarray(items, dtype=np.int64)
        self._row = np.full(int(items.max(initial=-1)) + 1, -1, dtype=np.int64)
        self._row[items] = np.arange(len(items))

    def __call__(self, items: np.ndarray) -> np.ndarray:
        """The rows of ``items`` (int64)."""
        items = np.asarray(items, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= len(self._row)):
            raise KeyError(
                f"items {items[(items < 0) | (items >= len(self._row))][:5]} are not held"
            )
        rows = self._row[items]
        if items.size and rows.min() < 0:
            raise KeyError(f"items {items[rows < 0][:5]} are not held")
        return rows

    def __len__(self) -> int:
        return int(np.count_nonzero(self._row >= 0))
