"""Are the conditioned twins' ranges as wide as they should be?

Twins conditioned on the direct descriptor heads (``--twin-candidates``)
weigh each candidate by the Gaussian density of its descriptors about the
heads' estimates, within the heads' predicted spread.  This script widens
that spread by a factor ``s`` (``heteroagg evaluate --twin-head-spread``)
and reports, per factor, the median |relative error| of the twins' mean and
of a single twin, and how often the K twins' range holds the truth, for CN,
HCN and R_g.  Run it on a validation set, never the test set.  The table of
docs/results.md came from::

    python benchmarks/conditioning_spread.py --run runs/main18 --data runs/val2k
"""

from __future__ import annotations

import argparse

import numpy as np

from heteroagg.data import SyntheticDataset
from heteroagg.learn.evaluation import noisy_test_images, relative_error, twin_analysis
from heteroagg.learn.inference import TrainedRun
from heteroagg.twins import TWIN_DESCRIPTORS

REPORTED = ("coordination_number", "hetero_coordination_number", "radius_of_gyration")


def spread_table(
    run_dir: str, data_dir: str, images: int, k: int, candidates: int, factors: list[float]
) -> list[dict]:
    """Per factor: median errors and range coverage of CN, HCN and R_g."""
    run = TrainedRun(run_dir, "cpu")
    dataset = SyntheticDataset(data_dir)
    items = np.flatnonzero(~dataset.failed[:])[:images]
    test = noisy_test_images(dataset, items, 0, True)
    prediction = run.predict(test.images, symmetrize=True)
    rows = []
    for factor in factors:
        twins = twin_analysis(
            run, dataset, test, prediction, k, images, 0, False,
            candidates=candidates, head_spread=factor,
        )  # fmt: skip
        row: dict = {"factor": factor}
        for name in REPORTED:
            j = TWIN_DESCRIPTORS.index(name)
            truth = twins["truth"][:, j]
            known = np.isfinite(truth)
            mean = np.abs(relative_error(twins["twin_mean"][:, j], truth))
            single = np.abs(relative_error(twins["twin_single"][:, j], truth))
            row[name] = {
                "mean": float(np.nanmedian(mean)),
                "single": float(np.nanmedian(single)),
                "coverage": _coverage(twins["covered_twin"][known, j]),
                "coverage_true_theta": _coverage(twins["covered_reference"][known, j]),
            }
        rows.append(row)
    return rows


def _coverage(flags: np.ndarray) -> float:
    """Share of covered truths among the images whose draws did not all fail (NaN flags)."""
    defined = flags[np.isfinite(flags)]
    return float(np.mean(defined)) if defined.size else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True, help="a validation set, not the test set")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--twins", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--factors", type=float, nargs="+", default=[1, 1.25, 1.5, 2, 3])
    args = parser.parse_args()
    rows = spread_table(args.run, args.data, args.images, args.twins, args.candidates, args.factors)
    print("factor | " + " | ".join(f"{n}: mean, single, in range" for n in REPORTED))
    for row in rows:
        cells = [
            f"{100 * row[n]['mean']:.1f} %, {100 * row[n]['single']:.1f} %, "
            f"{100 * row[n]['coverage']:.0f} %"
            for n in REPORTED
        ]
        print(f"{row['factor']:g} | " + " | ".join(cells))
    floor = [f"{100 * rows[0][n]['coverage_true_theta']:.0f} %" for n in REPORTED]
    print("truth in the range of K samples at the true θ: " + " / ".join(floor))


if __name__ == "__main__":
    main()
