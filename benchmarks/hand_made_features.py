"""Do hand-made particle features add anything to a trained network?

A network that underfits may miss what classical image analysis reads
directly: blobs at several scales, bright connected regions and their
widths, the histogram of intensities.  The script measures whether such
features, given to gradient-boosted trees next to the network's outputs,
improve the estimate of θ.

1. It takes the trained run's predictions (normalised means, predictive
   standard deviations, direct descriptor heads) on items of a training set
   the run never saw (``--first-item`` on), with noise drawn as
   ``heteroagg evaluate`` draws it, and on the test set.
2. It computes 113 features of the centred 128² crop of each noisy image:
   the total and peak intensity, a 32-bin histogram on a log scale, for six
   intensity thresholds the area, intensity, number of connected regions
   and the mean, largest and median distance-transform maximum of the
   regions, and for seven scales the number and sum of scale-normalised
   Laplacian-of-Gaussian maxima and their counts above four fractions of
   the peak.
3. It fits scikit-learn's ``HistGradientBoostingRegressor`` to each of
   ``n_particles``, ``frac_w``, ``radius_ti`` and ``radius_w`` (physical
   units), once on the network's outputs alone ("stack") and once on the
   outputs and the features ("features"), on all but 5 000 of the items; the
   5 000 held out score the choice, the test set is scored once.

It needs scikit-learn (``pip install scikit-learn``).  The figures of
docs/results.md came from::

    python benchmarks/hand_made_features.py --run runs/main9 \\
        --train-data runs/train300k --first-item 90000 --items 30000 --test-data runs/test2k
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy import ndimage

SIGMAS_PX = (1.0, 1.5, 2.0, 3.0, 4.0, 5.5, 7.5)
THRESHOLDS = (0.01, 0.02, 0.04, 0.06, 0.09, 0.13)
HISTOGRAM_EDGES = np.concatenate([[0.0], np.geomspace(2e-4, 0.3, 31), [np.inf]])
PARAMETERS = ("n_particles", "frac_w", "radius_ti", "radius_w")
CROP = 128


def features(image: np.ndarray) -> np.ndarray:
    """The hand-made features of one crop (see the module notes)."""
    image = image.astype(np.float32)
    out = [image.sum(), (image > 1e-3).sum(), image.max()]
    counts, _ = np.histogram(image, HISTOGRAM_EDGES)
    out += list(counts / image.size)
    for level in THRESHOLDS:
        mask = image > level
        labels, n = ndimage.label(mask)
        out += [mask.sum(), image[mask].sum(), n]
        if n:
            depth = ndimage.distance_transform_edt(mask)
            widest = ndimage.maximum(depth, labels, np.arange(1, n + 1))
            out += [np.mean(widest), np.max(widest), np.median(widest)]
        else:
            out += [0.0, 0.0, 0.0]
    peak = image.max() + 1e-9
    for sigma in SIGMAS_PX:
        response = -(sigma**2) * ndimage.gaussian_laplace(image, sigma)
        size = int(2 * sigma) | 1
        maxima = response[
            (response == ndimage.maximum_filter(response, size=size)) & (response > 0)
        ]
        out += [maxima.size, maxima.sum()]
        out += [(maxima > f * peak).sum() for f in (0.02, 0.05, 0.1, 0.2)]
    return np.asarray(out, dtype=np.float32)


def network_outputs(run_dir: str, data_dir: str, items: np.ndarray, seed: int) -> dict:
    """Noisy crops, the run's outputs and the true θ for ``items``."""
    from heteroagg.data import SyntheticDataset
    from heteroagg.learn.evaluation import noisy_test_images
    from heteroagg.learn.inference import TrainedRun

    run = TrainedRun(run_dir, "cpu")
    dataset = SyntheticDataset(data_dir)
    crops, outputs = [], []
    for first in range(0, len(items), 500):
        block = items[first : first + 500]
        test = noisy_test_images(dataset, block, seed, True)
        p = run.predict(test.images)
        descriptors = [p.descriptors[k] for k in sorted(p.descriptors)]
        outputs.append(np.column_stack([p.normalized, p.normalized_std, *descriptors]))
        start = (test.images.shape[-1] - CROP) // 2
        crops.append(test.images[:, start : start + CROP, start : start + CROP])
    true = {name: dataset.params[name][:][items] for name in PARAMETERS}
    return {"crops": np.concatenate(crops), "outputs": np.concatenate(outputs), "true": true}


def r2(true: np.ndarray, estimate: np.ndarray) -> float:
    return 1.0 - float(np.mean((estimate - true) ** 2)) / float(np.var(true))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--train-data", required=True)
    parser.add_argument(
        "--first-item", type=int, required=True, help="first item the run never saw"
    )
    parser.add_argument("--items", type=int, default=30000)
    parser.add_argument("--test-data", required=True)
    parser.add_argument("--out", default=None, help="write the R² table as JSON here")
    args = parser.parse_args()
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        raise SystemExit("this script needs scikit-learn: pip install scikit-learn") from None
    from heteroagg.data import SyntheticDataset
    from heteroagg.data.space import ParameterSpace

    t0 = time.time()
    train_set = SyntheticDataset(args.train_data)
    usable = np.flatnonzero(~train_set.failed[args.first_item :]) + args.first_item
    train_items = usable[: args.items]
    test_set = SyntheticDataset(args.test_data)
    test_items = np.flatnonzero(~test_set.failed[:])
    train = network_outputs(args.run, args.train_data, train_items, seed=11)
    test = network_outputs(args.run, args.test_data, test_items, seed=0)
    with Pool() as pool:
        for part in (train, test):
            part["features"] = np.stack(pool.map(features, list(part["crops"]), chunksize=200))
    n_images = len(train_items) + len(test_items)
    print(f"outputs and features of {n_images} images: {time.time() - t0:.0f} s")

    space = ParameterSpace.from_config(train_set.index["config"]["params"])
    order = np.random.default_rng(0).permutation(len(train_items))
    fit, held_out = order[:-5000], order[-5000:]
    table = {}
    n_varied = len(space.varied)
    for name in PARAMETERS:
        if name not in space.varied:
            continue

        def physical(outputs: np.ndarray, name: str = name) -> np.ndarray:
            # clipped to the prior, as heteroagg evaluate scores the network
            return space.denormalize(np.clip(outputs[:, :n_varied], 0.0, 1.0))[name]

        row = {
            "network": (
                r2(train["true"][name][held_out], physical(train["outputs"][held_out])),
                r2(test["true"][name], physical(test["outputs"])),
            )
        }
        for label, with_features in (("stack", False), ("features", True)):

            def inputs(part: dict, with_features: bool = with_features) -> np.ndarray:
                return np.column_stack(
                    [part["outputs"], part["features"]] if with_features else [part["outputs"]]
                )

            model = HistGradientBoostingRegressor(
                max_iter=600, learning_rate=0.05, max_leaf_nodes=63, early_stopping=True,
                validation_fraction=0.1, random_state=0,
            )  # fmt: skip
            x_train = inputs(train)
            model.fit(x_train[fit], train["true"][name][fit])
            row[label] = (
                r2(train["true"][name][held_out], model.predict(x_train[held_out])),
                r2(test["true"][name], model.predict(inputs(test))),
            )
        table[name] = row
        print(name, "  ".join(f"{k}: held out {v[0]:.4f}, test {v[1]:.4f}" for k, v in row.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
