"""Reading datasets written by :func:`heteroagg.data.generation.generate`."""

from __future__ import annotations

import json
import operator
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg.data.generation import (
    DAMAGED_FILE_ERRORS,
    DATASET_FORMAT_VERSION,
    out_of_file_handles,
    shard_problem,
)

#: Shard files a dataset keeps open at most; older ones are closed as others open.
MAX_OPEN_SHARDS = 128


def _item_indices(key: Any, n: int) -> np.ndarray | int:
    """The item indices ``key`` selects among ``n`` items, as numpy selects from a 1D
    array (an int for an int); anything else raises IndexError."""
    if isinstance(key, tuple):  # numpy: a[(k,)] is a[k]; a 1D array takes one index
        if len(key) != 1:
            raise IndexError(f"a dataset column takes one index, got {len(key)}")
        key = key[0]
    if not isinstance(key, (np.ndarray, list)):
        try:
            i = operator.index(key)
        except TypeError:
            pass
        else:
            if isinstance(key, (bool, np.bool_)):
                raise IndexError("a bool is not an item index")
            if not -n <= i < n:
                raise IndexError(f"item {i} out of range for {n}")
            return i % n
    if isinstance(key, slice):
        return np.arange(*key.indices(n))
    array = np.asarray(key)
    if array.ndim > 1:
        raise IndexError(f"item indices must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind in "iu":
        if array.size and not (-n <= int(array.min()) and int(array.max()) < n):
            raise IndexError(f"item indices out of range for {n}")
        wide = array.astype(np.int64)
        return np.where(wide < 0, wide + n, wide)
    return np.arange(n)[key]  # masks, empty lists and the rest, with numpy's own checks


class _Column:
    """Numpy-style slicing over one per-item array spread across shards."""

    def __init__(self, dataset: SyntheticDataset, name: str, column: int | None = None) -> None:
        self._dataset, self._name, self._column = dataset, name, column

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        indices = _item_indices(key, len(self._dataset))
        scalar = np.ndim(indices) == 0
        indices = np.atleast_1d(indices)
        size = self._dataset.shard_size
        if self._name != "images" and len(indices) > size:
            # many items: the whole table, read once a shard and kept (no images)
            table = self._dataset._table(self._name)
            out = table[indices] if self._column is None else table[indices, self._column]
            return out[0] if scalar else out
        out = self._read(0, slice(0, 0)) if len(indices) == 0 else None
        for k, where in items_by_shard(indices, size):
            local = indices[where] - k * size
            lo, hi = int(local.min()), int(local.max()) + 1
            block = self._read(k, slice(lo, hi))[local - lo]
            if out is None:
                out = np.empty((len(indices), *block.shape[1:]), block.dtype)
            out[where] = block
        out = self._dataset._convert(self._name, out)
        return out[0] if scalar else out

    def _read(self, shard: int, rows: slice) -> np.ndarray:
        with self._dataset._reading(shard) as f:
            data = f[self._name]
            return np.asarray(data[rows] if self._column is None else data[rows, self._column])


def items_by_shard(items: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(shard, positions in ``items`` of its items) for every shard ``items`` touch."""
    shard_of = np.asarray(items) // size
    order = np.argsort(shard_of, kind="stable")
    shards, firsts = np.unique(shard_of[order], return_index=True)
    for k, lo, hi in zip(shards, firsts, [*firsts[1:], len(order)][: len(shards)], strict=True):
        yield int(k), order[lo:hi]


class SyntheticDataset:
    """A generated dataset: ``len(ds)``, ``ds.images[i:j]``, ``ds.params[name][i:j]``,
    ``ds.descriptors[name][i:j]``, ``ds.failed[i:j]`` and ``ds.aggregate(i)``.

    ``with open_dataset(path) as ds:`` closes its shard files at the end.

    Shards are opened on first use, so a dataset can be shared with worker
    processes before any file is open.  At most :data:`MAX_OPEN_SHARDS` stay
    open at once, so datasets of any number of shards stay within the
    system's limit on open files.  Reading many items of a column other than
    the images reads the whole table once and keeps it (a few tens of bytes
    per item).
    """

    def __init__(self, path: str | Path, *, _index: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if _index is None:
            index_path = self.path / "dataset.json"
            if not index_path.exists():
                raise ValueError(f"{self.path} holds no heteroagg dataset (no dataset.json)")
            self.index: dict[str, Any] = json.loads(index_path.read_text())
        else:  # a copy of a dataset opened before (in a worker process)
            self.index = _index
        if self.index.get("format_version") != DATASET_FORMAT_VERSION:
            raise ValueError(f"{self.path}: dataset format {self.index.get('format_version')}, "
                             f"this heteroagg reads {DATASET_FORMAT_VERSION}")  # fmt: skip
        self.shard_size = int(self.index["shard_size"])
        if _index is None:
            missing = [k for k in range(self._shards) if not self._shard_path(k).exists()]
            if missing:
                raise ValueError(f"{self.path} is incomplete: shards {missing[:5]} are missing; "
                                 "complete it with resume=True")  # fmt: skip
        from heteroagg.model import ModelParams

        names = ModelParams.field_names()
        self.images = _Column(self, "images")
        self.params = {n: _Column(self, "params", k) for k, n in enumerate(names)}
        self.descriptors = {
            n: _Column(self, "descriptors", k) for k, n in enumerate(self.index["descriptors"])
        }
        self.failed = _Column(self, "failed")
        self.clipped = _Column(self, "clipped")
        self.rotations = _Column(self, "rotation")
        self._files: OrderedDict[int, Any] = OrderedDict()
        self._checked: set[int] = set()
        self._tables: dict[str, np.ndarray] = {}

    @property
    def _shards(self) -> int:
        return -(-int(self.index["n"]) // self.shard_size)

    def _shard_path(self, k: int) -> Path:
        return self.path / f"shard-{k:05d}.h5"

    def _shard(self, k: int) -> Any:
        """Shard ``k``, opened (and checked against the index the first time) on use."""
        if k in self._files:
            self._files.move_to_end(k)
            return self._files[k]
        import h5py

        while len(self._files) >= MAX_OPEN_SHARDS:
            self._files.popitem(last=False)[1].close()
        try:
            f = h5py.File(self._shard_path(k), "r")
        except DAMAGED_FILE_ERRORS as err:
            raise self._unreadable(k, err) from err
        if k not in self._checked:
            start = k * self.shard_size
            stop = min(len(self), start + self.shard_size)
            problem = shard_problem(f, int(self.index["seed"]), start, stop)
            if problem is not None:
                f.close()
                raise self._unreadable(k, problem)
            self._checked.add(k)
        self._files[k] = f
        return f

    def _unreadable(self, k: int, why: str | BaseException) -> Exception:
        if isinstance(why, BaseException) and out_of_file_handles(why):
            return OSError(why.errno, f"{self._shard_path(k)} cannot be opened: {why.strerror}; "
                           "too many files are open in this process (see ulimit -n)")  # fmt: skip
        return ValueError(f"{self._shard_path(k)} cannot be read: {why}; delete it and "
                          "complete the dataset with resume=True")  # fmt: skip

    @contextmanager
    def _reading(self, k: int) -> Iterator[Any]:
        """Shard ``k`` to read from; damage found while reading names the shard."""
        f = self._shard(k)
        try:
            yield f
        except DAMAGED_FILE_ERRORS as err:
            raise self._unreadable(k, err) from err

    def _table(self, name: str) -> np.ndarray:
        """The whole per-item array ``name`` (not the images), read once and kept."""
        if name not in self._tables:
            parts = []
            for k in range(self._shards):
                with self._reading(k) as f:
                    parts.append(np.asarray(f[name][:]))
            table = np.concatenate(parts)
            table.flags.writeable = False
            self._tables[name] = table
        return self._tables[name]

    def _convert(self, name: str, data: np.ndarray) -> np.ndarray:
        if name == "images":
            return data.astype(np.float32) / np.float32(self.index["image_scale"])
        return data

    def __len__(self) -> int:
        return int(self.index["n"])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "index": self.index}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], _index=state["index"])

    def shard_images(self, k: int) -> np.ndarray:
        """All stored images of shard ``k`` as uint16 (I = value / ``image_scale``)."""
        with self._reading(k) as f:
            return np.asarray(f["images"][:])

    def stored_image(self, i: int) -> np.ndarray:
        """The stored uint16 image of item ``i`` (I = value / ``image_scale``)."""
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)}")
        with self._reading(i // self.shard_size) as f:
            return np.asarray(f["images"][i % self.shard_size])

    def aggregate(self, i: int):
        """The 3D aggregate of item ``i`` (raises for a failed item)."""
        from heteroagg.aggregate import Aggregate
        from heteroagg.model import ModelParams

        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)}")
        j = i % self.shard_size
        with self._reading(i // self.shard_size) as f:
            failed, reason = bool(f["failed"][j]), f["reason"][j]
            values = dict(zip(ModelParams.field_names(), f["params"][j], strict=True))
            arrays = (
                [f[name][j] for name in ("centers", "radii", "materials")] if not failed else []
            )
        if failed:
            raise ValueError(f"item {i} failed: {reason.decode()}")
        values["n_particles"] = int(values["n_particles"])
        centers, radii, materials = arrays
        return Aggregate(centers.reshape(-1, 3), radii, materials, params=ModelParams(**values))

    def close(self) -> None:
        """Close the shard files opened so far (they reopen on the next read)."""
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> SyntheticDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(path: str | Path) -> SyntheticDataset:
    """Open a dataset folder written by ``heteroagg generate``."""
    return SyntheticDataset(path)
