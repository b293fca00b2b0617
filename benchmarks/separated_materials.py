"""Does telling the materials apart limit the recovery of ``frac_w``?

The script trains one network of the ablation's recipe (network A: a
space-to-depth-4 ResNet with stages 16-32-64-128, AdamW at 2e-3 over a
one-cycle schedule, batch 64, quarter turns and mirrors, mean squared error
on the normalised θ) on one of two inputs of the same items, both without
noise:

``image``
    the stored HAADF image, 256² at 1 nm;
``materials``
    the exact beam paths through TiO2 and through WO3 (the label maps of
    :mod:`heteroagg.learn.label_maps`), two channels at 2 nm, folded by
    space-to-depth 2 onto the same 64² grid as the image.

The ``materials`` network is handed a perfect segmentation of the image by
material.  If it recovers ``frac_w`` no better than the ``image`` network,
the missing accuracy is not in telling WO3 from TiO2 but in counting
particles that overlap in projection.

Two variants change how the image network counts:

``--count-head``
    ``n_particles`` and ``frac_w`` are computed from two non-negative
    per-material densities summed over the last stage (N = n_Ti + n_W,
    frac_w = n_W / N) instead of the pooled head;
``--centre-density WEIGHT``
    the densities sit at stride 4 on the first two stages and also learn
    the particle centres of each material (Gaussian-blurred count maps),
    with that weight on their squared error.

``--peaks`` prints a reference that learns nothing: it counts the local
maxima of the exact 1 nm path maps of each material on the test set.  The
figures of docs/results.md came from::

    python benchmarks/separated_materials.py --input materials
    python benchmarks/separated_materials.py --input image
    python benchmarks/separated_materials.py --input image --count-head
    python benchmarks/separated_materials.py --input image --centre-density 100
    python benchmarks/separated_materials.py --peaks
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from heteroagg.data import SyntheticDataset
from heteroagg.data.config import DatasetConfig
from heteroagg.data.space import ParameterSpace
from heteroagg.learn.label_maps import stored_label_maps
from heteroagg.learn.networks import ResNetRegressor

#: Pixels per side of one cell of the ``materials`` input.
MATERIALS_BLOCK = 2
#: Pixels per side of one cell of the centre densities.
CENTRE_BLOCK = 4


def usable_items(dataset: SyntheticDataset) -> np.ndarray:
    """Indices of the items whose aggregate was sampled."""
    return np.flatnonzero(~np.asarray(dataset.failed[:], dtype=bool))


def item_maps(
    dataset: SyntheticDataset, items: np.ndarray, names: tuple[str, ...], block: int
) -> np.ndarray:
    """(len(items), len(names), H / block, W / block) float32 label maps of stored items."""
    return np.asarray(stored_label_maps(dataset, items, names, block).maps, dtype=np.float32)


def network_inputs(dataset: SyntheticDataset, items: np.ndarray, kind: str) -> np.ndarray:
    """(B, C, h, w) float16 inputs: the stored images or the two path maps."""
    if kind == "materials":
        names = ("path_tio2", "path_wo3")
        return item_maps(dataset, items, names, MATERIALS_BLOCK).astype(np.float16)
    out = np.zeros((len(items), 1, *dataset.index["config"]["imaging"]["shape"]), np.float16)
    for start in range(0, len(items), 1024):
        chunk = items[start : start + 1024]
        images = np.asarray(dataset.images[int(chunk[0]) : int(chunk[-1]) + 1])
        out[start : start + len(chunk), 0] = images[chunk - chunk[0]]
    return out


def centre_densities(dataset: SyntheticDataset, items: np.ndarray) -> np.ndarray:
    """Per-material particle centres per 4-pixel cell, blurred by one cell (counts kept)."""
    from scipy import ndimage

    counts = item_maps(dataset, items, ("centres_tio2", "centres_wo3"), CENTRE_BLOCK)
    return ndimage.gaussian_filter(counts, (0, 0, 1.0, 1.0), mode="constant").astype(np.float16)


class CountingRegressor(nn.Module):
    """A :class:`ResNetRegressor` whose N and ``frac_w`` come from per-material counts.

    Parameters
    ----------
    net
        The regressor; its head still predicts the other parameters.
    space
        The parameter space (``n_particles`` log-uniform, ``frac_w`` uniform).
    at_stride_4
        Put the densities on the first two stages at stride 4 (so that they
        can learn centre maps) instead of the last stage.
    """

    def __init__(self, net: ResNetRegressor, space: ParameterSpace, at_stride_4: bool) -> None:
        super().__init__()
        self.net, self.at_stride_4 = net, at_stride_4
        self.n_index = space.varied.index("n_particles")
        self.f_index = space.varied.index("frac_w")
        self.n_prior, self.f_prior = space.priors["n_particles"], space.priors["frac_w"]
        if at_stride_4:
            self.density = nn.Sequential(
                nn.Conv2d(16 + 32, 32, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 2, 1)
            )
        else:
            self.density = nn.Conv2d(128, 2, 1)

    def forward(
        self, x: torch.Tensor, maps: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y = self.net.stem(x)
        first = self.net.body[0](y)
        second = self.net.body[1](first)
        last = self.net.body[2:](second)
        if self.at_stride_4:
            up = nn.functional.interpolate(second, scale_factor=2, mode="nearest")
            density = nn.functional.softplus(self.density(torch.cat([first, up], 1)))
        else:
            density = nn.functional.softplus(self.density(last))
        pooled = torch.cat([last.mean(dim=(2, 3)), last.amax(dim=(2, 3))], dim=1)
        out = self.net.head(pooled).clone()
        counts = density.sum(dim=(2, 3)) + 1e-3
        n = counts.sum(dim=1)
        p, f = self.n_prior, self.f_prior
        out[:, self.n_index] = torch.log(n / p.low) / math.log(p.high / p.low)
        out[:, self.f_index] = (counts[:, 1] / n - f.low) / (f.high - f.low)
        return (out, density) if maps else out


def r2_scores(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R² of each column."""
    residual = ((truth - predicted) ** 2).sum(axis=0)
    return 1.0 - residual / ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)


