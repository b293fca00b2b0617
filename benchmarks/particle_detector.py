"""Find the particles with a network, refine them against the image, read the materials.

``train`` fits a :class:`~heteroagg.learn.particle_detector.ParticleDetector`
to a generated dataset within a wall-clock budget: each step takes
``--batch`` random training items, turns and mirrors them at random (the
image's exact symmetries), applies shot noise at a dose drawn log-uniform
over 10³-10⁵ e/Å² (the training prior) and regresses the centre maps of the
item's particles (:func:`~heteroagg.stem.pixel_positions`).  The learning
rate warms up over the first 3 % of the budget and then follows a cosine to
zero at its end, so the schedule follows the wall clock.  The weights are
saved every 50 steps (a killed run keeps them) and the losses are logged to
``OUT.csv``.

``evaluate`` runs, on every usable item of a test set and the same noisy
image ``heteroagg evaluate`` uses (noise seed ``--seed``):

1. the detector, keeping peaks above each ``--thresholds`` value;
2. :func:`~heteroagg.learn.particle_fit.refine_particles` on the detected
   centres and radii (unless ``--no-refine``);
3. the image observer (:mod:`heteroagg.learn.image_observer`) with the
   detected particles as the aggregate's particles.

It reports R² of the observer's ``frac_w``, ``radius_ti`` and ``radius_w``,
of ln ``n_particles`` estimated by the count of detections, and how the
detections match the true particles (a detection within ``--match`` nm of a
true centre in projection).

The figures of docs/results.md came from::

    heteroagg generate --n 60000 --seed 1 --out runs/train60k --workers 2
    heteroagg generate --n 2000 --seed 3 --out runs/val2k --workers 2
    heteroagg generate --n 2000 --seed 2 --out runs/test2k --workers 2
    python benchmarks/particle_detector.py train --data runs/train60k \\
        --out runs/detector.pt --minutes 60
    python benchmarks/particle_detector.py evaluate --data runs/val2k --items 200 \\
        --weights runs/detector.pt --thresholds 0.15 0.3 0.5
    python benchmarks/particle_detector.py evaluate --data runs/val2k --items 200 \\
        --weights runs/detector.pt --thresholds 0.15 --no-refine
    python benchmarks/particle_detector.py train --data runs/train60k --init runs/detector.pt \\
        --out runs/detector_more.pt --minutes 25 --lr 1e-3 --seed 1
    python benchmarks/particle_detector.py evaluate --data runs/val2k --items 200 \\
        --weights runs/detector_more.pt --thresholds 0.15
    python benchmarks/particle_detector.py recall --data runs/val2k \\
        --weights runs/detector.pt --items 100 --threshold 0.15
    python benchmarks/particle_detector.py evaluate --data runs/test2k \\
        --weights runs/detector.pt --thresholds 0.15 --out runs/detector_test.json
    python benchmarks/particle_detector.py figure --data runs/test2k \\
        --weights runs/detector.pt --items 0 1 2 --threshold 0.15 \\
        --out docs/images/particle_detector.png
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from itertools import pairwise
from multiprocessing import Pool

import numpy as np
import torch

from heteroagg._progress import progress_bar
from heteroagg.aggregate import Aggregate
from heteroagg.data import DatasetConfig, SyntheticDataset
from heteroagg.learn.brightness_observer import (
    BRIGHTNESS_OBSERVER_PARAMETERS,
    ObserverGrid,
    observe_particles,
)
from heteroagg.learn.ceiling import r2
from heteroagg.learn.evaluation import noisy_test_images
from heteroagg.learn.image_observer import (
    blur_matrix,
    brightness_log_likelihood,
    read_particle_densities,
)
from heteroagg.learn.particle_detector import (
    ParticleDetector,
    decode_detections,
    detect_particles,
    detector_loss,
    detector_targets,
    turn_positions,
)
from heteroagg.learn.particle_fit import refine_particles
from heteroagg.stem import HaadfRenderer, particle_paths, pixel_positions

#: The training prior's dose range, e/Å².
_DOSE = (1e3, 1e5)
#: Detected particles are kept this far apart in depth, nm, so that no two share points.
_DEPTH_STEP = 100.0


def _training_items(
    dataset: SyntheticDataset, items: int
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Stored images (uint16), centres (pixels) and radii (pixels) of the usable items."""
    imaging = dataset.index["config"]["imaging"]
    pixel, shape = imaging["pixel_size"], tuple(imaging["shape"])
    failed = dataset.failed[:]
    usable = np.flatnonzero(~failed[: min(items, len(dataset))])
    images, positions, radii = [], [], []
    with progress_bar(True, usable.size, "loading") as advance:
        for i in usable:
            agg = dataset.aggregate(int(i))
            rotation = dataset.rotations[int(i)]
            images.append(dataset.stored_image(int(i)))
            where = pixel_positions(agg, pixel_size=pixel, shape=shape, rotation=rotation)
            positions.append(where.astype(np.float32))
            radii.append((np.asarray(agg.radii) / pixel).astype(np.float32))
            advance(1)
    return np.stack(images), positions, radii


