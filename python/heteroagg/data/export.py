"""Export a subset of a dataset to the formats of the field: EMD 1.0 and HyperSpy.

EMD 1.0 files (written through ``emdfile``) open in py4DSTEM and any HDF5
reader; ``.hspy`` files (written through ``rosettasciio``) open in
HyperSpy.  Both hold the images (item, y, x) as fractions of the incident
beam with their pixel size in nm, the model parameters and descriptors of
each item, and the dataset's resolved config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._atomic import replaced_on_success
from heteroagg.data.dataset import open_dataset

EXPORT_FORMATS = ("emd", "hspy")


def _selection(n: int, items: slice | Sequence[int] | None) -> np.ndarray:
    if isinstance(items, slice):
        for end in (items.start, items.stop):  # a slice would clip them silently
            if end is not None and not -n <= end <= n:
                raise ValueError(f"items {items.start}:{items.stop} reach beyond the {n} items")
    indices = np.arange(n)[items if items is not None else slice(None)]
    if indices.size == 0:
        raise ValueError("the selection holds no items")
    return np.atleast_1d(indices)


#: File name suffixes of each export format.
_SUFFIXES = {"emd": (".emd", ".h5"), "hspy": (".hspy",)}


def export_dataset(
    path: str | Path,
    out: str | Path,
    *,
    format: str,
    items: slice | Sequence[int] | None = None,
) -> Path:
    """Write items of the dataset at ``path`` to ``out`` as EMD 1.0 or HyperSpy.

    Parameters
    ----------
    path
        A dataset folder written by :func:`heteroagg.data.generate`.
    out
        The file to write (``.emd``/``.h5`` or ``.hspy``).
    format
        ``"emd"`` or ``"hspy"``.
    items
        A slice or list of item indices; None exports every item.

    Returns
    -------
    Path
        ``out``.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    suffixes = _SUFFIXES[format]
    if Path(out).suffix.lower() not in suffixes:
        # readers, heteroagg predict among them, tell the formats apart by the suffix
        raise ValueError(
            f"a {format} file must end in {' or '.join(suffixes)}, got {Path(out).name!r}"
        )
    with open_dataset(path) as ds:
        if Path(out).resolve() in {p.resolve() for p in Path(path).iterdir()}:
            raise ValueError(f"{out} is a file of the dataset itself; export to another file")
        indices = _selection(len(ds), items)
        images = ds.images[indices]
        params = {name: column[indices] for name, column in ds.params.items()}
        descriptors = {name: column[indices] for name, column in ds.descriptors.items()}
        pixel = float(ds.index["config"]["imaging"]["pixel_size"])
        info = {
            "heteroagg_version": ds.index["version"],
            "seed": ds.index["seed"],
            "config": json.dumps(ds.index["config"]),
            "items": indices.tolist(),
            "failed": ds.failed[indices].tolist(),
        }
    out = Path(out)
    write = _write_emd if format == "emd" else _write_hspy
    with replaced_on_success(out) as tmp:  # a failed export leaves the old file whole
        write(tmp, indices, images, params, descriptors, pixel, info)
    return out


def _write_emd(out: Path, indices, images, params, descriptors, pixel, info) -> None:
    try:
        import emdfile
    except ImportError:
        raise ImportError("EMD export needs emdfile: pip install 'heteroagg[export]'") from None
    ny, nx = images.shape[1:]
    root = emdfile.Root(name="heteroagg")
    root.tree(emdfile.Array(
        data=images, name="images", units="fraction of incident beam",
        dims=[indices, np.arange(ny) * pixel, np.arange(nx) * pixel],
        dim_names=["item", "y", "x"], dim_units=["", "nm", "nm"],
    ))  # fmt: skip
    for name, table in (("params", params), ("descriptors", descriptors)):
        root.tree(emdfile.Array(
            data=np.stack(list(table.values()), axis=1), name=name,
            dims=[indices, np.arange(len(table))], dim_names=["item", "field"],
        ))  # fmt: skip
    metadata = emdfile.Metadata(name="dataset")
    for key, value in {**info, "params_fields": ",".join(params),
                       "descriptors_fields": ",".join(descriptors)}.items():  # fmt: skip
        if key == "seed":  # a root seed may exceed the int64 that emdfile stores
            value = str(value)
        metadata[key] = value if not isinstance(value, list) else np.asarray(value)
    root.metadata = metadata
    emdfile.save(str(out), root, mode="o")


def _item_axis(indices: np.ndarray) -> dict[str, Any]:
    """The navigation axis of the exported items: their dataset indices where they are
    evenly spaced, else their positions in the selection (``items`` holds the indices)."""
    steps = np.diff(indices)
    if len(indices) == 1 or (steps[0] != 0 and np.all(steps == steps[0])):
        step = 1 if len(indices) == 1 else int(steps[0])
        return {"name": "item", "offset": float(indices[0]), "scale": float(step)}
    return {"name": "position in selection", "offset": 0.0, "scale": 1.0}


def _write_hspy(out: Path, indices, images, params, descriptors, pixel, info) -> None:
    try:
        from rsciio.hspy import file_writer
    except ImportError:
        message = "HyperSpy export needs rosettasciio: pip install 'heteroagg[export]'"
        raise ImportError(message) from None
    n, ny, nx = images.shape
    axes: list[dict[str, Any]] = [
        {**_item_axis(indices), "size": n, "units": "", "navigate": True},
        {"name": "y", "size": ny, "offset": 0.0, "scale": pixel, "units": "nm", "navigate": False},
        {"name": "x", "size": nx, "offset": 0.0, "scale": pixel, "units": "nm", "navigate": False},
    ]
    signal = {
        "data": images,
        "axes": axes,
        "metadata": {
            "General": {"title": "heteroagg HAADF-STEM images"},
            "Signal": {"signal_type": "", "quantity": "Intensity (fraction of incident beam)"},
        },
        "original_metadata": {
            "heteroagg": {
                **info,
                "items": np.asarray(info["items"]),
                "failed": np.asarray(info["failed"]),
                "params": params,
                "descriptors": descriptors,
            },
        },
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "learning_results": {},
        "models": {},
        "package_info": {"name": "heteroagg", "version": info["heteroagg_version"]},
    }
    file_writer(str(out), signal)
