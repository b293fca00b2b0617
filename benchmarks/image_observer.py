"""What does an observer told the geometry read off the noisy test images?

The image observer (:mod:`heteroagg.learn.image_observer`) knows each test
aggregate's particles (positions and radii, in the projection the image was
taken in) but not their materials.  It fits every particle's brightness to
the same noisy image the network sees (``heteroagg evaluate``'s noise draw,
root seed ``--seed``), tells the materials apart from it, and estimates
``frac_w`` and the median radii.  Its R² says how much of the gap between
the networks and the observers that are handed the brightness outright
(``benchmarks/projection_observer.py``) comes from overlap in projection
and shot noise, and how much from finding the particles.

Each ``--settings POSITION:RADIUS`` pair is one reading: the position error
(nm) shifts every particle's projected centre by a normal error in x and y
before the fit, as a detector that localises the particles only that well
would; the radius error scales each radius by ``exp(error · z)``.  The fit
and the brightness law then work with that geometry, while the radius
statistics still come from the exact radii, so that the errors act only
through the materials the observer reads.

With ``--refine`` each rough geometry is also refined against the image
first (:func:`heteroagg.learn.particle_fit.refine_particles`), and both are
scored.

The figures of docs/results.md came from::

    python benchmarks/image_observer.py --data runs/test2k \\
        --settings 0:0 0.25:0 0.5:0 1:0 0:0.05 0:0.1 --out runs/image_observer.json
    python benchmarks/image_observer.py --data runs/test2k --refine --items 600 \\
        --settings 0.5:0 0:0.05 0.5:0.05 --out runs/refined600.json
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool

import numpy as np

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
from heteroagg.learn.particle_fit import refine_particles
from heteroagg.stem import HaadfRenderer, particle_paths

_STATE: dict = {}


def _start(data: str, seed: int, settings: list[tuple[float, float]], refine: bool) -> None:
    dataset = SyntheticDataset(data)
    imaging = dataset.index["config"]["imaging"]
    renderer = HaadfRenderer(pixel_size=imaging["pixel_size"], shape=tuple(imaging["shape"]))
    _STATE.update(
        dataset=dataset,
        rotations=dataset.rotations[:],
        grid=ObserverGrid.from_space(DatasetConfig.from_dict(dataset.index["config"]).params),
        imaging=imaging,
        blur=blur_matrix(renderer.shape, renderer.kernel),
        seed=seed,
        settings=settings,
        refine=refine,
    )


def _read(image, geometry, agg, electrons, center) -> tuple[list[float], float]:
    """The observer's estimates and share of materials right with ``geometry`` (image frame)."""
    s = _STATE
    centers, radii = geometry
    paths = particle_paths(
        Aggregate(centers, radii, agg.materials),
        pixel_size=s["imaging"]["pixel_size"],
        shape=tuple(s["imaging"]["shape"]),
        center=center,
    )
    reading = read_particle_densities(image, paths, electrons_per_pixel=electrons, kernel=s["blur"])
    likelihood = brightness_log_likelihood(reading, radii)
    got = observe_particles(
        s["grid"], np.log(agg.radii), brightness_log_likelihood=likelihood, hidden=~reading.seen
    )
    said_wo3 = likelihood[:, 1] > likelihood[:, 0]
    right = float(np.mean(said_wo3[reading.seen] == (agg.materials == 1)[reading.seen]))
    return [got[name][0] for name in BRIGHTNESS_OBSERVER_PARAMETERS], right


def _observe(item: int) -> tuple[list[list[float]], list[float], list[list[float]]]:
    s = _STATE
    dataset, imaging = s["dataset"], s["imaging"]
    test = noisy_test_images(dataset, np.array([item]), s["seed"], True)
    image = test.images[0]
    electrons = float(test.doses[0]) * (imaging["pixel_size"] * 10.0) ** 2
    agg = dataset.aggregate(item)
    rotation = s["rotations"][item]
    turned = agg.centers @ rotation.T
    # the true frame: shifted particles keep the image's centre
    center = particle_paths(
        agg, pixel_size=imaging["pixel_size"], shape=tuple(imaging["shape"]), rotation=rotation
    ).center
    rng = np.random.default_rng((s["seed"], item))
    z_pos, z_rad = rng.standard_normal((agg.radii.size, 2)), rng.standard_normal(agg.radii.size)
    estimates, accuracy, errors = [], [], []
    for position_error, radius_error in s["settings"]:
        centers = turned.copy()
        centers[:, :2] += position_error * z_pos
        radii = agg.radii * np.exp(radius_error * z_rad)
        geometries = [(centers, radii)]
        if s["refine"]:
            refined = refine_particles(
                image,
                centers,
                radii,
                pixel_size=imaging["pixel_size"],
                center=center,
                electrons_per_pixel=electrons,
            )
            geometries.append((refined.centers, refined.radii))
        for geometry in geometries:
            got, right = _read(image, geometry, agg, electrons, center)
            estimates.append(got)
            accuracy.append(right)
            errors.append(
                [
                    float(np.sqrt(np.mean((geometry[0][:, :2] - turned[:, :2]) ** 2))),
                    float(np.sqrt(np.mean(np.log(geometry[1] / agg.radii) ** 2))),
                ]
            )
    return estimates, accuracy, errors