def peak_counts(dataset: SyntheticDataset, items: np.ndarray) -> dict[str, float]:
    """R² of N, N_W and ``frac_w`` from local maxima of the exact 1 nm path maps."""
    from scipy import ndimage

    maps = item_maps(dataset, items, ("path_tio2", "path_wo3"), 1)
    peaks = maps == ndimage.maximum_filter(maps, size=(1, 1, 3, 3))
    peaks &= maps > 0
    counts = np.array([[ndimage.label(m)[1] for m in item] for item in peaks], dtype=float)
    materials = [np.asarray(dataset.aggregate(int(i)).materials) for i in items]
    n_w = np.array([(m == 1).sum() for m in materials], dtype=float)
    n = np.array([len(m) for m in materials], dtype=float)
    frac_w = np.asarray(dataset.params["frac_w"][:])[items]
    found = counts.sum(axis=1)
    columns = np.stack([n, n_w, frac_w], axis=1)
    guesses = np.stack([found, counts[:, 1], counts[:, 1] / np.maximum(found, 1)], axis=1)
    scores = dict(
        zip(("n_particles", "n_wo3", "frac_w"), r2_scores(columns, guesses).tolist(), strict=True)
    )
    # how far the count of maxima is from N, by N
    for lo, hi in itertools.pairwise((10, 20, 40, 80, 151)):
        chosen = (n >= lo) & (n < hi)
        error = found[chosen] - n[chosen]
        scores[f"N {lo}-{hi - 1}: mean count error"] = float(np.mean(error))
        scores[f"N {lo}-{hi - 1}: mean absolute count error"] = float(np.mean(np.abs(error)))
        scores[f"N {lo}-{hi - 1}: share counted exactly"] = float(np.mean(error == 0))
    return scores


