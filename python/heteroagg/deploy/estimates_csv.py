"""θ̂ of many images as one CSV table, for spreadsheets and acquisition pipelines."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from heteroagg._atomic import replaced_on_success
from heteroagg.deploy.runtime import Estimate


def _columns(parameters: Sequence[str], estimate: Estimate) -> list[str]:
    names = ["image"]
    for name in parameters:
        names += [name] if estimate.low is None else [name, f"{name}_low", f"{name}_high"]
    for name in estimate.descriptors:
        names += [name] if name not in estimate.descriptors_std else [name, f"{name}_std"]
    return names


def _row(label: str, parameters: Sequence[str], estimate: Estimate, b: int) -> list[str]:
    values: list[float] = []
    for name in parameters:
        values.append(estimate[name][b])
        if estimate.low is not None and estimate.high is not None:
            values += [estimate.low[name][b], estimate.high[name][b]]
    for name, column in estimate.descriptors.items():
        values.append(column[b])
        if name in estimate.descriptors_std:
            values.append(estimate.descriptors_std[name][b])
    return [label, *(f"{float(v):.9g}" for v in values)]


def write_estimates_csv(
    path: str | Path,
    labels: Sequence[Sequence[str]],
    estimates: Sequence[Estimate],
    parameters: Sequence[str],
    sample: Mapping[str, tuple[float, float | None, float | None]] | None = None,
    sample_label: str = "sample",
) -> Path:
    """Write one row per image: θ̂, its one-sigma band and the direct descriptor heads.

    Parameters
    ----------
    path
        The ``.csv`` file to write (replaced).
    labels
        Per estimate, a label for each of its images (the file, and the
        index within it for stacks).
    estimates
        :class:`~heteroagg.deploy.Estimate` per file, all from one model.
    parameters
        The parameters to write, in order (the model's varied parameters).
    sample, sample_label
        The shared parameters pooled over the images of one sample
        (:meth:`~heteroagg.pooling.PooledSample.sample_values`): a last row
        labelled ``sample_label`` holds them with their band, and leaves the
        other columns empty.

    Returns
    -------
    Path
        The file written.  Columns: ``image``; per parameter its value and,
        for a model with an uncertainty, ``<name>_low`` and ``<name>_high``;
        per direct descriptor head its value and ``<name>_std``.
    """
    if not estimates or len(labels) != len(estimates):
        raise ValueError(
            f"need one label list per estimate, got {len(labels)} for {len(estimates)}"
        )
    path = Path(path)
    with replaced_on_success(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        columns = _columns(parameters, estimates[0])
        writer.writerow(columns)
        for names, estimate in zip(labels, estimates, strict=True):
            if len(names) != len(np.asarray(estimate.normalized)):
                raise ValueError(f"{len(names)} labels for {len(estimate.normalized)} images")
            for b, label in enumerate(names):
                writer.writerow(_row(label, parameters, estimate, b))
        if sample is not None:
            cells = {}
            for name, (value, low, high) in sample.items():
                cells[name] = value
                if low is not None:
                    cells[f"{name}_low"], cells[f"{name}_high"] = low, high
            writer.writerow([sample_label, *(
                f"{float(cells[c]):.9g}" if c in cells else "" for c in columns[1:]
            )])  # fmt: skip
    return path
