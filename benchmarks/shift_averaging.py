"""Does averaging over whole-pixel shifts of the image add to averaging over its symmetries?

A trained network folds the image 2 x 2 and halves its grid at every stage,
so it is not invariant under a shift of the image by a pixel: each shift is
another view of the same aggregate, as each quarter turn and mirror is.
The script predicts a held-out dataset with a trained run, on the images as
they are and rolled by each ``--shifts`` offset (rows, columns; the field's
edges are vacuum), each with and without the symmetries, and prints the
test R² (physical units) of the four target parameters and ``segregation``:

- for every view alone;
- for the mean normalised prediction over the first four shifts (the four
  phases of the 2 x 2 folding), and over all of them.

The test images get the same shot noise as ``heteroagg evaluate`` with the
same seed.  The figures of docs/results.md came from::

    heteroagg generate --n 90000 --seed 1 --out train90k --workers 2
    heteroagg generate --n 2000 --seed 2 --out test2k --workers 2
    heteroagg train --data train90k --out main15 --config main15.toml
    python benchmarks/shift_averaging.py main15 --data test2k

with main15.toml as main9's in docs/results.md ("The full-resolution stem in a
full run").
"""

from __future__ import annotations

import argparse

import numpy as np

from heteroagg.data import SyntheticDataset
from heteroagg.learn.evaluation import noisy_test_images, parameter_metrics
from heteroagg.learn.inference import TrainedRun

#: The four phases of the 2 x 2 folding first, then shifts across deeper strides.
DEFAULT_SHIFTS = ((0, 0), (0, 1), (1, 0), (1, 1), (2, 3), (-3, 2), (5, -4), (-6, -7))
SCORED = ("n_particles", "frac_w", "radius_ti", "radius_w", "segregation")


def _shift(text: str) -> tuple[int, int]:
    rows, cols = (int(v) for v in text.split(","))
    return rows, cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a trained run folder")
    parser.add_argument("--data", required=True, help="the held-out dataset")
    parser.add_argument(
        "--shifts",
        type=_shift,
        nargs="+",
        default=list(DEFAULT_SHIFTS),
        help="offsets ROWS,COLS in pixels; the first must be 0,0",
    )
    parser.add_argument("--seed", type=int, default=0, help="root seed of the test noise")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.shifts[0] != (0, 0):
        parser.error("the first shift must be 0,0 (the image as it is)")

    run = TrainedRun(args.run, args.device)
    dataset = SyntheticDataset(args.data)
    items = np.flatnonzero(~dataset.failed[:])
    test = noisy_test_images(dataset, items, args.seed, True)
    truth = {name: dataset.params[name][:][items] for name in run.parameters}
    scored = [name for name in SCORED if name in run.parameters]

    def scores(normalized: np.ndarray) -> str:
        params = run.space.denormalize(np.clip(normalized, 0.0, 1.0))
        return " | ".join(f"{parameter_metrics(truth[n], params[n])['r2']:.4f}" for n in scored)

    print("view | " + " | ".join(scored))
    for symmetrize in (False, True):
        views = [
            run.predict(np.roll(test.images, shift, axis=(1, 2)), symmetrize=symmetrize).normalized
            for shift in args.shifts
        ]
        label = "symmetrized" if symmetrize else "plain"
        for shift, view in zip(args.shifts, views, strict=True):
            print(f"{label}, shifted {shift} | {scores(view)}")
        if len(views) >= 4:
            print(f"{label}, mean of the first 4 shifts | {scores(np.mean(views[:4], axis=0))}")
        print(f"{label}, mean of all {len(views)} shifts | {scores(np.mean(views, axis=0))}")


if __name__ == "__main__":
    main()