def frac_w_error_by_n(n: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE of ``frac_w`` over the items of each range of N."""
    edges = (10, 20, 40, 80, 151)
    return {
        f"frac_w RMSE, N {lo}-{hi - 1}": float(
            np.sqrt(np.mean((predicted - truth)[(n >= lo) & (n < hi)] ** 2))
        )
        for lo, hi in itertools.pairwise(edges)
    }


def train_and_score(args: argparse.Namespace) -> dict[str, float]:
    """Train on ``args.train``; the test R² of each normalised parameter and the
    ``frac_w`` error by N."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_set, test_set = SyntheticDataset(args.train), SyntheticDataset(args.test)
    space = DatasetConfig.from_dict(train_set.index["config"]).params
    items, test_items = usable_items(train_set), usable_items(test_set)
    x, x_test = (
        network_inputs(d, i, args.input) for d, i in ((train_set, items), (test_set, test_items))
    )
    y = space.normalize({n: np.asarray(train_set.params[n][:])[items] for n in space.varied})
    y_test = space.normalize(
        {n: np.asarray(test_set.params[n][:])[test_items] for n in space.varied}
    )
    y = y.astype(np.float32)
    sample = x[:2000].astype(np.float32)
    mean = torch.from_numpy(sample.mean(axis=(0, 2, 3))).view(1, -1, 1, 1)
    std = torch.from_numpy(sample.std(axis=(0, 2, 3))).view(1, -1, 1, 1)
    s2d = 4 if args.input == "image" else 4 // MATERIALS_BLOCK
    net: nn.Module = ResNetRegressor(len(space.varied), space_to_depth=s2d)
    if x.shape[1] > 1:
        net.stem[1] = nn.Conv2d(x.shape[1] * s2d * s2d, 16, 3, 1, 1, bias=False)
    centres = None
    if args.count_head or args.centre_density:
        net = CountingRegressor(net, space, at_stride_4=bool(args.centre_density))
    if args.centre_density:
        centres = centre_densities(train_set, items)

    def standardised(batch: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(batch.astype(np.float32)) - mean) / std

    validation = rng.random(len(items)) < 0.05
    train_rows = np.flatnonzero(~validation)
    batch, steps_per_epoch = 64, len(train_rows) // 64
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=2e-3, total_steps=args.epochs * steps_per_epoch,
        pct_start=0.25 / args.epochs,
    )  # fmt: skip
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = rng.permutation(train_rows)
        for b in range(steps_per_epoch):
            rows = np.sort(order[b * batch : (b + 1) * batch])
            turns, mirror = int(rng.integers(4)), bool(rng.random() < 0.5)

            def augmented(
                t: torch.Tensor, turns: int = turns, mirror: bool = mirror
            ) -> torch.Tensor:
                t = torch.rot90(t, turns, (2, 3))
                return torch.flip(t, (3,)) if mirror else t

            xb, yb = augmented(standardised(x[rows])), torch.from_numpy(y[rows])
            if centres is None:
                loss = (net(xb) - yb).square().mean()
            else:
                out, density = net(xb, maps=True)
                target = augmented(torch.from_numpy(centres[rows].astype(np.float32)))
                loss = (out - yb).square().mean()
                loss = loss + args.centre_density * (density - target).square().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        print(
            f"epoch {epoch + 1}/{args.epochs} after {time.perf_counter() - start:.0f} s", flush=True
        )
    net.eval()
    with torch.no_grad():
        predicted = np.concatenate(
            [net(standardised(x_test[i : i + 256])).numpy() for i in range(0, len(x_test), 256)]
        )
    predicted = np.clip(predicted, 0.0, 1.0)
    scores = dict(zip(space.varied, r2_scores(y_test, predicted).tolist(), strict=True))
    truth = np.asarray(test_set.params["frac_w"][:])[test_items]
    n = np.asarray(test_set.params["n_particles"][:])[test_items]
    return scores | frac_w_error_by_n(n, truth, space.denormalize(predicted)["frac_w"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", choices=("image", "materials"), default="image")
    parser.add_argument("--count-head", action="store_true")
    parser.add_argument("--centre-density", type=float, default=0.0, metavar="WEIGHT")
    parser.add_argument("--peaks", action="store_true", help="only the peak-counting reference")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=Path, default=Path("runs/abl20k"))
    parser.add_argument("--test", type=Path, default=Path("runs/test2k"))
    parser.add_argument("--out", type=Path, help="also write the R² to this JSON file")
    args = parser.parse_args()
    if args.peaks:
        test_set = SyntheticDataset(args.test)
        scores = peak_counts(test_set, usable_items(test_set))
    else:
        scores = train_and_score(args)
    for name, value in scores.items():
        print(f"{name:12s} {'' if 'RMSE' in name or ':' in name else 'R² '}{value:.3f}")
    if args.out is not None:
        arguments = {k: v if isinstance(v, int | float) else str(v) for k, v in vars(args).items()}
        args.out.write_text(json.dumps({"arguments": arguments, "r2": scores}, indent=1))


if __name__ == "__main__":
    main()
