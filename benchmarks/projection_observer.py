"""How much do particles that overlap in projection cost the brightness observer?

The brightness observer (:mod:`heteroagg.learn.brightness_observer`) sees
every particle's radius and brightness.  An image does not show them all
apart: in projection, many particles lie in front of or behind others.
This script runs the observer on the aggregates of a dataset, in the
projection each was imaged in (its stored rotation), and hides the
particles that other particles cover:

- ``none``: every particle is seen (the plain observer);
- ``centre``: a particle whose projected centre lies inside another
  particle's disc is hidden;
- a number X in (0, 1]: a particle with at least the fraction X of its disc
  covered by others is hidden (1: only those covered entirely).

A hidden particle still counts in N, but its radius, brightness and
material are not seen (``observe_particles(..., hidden=...)``).  Hiding is
pessimistic: in a HAADF image particles add up rather than hide each other,
so a covered WO3 particle still shows as a bright bump.  Each particle's
brightness is drawn from the renderer's log-normal law with the seed
``(seed, item)`` and the shipped LUTs, which belong to the default imaging
settings; the priors are the dataset's.  Radii are seen exactly or with
``--radius-error``.

With ``--predictions`` (the ``predictions.npz`` that ``heteroagg evaluate``
writes for the same dataset) it also asks whether the network errs more
where more WO3 particles are covered: within ranges of N, the
root-mean-square ``frac_w`` error counted in WO3 particles for the half of
the aggregates with fewer and the half with more of them hidden.

The figures of docs/results.md came from::

    heteroagg evaluate --model runs/main11 --data runs/test2k --out runs/report_main11_sym \\
        --symmetrize --twins 2 --twin-images 0
    python benchmarks/projection_observer.py --data runs/test2k \\
        --settings none 1 0.9 centre --predictions runs/report_main11_sym/predictions.npz \\
        --out runs/projection_observer.json
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool

import numpy as np

from heteroagg import projected_coverage
from heteroagg.data import DatasetConfig, SyntheticDataset
from heteroagg.learn.brightness_observer import (
    BRIGHTNESS_OBSERVER_PARAMETERS,
    ObserverGrid,
    observe_particles,
    particle_ln_brightness,
)
from heteroagg.learn.ceiling import r2

_STATE: dict = {}


def hidden_mask(setting: str, fraction: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The particles a setting hides; at least one stays seen."""
    if setting == "none":
        hidden = np.zeros(fraction.size, dtype=bool)
    elif setting == "centre":
        hidden = centre.copy()
    else:
        hidden = fraction >= float(setting)
    if hidden.all():
        hidden[np.argmin(fraction)] = False
    return hidden


def _start(data: str, settings: list[str], radius_error: float, seed: int) -> None:
    dataset = SyntheticDataset(data)
    _STATE.update(
        dataset=dataset,
        rotations=dataset.rotations[:],
        grid=ObserverGrid.from_space(DatasetConfig.from_dict(dataset.index["config"]).params),
        settings=settings,
        radius_error=radius_error,
        seed=seed,
    )


def _observe(item: int) -> tuple[list[list[float]], list[int], int]:
    s = _STATE
    agg = s["dataset"].aggregate(item)
    cover = projected_coverage(agg, s["rotations"][item])
    is_w = agg.materials == 1
    rng = np.random.default_rng((s["seed"], item))
    ln_b = particle_ln_brightness(agg.radii, is_w, rng.standard_normal(is_w.size))
    ln_r = np.log(agg.radii) + s["radius_error"] * rng.standard_normal(is_w.size)
    estimates, hidden_wo3 = [], []
    for setting in s["settings"]:
        hidden = hidden_mask(setting, cover.fraction, cover.centre_covered)
        got = observe_particles(
            s["grid"],
            ln_r,
            ln_brightness=ln_b,
            radius_error=s["radius_error"],
            hidden=hidden,
        )
        estimates.append([got[name][0] for name in BRIGHTNESS_OBSERVER_PARAMETERS])
        hidden_wo3.append(int((hidden & is_w).sum()))
    return estimates, hidden_wo3, int(is_w.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a dataset directory (the test set)")
    parser.add_argument("--settings", nargs="+", default=["none", "1", "0.9", "0.5", "centre"])
    parser.add_argument("--radius-error", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--predictions", default=None, help="heteroagg evaluate's predictions.npz")
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    for setting in args.settings:
        if setting not in ("none", "centre") and not 0 < float(setting) <= 1:
            parser.error(f"a setting is none, centre or a fraction in (0, 1], got {setting!r}")

    dataset = SyntheticDataset(args.data)
    items = np.flatnonzero(~dataset.failed[:])
    start = time.perf_counter()
    init = (args.data, args.settings, args.radius_error, args.seed)
    with Pool(args.processes, initializer=_start, initargs=init) as pool:
        results = pool.map(_observe, items.tolist(), chunksize=8)
    estimates = np.array([r[0] for r in results])  # (items, settings, parameters)
    hidden_wo3 = np.array([r[1] for r in results])
    n_wo3 = np.array([r[2] for r in results])
    truth = {name: np.asarray(dataset.params[name][:][items], float) for name in dataset.params}
    table = {}
    for k, setting in enumerate(args.settings):
        row = {
            name: r2(truth[name], estimates[:, k, j])
            for j, name in enumerate(BRIGHTNESS_OBSERVER_PARAMETERS)
        }
        row["hidden_wo3_share"] = float(hidden_wo3[:, k].sum() / n_wo3.sum())
        table[setting] = row
        print(
            f"{setting:>7}: "
            + "  ".join(f"{name} {row[name]:.3f}" for name in BRIGHTNESS_OBSERVER_PARAMETERS)
            + f"  hidden WO3 {row['hidden_wo3_share']:.1%}"
        )
    seconds = time.perf_counter() - start
    print(f"{items.size} aggregates in {seconds:.0f} s on {args.processes} processes")
    if args.predictions:
        with np.load(args.predictions) as saved:
            if not np.array_equal(saved["item"], items):
                raise SystemExit(f"{args.predictions} does not predict the items of {args.data}")
            column = saved["parameters"].tolist().index("frac_w")
            network = saved["predicted"][:, column]
        n = truth["n_particles"]
        error = (network - truth["frac_w"]) * n  # in WO3 particles
        for k, setting in enumerate(args.settings):
            if setting == "none":
                continue
            share = hidden_wo3[:, k] / np.maximum(n_wo3, 1)
            table[setting]["network_by_hidden_share"] = rows = []
            for low, high in ((10, 19), (20, 39), (40, 79), (80, 150)):
                at = (n >= low) & (n <= high)
                few = at & (share <= np.median(share[at]))
                many = at & ~few
                rows.append(
                    {
                        "n_particles": [low, high],
                        "mean_hidden_share": float(share[at].mean()),
                        "rms_error_fewer_hidden": float(np.sqrt(np.mean(error[few] ** 2))),
                        "rms_error_more_hidden": float(np.sqrt(np.mean(error[many] ** 2))),
                        "correlation": float(np.corrcoef(np.abs(error[at]), share[at])[0, 1]),
                    }
                )
                print(f"{setting:>7}, N {low}-{high}: " + json.dumps(rows[-1]))
    if args.out:
        report = {
            "data": args.data,
            "items": int(items.size),
            "radius_error": args.radius_error,
            "seed": args.seed,
            "seconds": seconds,
            "r2": table,
        }
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