def _setting(text: str) -> tuple[float, float]:
    position, radius = (float(v) for v in text.split(":"))
    if not (position >= 0 and radius >= 0):
        raise argparse.ArgumentTypeError(f"a setting is POSITION_NM:RADIUS_ERROR >= 0, got {text}")
    return position, radius


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a dataset directory (the test set)")
    parser.add_argument(
        "--settings",
        nargs="+",
        type=_setting,
        default=[(0.0, 0.0)],
        help="POSITION_ERROR_NM:RADIUS_ERROR pairs",
    )
    parser.add_argument("--seed", type=int, default=0, help="heteroagg evaluate's noise seed")
    parser.add_argument(
        "--refine",
        action="store_true",
        help="also refine each geometry against the image first (refine_particles)",
    )
    parser.add_argument("--items", type=int, default=None, help="only the first usable items")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--out",
        default=None,
        help="write the table as JSON here, and each image's estimates next to it (.npz)",
    )
    args = parser.parse_args()

    dataset = SyntheticDataset(args.data)
    items = np.flatnonzero(~dataset.failed[:])[: args.items]
    start = time.perf_counter()
    init = (args.data, args.seed, args.settings, args.refine)
    with (
        Pool(args.processes, initializer=_start, initargs=init) as pool,
        progress_bar(True, items.size, "image observer") as advance,
    ):
        results = []
        for result in pool.imap(_observe, items.tolist(), chunksize=8):
            results.append(result)
            advance(1)
    estimates = np.array([r[0] for r in results])  # (items, rows, parameters)
    accuracy = np.array([r[1] for r in results])
    errors = np.array([r[2] for r in results])  # (items, rows, [position, ln radius])
    truth = {name: np.asarray(dataset.params[name][:][items], float) for name in dataset.params}
    labels = [
        f"{p:g}:{q:g}" + suffix
        for p, q in args.settings
        for suffix in (["", " refined"] if args.refine else [""])
    ]
    table = {}
    for k, label in enumerate(labels):
        row = {
            name: r2(truth[name], estimates[:, k, j])
            for j, name in enumerate(BRIGHTNESS_OBSERVER_PARAMETERS)
        }
        row["materials_right"] = float(accuracy[:, k].mean())
        row["rms_position_error_nm"] = float(np.sqrt(np.mean(errors[:, k, 0] ** 2)))
        row["rms_ln_radius_error"] = float(np.sqrt(np.mean(errors[:, k, 1] ** 2)))
        table[label] = row
        print(
            f"{label:>14}: "
            + "  ".join(f"{name} {row[name]:.3f}" for name in BRIGHTNESS_OBSERVER_PARAMETERS)
            + f"  materials right {row['materials_right']:.1%}"
            + f"  geometry off by {row['rms_position_error_nm']:.3f} nm,"
            + f" {row['rms_ln_radius_error']:.1%} in radius"
        )
    seconds = time.perf_counter() - start
    print(f"{items.size} images in {seconds:.0f} s on {args.processes} processes")
    if args.out:
        report = {
            "data": args.data,
            "items": int(items.size),
            "seed": args.seed,
            "seconds": seconds,
            "r2": table,
        }
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        np.savez(
            args.out.removesuffix(".json") + ".npz",
            item=items,
            rows=np.array(labels),
            parameters=np.array(BRIGHTNESS_OBSERVER_PARAMETERS),
            estimate=estimates,
            materials_right=accuracy,
        )


if __name__ == "__main__":
    main()