def train(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    dataset = SyntheticDataset(args.data)
    scale = float(dataset.index["image_scale"])
    pixel = float(dataset.index["config"]["imaging"]["pixel_size"])
    images, positions, radii = _training_items(dataset, args.items)
    shape = images.shape[1:]
    detector = ParticleDetector(seed=args.seed)
    if args.init:
        detector.load_state_dict(torch.load(args.init, weights_only=True))
    detector = detector.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(detector.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = args.minutes * 60.0
    log_path = args.out.removesuffix(".pt") + ".csv"
    step, start = 0, time.perf_counter()
    with (
        open(log_path, "w", newline="") as log_file,
        progress_bar(True, int(budget), "training (s)") as advance,
    ):
        log = csv.writer(log_file)
        log.writerow(["step", "seconds", "learning_rate", "focal", "regression"])
        shown = 0
        while (elapsed := time.perf_counter() - start) < budget:
            done = elapsed / budget
            lr = args.lr * min(1.0, done / 0.03) * 0.5 * (1.0 + math.cos(math.pi * done))
            for group in optimiser.param_groups:
                group["lr"] = lr
            pick = rng.integers(0, len(images), args.batch)
            turns = rng.integers(0, 4, args.batch)
            flips = rng.integers(0, 2, args.batch)
            batch, where = [], []
            for i, k, flip in zip(pick, turns, flips, strict=True):
                image = np.fliplr(images[i]) if flip else images[i]
                batch.append(np.ascontiguousarray(np.rot90(image, k)))
                where.append(turn_positions(positions[i], k, bool(flip), shape))
            x = torch.from_numpy(np.stack(batch).astype(np.float32) / scale)[:, None]
            dose = np.exp(rng.uniform(math.log(_DOSE[0]), math.log(_DOSE[1]), args.batch))
            electrons = torch.from_numpy(dose.astype(np.float32)) * (10.0 * pixel) ** 2
            electrons = electrons[:, None, None, None]
            x = torch.poisson(x * electrons) / electrons
            targets = detector_targets(where, [radii[i] for i in pick], shape)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                maps = detector(x.contiguous(memory_format=torch.channels_last))
            loss, focal, regression = detector_loss(maps, targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step % 50 == 0:
                log.writerow(
                    [step, f"{elapsed:.1f}", f"{lr:.3e}", f"{focal:.5f}", f"{regression:.5f}"]
                )
                log_file.flush()
                torch.save(detector.state_dict(), args.out)
            advance(int(elapsed) - shown)
            shown = int(elapsed)
    torch.save(detector.state_dict(), args.out)
    print(f"{step} steps of {args.batch} images in {time.perf_counter() - start:.0f} s")


_STATE: dict = {}


def _start(
    data: str, weights: str, thresholds: list[float], refine: bool, seed: int, match: float
) -> None:
    torch.set_num_threads(1)
    dataset = SyntheticDataset(data)
    imaging = dataset.index["config"]["imaging"]
    renderer = HaadfRenderer(pixel_size=imaging["pixel_size"], shape=tuple(imaging["shape"]))
    detector = ParticleDetector()
    detector.load_state_dict(torch.load(weights, weights_only=True))
    _STATE.update(
        dataset=dataset,
        detector=detector.eval(),
        imaging=imaging,
        rotations=dataset.rotations[:],
        blur=blur_matrix(renderer.shape, renderer.kernel),
        grid=ObserverGrid.from_space(DatasetConfig.from_dict(dataset.index["config"]).params),
        thresholds=thresholds,
        refine=refine,
        seed=seed,
        match=match,
    )


def _test_image(item: int) -> tuple[np.ndarray, float, float]:
    """The noisy image of ``item`` that ``heteroagg evaluate`` uses: (image, electrons, dose)."""
    s = _STATE
    test = noisy_test_images(s["dataset"], np.array([item]), s["seed"], True)
    dose = float(test.doses[0])
    return (
        np.asarray(test.images[0], dtype=float),
        dose * (10.0 * s["imaging"]["pixel_size"]) ** 2,
        dose,
    )


def _read(image: np.ndarray, electrons: float, found: np.ndarray) -> tuple[list[float], ...]:
    """Refine the detections and read them: (estimates, centres nm, radii nm, said WO3)."""
    s = _STATE
    pixel = s["imaging"]["pixel_size"]
    ny, nx = image.shape
    count = found.shape[0]
    centres = np.zeros((count, 3))
    centres[:, 0] = (found[:, 1] - 0.5 * (nx - 1)) * pixel
    centres[:, 1] = (found[:, 0] - 0.5 * (ny - 1)) * pixel
    centres[:, 2] = _DEPTH_STEP * np.arange(count)
    radii = np.clip(found[:, 2] * pixel, 0.5, 50.0)
    if s["refine"]:
        refined = refine_particles(
            image,
            centres,
            radii,
            pixel_size=pixel,
            center=(0.0, 0.0),
            electrons_per_pixel=electrons,
        )
        centres, radii = refined.centers, refined.radii
    paths = particle_paths(
        Aggregate(centres, radii, np.zeros(count, dtype=int)),
        pixel_size=pixel,
        shape=image.shape,
        center=(0.0, 0.0),
    )
    reading = read_particle_densities(image, paths, electrons_per_pixel=electrons, kernel=s["blur"])
    likelihood = brightness_log_likelihood(reading, radii)
    got = observe_particles(
        s["grid"], np.log(radii), brightness_log_likelihood=likelihood, hidden=~reading.seen
    )
    estimates = [got[name][0] for name in BRIGHTNESS_OBSERVER_PARAMETERS]
    return estimates, centres, radii, likelihood[:, 1] > likelihood[:, 0]


def _evaluate_item(item: int) -> list[list[float]]:
    s = _STATE
    dataset, imaging = s["dataset"], s["imaging"]
    pixel, shape = imaging["pixel_size"], tuple(imaging["shape"])
    image, electrons, _ = _test_image(item)
    with torch.no_grad():  # one pass, decoded at every threshold
        maps = s["detector"](torch.from_numpy(image.astype(np.float32))[None, None])[0]
    agg = dataset.aggregate(item)
    truth = pixel_positions(agg, pixel_size=pixel, shape=shape, rotation=s["rotations"][item])
    rows = []
    for threshold in s["thresholds"]:
        found = decode_detections(maps, threshold=threshold)
        if found.shape[0] == 0:
            rows.append([math.nan] * 3 + [0.0, 0.0, 0.0, math.nan, math.nan])
            continue
        estimates, centres, radii, said_wo3 = _read(image, electrons, found)
        got_rows = centres[:, 1] / pixel + 0.5 * (shape[0] - 1)
        got_cols = centres[:, 0] / pixel + 0.5 * (shape[1] - 1)
        gap = pixel * np.hypot(
            truth[:, 0][:, None] - got_rows[None, :], truth[:, 1][:, None] - got_cols[None, :]
        )
        nearest = gap.argmin(axis=0)
        matched = gap.min(axis=0) < s["match"]
        right = said_wo3[matched] == (agg.materials[nearest[matched]] == 1)
        radius_error = np.log(radii[matched] / agg.radii[nearest[matched]])
        rows.append(
            [
                *estimates,
                float(found.shape[0]),
                float(np.mean(gap.min(axis=1) < s["match"])),
                float(np.mean(matched)),
                float(np.mean(right)) if right.size else math.nan,
                float(np.sqrt(np.mean(radius_error**2))) if right.size else math.nan,
            ]
        )
    return rows


def evaluate(args: argparse.Namespace) -> None:
    dataset = SyntheticDataset(args.data)
    items = np.flatnonzero(~dataset.failed[:])[: args.items]
    start = time.perf_counter()
    init = (args.data, args.weights, args.thresholds, not args.no_refine, args.seed, args.match)
    with (
        Pool(args.processes, initializer=_start, initargs=init) as pool,
        progress_bar(True, items.size, "detect, refine, read") as advance,
    ):
        results = []
        for result in pool.imap(_evaluate_item, items.tolist(), chunksize=4):
            results.append(result)
            advance(1)
    results = np.array(results)  # (items, thresholds, 8)
    truth = {name: np.asarray(dataset.params[name][:][items], float) for name in dataset.params}
    table = {}
    for k, threshold in enumerate(args.thresholds):
        got = results[:, k]
        row = {}
        for j, name in enumerate(BRIGHTNESS_OBSERVER_PARAMETERS):
            column = got[:, j]
            row[name] = r2(truth[name], np.where(np.isfinite(column), column, np.nanmean(column)))
        row["ln_n_particles_by_count"] = r2(
            np.log(truth["n_particles"]), np.log(np.maximum(got[:, 3], 1.0))
        )
        row["true_particles_found"] = float(np.mean(got[:, 4]))
        row["detections_on_a_particle"] = float(np.mean(got[:, 5]))
        row["materials_right"] = float(np.nanmean(got[:, 6]))
        row["rms_ln_radius_error"] = float(np.sqrt(np.nanmean(got[:, 7] ** 2)))
        table[f"{threshold:g}"] = row
        print(f"threshold {threshold:g}: " + "  ".join(f"{n} {v:.3f}" for n, v in row.items()))
    seconds = time.perf_counter() - start
    print(f"{items.size} images in {seconds:.0f} s on {args.processes} processes")
    if args.out:
        report = {
            "data": args.data,
            "weights": args.weights,
            "items": int(items.size),
            "seed": args.seed,
            "refine": not args.no_refine,
            "match_nm": args.match,
            "seconds": seconds,
            "table": table,
        }
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        np.savez(
            args.out.removesuffix(".json") + ".npz",
            item=items,
            thresholds=np.array(args.thresholds),
            parameters=np.array(BRIGHTNESS_OBSERVER_PARAMETERS),
            results=results,
        )


#: Radius bands (nm) of the recall table.
_BANDS = (0.0, 2.0, 3.0, 5.0, 8.0, math.inf)


def recall(args: argparse.Namespace) -> None:
    """Share of true particles with a peak nearby, before refinement, by material and radius."""
    _start(args.data, args.weights, [args.threshold], False, args.seed, 1.0)
    s = _STATE
    dataset, imaging = s["dataset"], s["imaging"]
    pixel, shape = imaging["pixel_size"], tuple(imaging["shape"])
    items = np.flatnonzero(~dataset.failed[:])[: args.items]
    materials, radii, gaps = [], [], []
    with progress_bar(True, items.size, "detect") as advance:
        for item in items.tolist():
            image, _, _ = _test_image(item)
            found = detect_particles(s["detector"], image, threshold=args.threshold, device="cpu")
            agg = dataset.aggregate(item)
            truth = pixel_positions(
                agg, pixel_size=pixel, shape=shape, rotation=s["rotations"][item]
            )
            gap = np.full(truth.shape[0], math.inf)
            if found.shape[0]:
                offset = truth[:, None, :] - found[None, :, :2]
                gap = pixel * np.hypot(offset[..., 0], offset[..., 1]).min(axis=1)
            materials.append(agg.materials)
            radii.append(agg.radii)
            gaps.append(gap)
            advance(1)
    material, radius, gap = (np.concatenate(v) for v in (materials, radii, gaps))
    print(f"true particles with a peak within 1 nm (2 nm), threshold {args.threshold:g}:")
    for lo, hi in [*pairwise(_BANDS), (0.0, math.inf)]:
        cells = []
        for m in (0, 1):
            band = (material == m) & (radius >= lo) & (radius < hi)
            cells.append(
                f"{np.mean(gap[band] < 1.0):.0%} ({np.mean(gap[band] < 2.0):.0%}) of {band.sum()}"
            )
        print(f"radius {lo:g}-{hi:g} nm: TiO2 {cells[0]}, WO3 {cells[1]}")


def figure(args: argparse.Namespace) -> None:
    """Noisy test images with the true particles and the refined detections drawn over them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _start(args.data, args.weights, [args.threshold], True, args.seed, 1.0)
    s = _STATE
    dataset, imaging = s["dataset"], s["imaging"]
    pixel, shape = imaging["pixel_size"], tuple(imaging["shape"])
    fig, axes = plt.subplots(1, len(args.items), figsize=(4.2 * len(args.items), 4.6))
    for ax, item in zip(np.atleast_1d(axes), args.items, strict=True):
        image, electrons, dose = _test_image(item)
        found = detect_particles(s["detector"], image, threshold=args.threshold, device="cpu")
        if found.shape[0]:
            _, centres, _, said_wo3 = _read(image, electrons, found)
        else:  # nothing found: the true particles alone are drawn
            centres, said_wo3 = np.empty((0, 2)), np.empty(0, dtype=bool)
        agg = dataset.aggregate(item)
        truth = pixel_positions(agg, pixel_size=pixel, shape=shape, rotation=s["rotations"][item])
        rows = centres[:, 1] / pixel + 0.5 * (shape[0] - 1)
        cols = centres[:, 0] / pixel + 0.5 * (shape[1] - 1)
        ax.imshow(np.sqrt(image), cmap="gray")
        for (row, col), r, wo3 in zip(truth, agg.radii / pixel, agg.materials == 1, strict=True):
            colour = "tab:orange" if wo3 else "tab:cyan"
            ax.add_patch(plt.Circle((col, row), r, fill=False, lw=0.6, color=colour))
        ax.scatter(cols, rows, s=9, marker="x", lw=0.8, c=np.where(said_wo3, "red", "blue"))
        span = np.concatenate([truth, np.stack([rows, cols], 1)])
        lo, hi = span.min(axis=0) - 12, span.max(axis=0) + 12
        ax.set_xlim(lo[1], hi[1])
        ax.set_ylim(hi[0], lo[0])
        ax.set_title(
            f"item {item}: N = {agg.radii.size}, {found.shape[0]} found\ndose {dose:.0f} e/Å²",
            fontsize=9,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "circles: true particles (orange WO3, cyan TiO2); "
        "crosses: refined detections (red read as WO3, blue as TiO2)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train", help="train a detector within a time budget")
    fit.add_argument("--data", required=True, help="a generated training set")
    fit.add_argument("--out", required=True, help="weights file (.pt); losses go to .csv")
    fit.add_argument("--minutes", type=float, required=True, help="wall-clock budget")
    fit.add_argument("--items", type=int, default=60_000, help="first items of the set")
    fit.add_argument("--batch", type=int, default=32)
    fit.add_argument("--lr", type=float, default=2e-3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--init", default=None, help="start from these weights (a second round)")
    score = commands.add_parser("evaluate", help="detect, refine and read a test set")
    score.add_argument("--data", required=True, help="a generated test set")
    score.add_argument("--weights", required=True)
    score.add_argument("--thresholds", type=float, nargs="+", default=[0.15])
    score.add_argument("--items", type=int, default=None, help="only the first usable items")
    score.add_argument("--no-refine", action="store_true")
    score.add_argument("--match", type=float, default=1.0, help="nm, to count a detection")
    score.add_argument("--seed", type=int, default=0, help="heteroagg evaluate's noise seed")
    score.add_argument("--processes", type=int, default=2)
    score.add_argument("--out", default=None, help="JSON report; per-image results in .npz")
    draw = commands.add_parser("figure", help="draw detections over a few test images")
    draw.add_argument("--data", required=True)
    draw.add_argument("--weights", required=True)
    draw.add_argument("--items", type=int, nargs="+", required=True)
    draw.add_argument("--threshold", type=float, default=0.15)
    draw.add_argument("--seed", type=int, default=0, help="heteroagg evaluate's noise seed")
    draw.add_argument("--out", required=True, help="PNG file")
    found = commands.add_parser("recall", help="share of true particles found, before refinement")
    found.add_argument("--data", required=True)
    found.add_argument("--weights", required=True)
    found.add_argument("--items", type=int, default=100, help="the first usable items")
    found.add_argument("--threshold", type=float, default=0.15)
    found.add_argument("--seed", type=int, default=0, help="heteroagg evaluate's noise seed")
    args = parser.parse_args()
    if args.command == "figure":
        figure(args)
    elif args.command == "recall":
        recall(args)
    elif args.command == "train":
        if not (args.minutes > 0 and args.batch > 0 and args.lr > 0):
            parser.error("--minutes, --batch and --lr must be positive")
        train(args)
    else:
        if not all(0 < t < 1 for t in args.thresholds):
            parser.error("--thresholds must lie in (0, 1)")
        evaluate(args)


if __name__ == "__main__":
    main()
