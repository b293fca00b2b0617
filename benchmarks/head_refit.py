"""Does a trained network's head, refitted by squared error, estimate θ better?

A run trains its means and log-variances on the Gaussian negative
log-likelihood, which weighs each item's error by its predicted precision.
R² weighs every item alike.  If the head's weighting, or the head itself,
held back ``frac_w`` and ``radius_w``, a head fitted by squared error to the
same features would score better.  The script measures that:

1. It draws ``--items`` items of a training set (a fixed random choice),
   with noise drawn as ``heteroagg evaluate`` draws it (``--noise-seed``),
   and computes the pooled features the first member's head reads
   (:meth:`~heteroagg.learn.networks.ParameterRegressor.pooled`); on the
   test set, for the image and its seven other quarter turns and mirrors.
2. It fits two replacements of the head on all but ``--held-out`` of the
   items, by the squared error of the normalised parameters:

   - a ridge regression on the standardised features (linear);
   - the trained head itself, fine-tuned with AdamW for up to ``--epochs``
     epochs, keeping the epoch with the lowest held-out error.
3. It scores the trained head and both replacements on the test set, plain
   and averaged over the symmetries, by R² in physical units.

The figures of docs/results.md came from::

    python benchmarks/head_refit.py --run runs/main18 --train-data runs/train300k \\
        --test-data runs/test2k --out head_refit_main18.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from heteroagg.data import SyntheticDataset
from heteroagg.learn.evaluation import noisy_test_images
from heteroagg.learn.inference import TrainedRun
from heteroagg.learn.symmetry import apply_symmetry

REPORTED = ("n_particles", "frac_w", "radius_ti", "radius_w", "segregation")


def pooled_features(
    model: torch.nn.Module, images: np.ndarray, elements: tuple[int, ...], batch: int = 128
) -> np.ndarray:
    """(len(elements), B, F) pooled features of each symmetry element of the images."""
    out = []
    with torch.no_grad():
        for k in elements:
            parts = []
            for i in range(0, len(images), batch):
                x = apply_symmetry(torch.from_numpy(images[i : i + batch, None]), k)
                parts.append(model.pooled(x).float().numpy())
            out.append(np.concatenate(parts))
    return np.stack(out)


def noisy_features(
    model: torch.nn.Module,
    dataset: SyntheticDataset,
    items: np.ndarray,
    seed: int,
    elements: tuple[int, ...],
) -> np.ndarray:
    """Pooled features of noisy images of ``items``, in blocks of 2 048 items."""
    blocks = []
    for start in range(0, len(items), 2048):
        test = noisy_test_images(dataset, items[start : start + 2048], seed, True)
        blocks.append(pooled_features(model, test.images, elements))
    return np.concatenate(blocks, axis=1)


def physical_r2(run: TrainedRun, normalised: np.ndarray, truth: dict) -> dict[str, float]:
    """R² in physical units of clipped normalised estimates, per reported parameter."""
    estimate = run.space.denormalize(np.clip(normalised, 0.0, 1.0))
    return {
        name: float(1.0 - np.mean((estimate[name] - truth[name]) ** 2) / np.var(truth[name]))
        for name in REPORTED
    }


def ridge(features: np.ndarray, targets: np.ndarray, penalty: float):
    """A ridge regression on standardised features; returns its prediction function."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6

    def design(x: np.ndarray) -> np.ndarray:
        return np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)

    a = design(features.astype(np.float64))
    weights = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ targets)
    return lambda x: design(x.astype(np.float64)) @ weights


def refit_head(
    head: torch.nn.Module,
    features: np.ndarray,
    targets: np.ndarray,
    held_out: int,
    epochs: int,
    seed: int,
) -> tuple[torch.nn.Module, list[float]]:
    """The head fine-tuned by squared error of its means; the held-out error per epoch."""
    torch.manual_seed(seed)
    n_params = targets.shape[1]
    x, y = torch.from_numpy(features).float(), torch.from_numpy(targets).float()
    hold = slice(len(x) - held_out, len(x))
    model = copy.deepcopy(head).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)

    def held_out_error(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return float((m(x[hold])[:, :n_params] - y[hold]).square().mean())

    errors = [held_out_error(model)]
    best, best_error = copy.deepcopy(model), errors[0]
    for _ in range(epochs):
        order = torch.randperm(len(x) - held_out)
        for start in range(0, len(order), 256):
            idx = order[start : start + 256]
            loss = (model(x[idx])[:, :n_params] - y[idx]).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        errors.append(held_out_error(model))
        if errors[-1] < best_error:
            best, best_error = copy.deepcopy(model), errors[-1]
    return best, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--test-data", required=True)
    parser.add_argument("--items", type=int, default=40000)
    parser.add_argument("--held-out", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--noise-seed", type=int, default=12345)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="head_refit.json")
    args = parser.parse_args()

    run = TrainedRun(args.run, "cpu")
    model = run.models[0]
    names, n_params = run.parameters, len(run.parameters)
    train, test = SyntheticDataset(args.train_data), SyntheticDataset(args.test_data)
    usable = np.flatnonzero(~train.failed[:])
    items = np.sort(np.random.default_rng(7).choice(usable, args.items, replace=False))
    test_items = np.flatnonzero(~test.failed[:])

    start = time.perf_counter()
    fit_features = noisy_features(model, train, items, args.noise_seed, (0,))[0]
    test_features = noisy_features(model, test, test_items, 0, tuple(range(8)))
    extract_s = time.perf_counter() - start
    targets = run.space.normalize({n: train.params[n][:][items] for n in names})
    truth = {n: test.params[n][:][test_items] for n in REPORTED}

    def scores(estimator) -> dict:
        views = [estimator(test_features[k]) for k in range(len(test_features))]
        return {
            "plain": physical_r2(run, views[0], truth),
            "symmetrized": physical_r2(run, np.mean(views, axis=0), truth),
        }

    head = model.net.head.float()
    start = time.perf_counter()
    linear = ridge(fit_features[: -args.held_out], targets[: -args.held_out], 1.0)
    refitted, errors = refit_head(
        head, fit_features, targets, args.held_out, args.epochs, args.seed
    )
    fit_s = time.perf_counter() - start

    def with_head(m: torch.nn.Module):
        def estimate(f: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return m(torch.from_numpy(f))[:, :n_params].numpy()

        return estimate

    report = {
        "run": args.run,
        "items": args.items,
        "held_out": args.held_out,
        "extract_s": extract_s,
        "fit_s": fit_s,
        "held_out_mse_by_epoch": errors,
        "best_epoch": int(np.argmin(errors)),
        "trained_head": scores(with_head(head)),
        "ridge": scores(linear),
        "refitted_head": scores(with_head(refitted)),
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    for key in ("trained_head", "ridge", "refitted_head"):
        row = report[key]
        print(
            f"{key:14s}",
            " ".join(f"{n}={row['plain'][n]:.4f} ({row['symmetrized'][n]:.4f})" for n in REPORTED),
        )
    print(f"best epoch {report['best_epoch']}, features {extract_s:.0f} s, fits {fit_s:.0f} s")


if __name__ == "__main__":
    main()
