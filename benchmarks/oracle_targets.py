"""Copy a dataset with the oracle's posterior means in place of three targets.

A network trained with squared error learns E[θ | image].  The image depends
on ``frac_w``, ``radius_ti`` and ``radius_w`` only through the particles:
N_W = round(frac_w·N) (halves up) and the radii drawn around each median.  So
E[θ | image] = E[ E[θ | particles, sigma_g] | image ], and the oracle's posterior
mean (:mod:`heteroagg.learn.ceiling`, which is told sigma_g) is a target with the
same optimum but without the part of θ that no image can show.  If the
networks were limited by that label noise, training on these targets would
help.

The copy keeps everything else: images, aggregates, the other parameters.
Each target is the posterior mean of the *normalised* value (what the
network regresses), mapped back to physical units.  It checks on the way
that the stored particles follow the model's laws (N_W, and the z-scores
of each material's mean log radius).

The ablation of docs/results.md ("Targets the oracle has averaged") used::

    python benchmarks/oracle_targets.py runs/abl20k runs/abl20k_oracle
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import h5py
import numpy as np

from heteroagg.data import DatasetConfig, SyntheticDataset
from heteroagg.learn.ceiling import frac_w_posterior, log_median_posterior
from heteroagg.model import wo3_counts

TARGETS = ("frac_w", "radius_ti", "radius_w")


def _from_normalized(prior, value: np.ndarray) -> np.ndarray:
    if prior.kind == "log-uniform":
        return prior.low * (prior.high / prior.low) ** value
    return prior.low + value * (prior.high - prior.low)


def oracle_targets(dataset: SyntheticDataset) -> dict[str, np.ndarray]:
    """The oracle's posterior means of :data:`TARGETS`, for every item (failed: unchanged)."""
    space = DatasetConfig.from_dict(dataset.index["config"]).params
    params = {name: np.asarray(dataset.params[name][:], float) for name in TARGETS}
    items = np.flatnonzero(~dataset.failed[:])
    n = np.asarray(dataset.params["n_particles"][:][items], int)
    ln_sigma = np.log(np.asarray(dataset.params["sigma_g"][:][items], float))
    mean_log = np.full((2, items.size), np.nan)
    count = np.zeros((2, items.size), int)
    for j, i in enumerate(items):
        agg = dataset.aggregate(int(i))
        for m in (0, 1):
            chosen = agg.materials == m
            count[m, j] = chosen.sum()
            if count[m, j]:
                mean_log[m, j] = np.log(agg.radii[chosen]).mean()
    if np.any(count[1] != wo3_counts(params["frac_w"][items], n)):
        raise SystemExit("the stored WO3 counts do not follow round(frac_w·N), halves up")
    _, normalized = frac_w_posterior(n, count[1], space.priors["frac_w"])
    params["frac_w"][items] = _from_normalized(space.priors["frac_w"], normalized)
    for name, m in (("radius_ti", 0), ("radius_w", 1)):
        tau = np.where(count[m] > 0, ln_sigma / np.sqrt(np.maximum(count[m], 1)), np.inf)
        seen = count[m] > 0
        z = (mean_log[m, seen] - np.log(params[name][items][seen])) / tau[seen]
        print(f"{name}: z-scores of the mean log radius {z.mean():+.3f} ± {z.std():.3f}")
        _, normalized = log_median_posterior(mean_log[m], tau, space.priors[name])
        params[name][items] = _from_normalized(space.priors[name], normalized)
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the dataset to copy")
    parser.add_argument("target", help="the new dataset folder (must not exist)")
    args = parser.parse_args()
    source, target = Path(args.source), Path(args.target)
    if target.exists():
        raise SystemExit(f"{target} exists")
    dataset = SyntheticDataset(source)
    targets = oracle_targets(dataset)
    names = list(dataset.params)
    truth = {name: np.asarray(dataset.params[name][:], float) for name in TARGETS}
    ok = ~dataset.failed[:]
    for name in TARGETS:
        t, e = truth[name][ok], targets[name][ok]
        print(f"{name}: R² of the new target against θ {1 - np.mean((e - t) ** 2) / t.var():.4f}")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    for k in range(-(-len(dataset) // dataset.shard_size)):
        with h5py.File(partial / f"shard-{k:05d}.h5", "r+") as f:
            start = k * dataset.shard_size
            rows = f["params"][:]
            for name in TARGETS:
                rows[:, names.index(name)] = targets[name][start : start + len(rows)]
            f["params"][...] = rows
    partial.rename(target)


if __name__ == "__main__":
    main()
