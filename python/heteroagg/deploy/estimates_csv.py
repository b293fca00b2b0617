"""θ̂ of many images as one CSV table, for spreadsheets and acquisition pipelines."""

from __future__ import annotations

import csv
from collections.abc import Sequence
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
        writer.writerow(_columns(parameters, estimates[0]))
        for names, estimate in zip(labels, estimates, strict=True):
            if len(names) != len(np.asarray(estimate.normalized)):
                raise ValueError(f"{len(names)} labels for {len(estimate.normalized)} images")
            for b, label in enumerate(names):
                writer.writerow(_row(label, parameters, estimate, b))
    return path
