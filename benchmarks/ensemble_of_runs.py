"""Do separately trained runs gain as a deep ensemble?

The script predicts a held-out dataset with each trained run, with and
without averaging over the image's symmetries, and with the runs' mean
normalised prediction (a deep ensemble of the runs).  It prints the test R²
of every parameter and the correlation between the first two runs' errors in
normalised units: members that make the same errors gain little from being
averaged.  The test images get the same shot noise as ``heteroagg evaluate``
with the same seed.  The figures of docs/results.md came from::

    python benchmarks/ensemble_of_runs.py --data test2k main2/run main3/run
"""

from __future__ import annotations

import argparse

import numpy as np

from heteroagg.data import SyntheticDataset
from heteroagg.learn.evaluation import noisy_test_images, parameter_metrics
from heteroagg.learn.inference import TrainedRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders trained on the same parameters")
    parser.add_argument("--data", required=True, help="the held-out dataset")
    parser.add_argument("--seed", type=int, default=0, help="root seed of the test noise")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if len(args.runs) < 2:
        parser.error("an ensemble needs at least two runs")

    runs = [TrainedRun(path, args.device) for path in args.runs]
    space = runs[0].space
    if any(run.parameters != runs[0].parameters for run in runs):
        parser.error("the runs predict different parameters")
    dataset = SyntheticDataset(args.data)
    items = np.flatnonzero(~dataset.failed[:])
    test = noisy_test_images(dataset, items, args.seed, True)
    truth = {name: dataset.params[name][:][items] for name in runs[0].parameters}
    truth_normalized = space.normalize(truth)

    for symmetrize in (False, True):
        members = [run.predict(test.images, symmetrize=symmetrize).normalized for run in runs]
        # scored as heteroagg evaluate scores them: the estimates clipped to the prior
        alone = [space.denormalize(np.clip(m, 0.0, 1.0)) for m in members]
        ensemble = space.denormalize(np.clip(np.mean(members, axis=0), 0.0, 1.0))
        errors = [m - truth_normalized for m in members]
        print(f"\nsymmetrized: {symmetrize}")
        print("parameter | " + " | ".join(args.runs) + " | ensemble | error correlation")
        for k, name in enumerate(runs[0].parameters):
            scores = [parameter_metrics(truth[name], m[name])["r2"] for m in alone]
            together = parameter_metrics(truth[name], ensemble[name])["r2"]
            correlation = np.corrcoef(errors[0][:, k], errors[1][:, k])[0, 1]
            cells = " | ".join(f"{r2:.3f}" for r2 in scores)
            print(f"{name} | {cells} | {together:.3f} | {correlation:.2f}")


if __name__ == "__main__":
    main()
