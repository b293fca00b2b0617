"""How the LUT renderer agrees with multislice as particles grow.

For each particle diameter, a single sphere and a three-particle aggregate
(both materials) are filled with atoms, simulated by multislice and rendered
from LUTs calibrated with the same optics, for several seeds (each seed draws
new crystal orientations and phonons).  Both images are low-pass filtered
by the same Gaussian (2 Å) so that atomic columns, which the LUT model does
not resolve, do not enter the comparison.  The optics are those of the
shipped LUTs except the detector, 50-100 mrad, which allows a coarse
sampling.  Prints a markdown table; ``--plot`` saves one comparison figure.

Run with ``python benchmarks/compare_render_multislice.py [--diameters 2 3 5]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from heteroagg import Aggregate
from heteroagg.stem import calibrate
from heteroagg.validate.render_vs_multislice import (
    compare_render_with_multislice,
    plot_render_comparison,
)

DETECTOR = (50.0, 100.0)
SCAN = 1.0  # Å
BLUR = 2.0  # Å


def aggregate(kind: str, d: float) -> Aggregate:
    r = d / 2
    if kind == "sphere":
        return Aggregate([[0, 0, 0]], [r], [1])
    return Aggregate(
        [[0, 0, 0], [2 * r, 0.25 * r, 0.15 * r], [3.9 * r, -0.3 * r, -0.2 * r]],
        [r, 1.05 * r, 0.85 * r],
        [0, 1, 0],
    )


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diameters", type=float, nargs="+", default=[2.0, 3.0, 5.0, 8.0])
    parser.add_argument("--kinds", nargs="+", default=["sphere", "aggregate"])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--orientations", type=int, default=32)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()

    thickness = 1.25 * max(args.diameters) + 0.4
    start = time.perf_counter()
    settings = dict(detector=DETECTOR, thickness_max=thickness, orientations=args.orientations)
    luts = {m: calibrate(m, positions=2, **settings) for m in ("TiO2", "WO3")}
    print(f"calibration ({args.orientations} orientations, 0-{thickness:g} nm): "
          f"{time.perf_counter() - start:.0f} s\n")  # fmt: skip
    print("| object | d (nm) | seed | NCC | NCC (2 Å low-pass) | intensity ratio | render s | "
          "multislice s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    last = None
    for kind in args.kinds:
        for d in args.diameters:
            sums = [0.0, 0.0]
            for seed in range(args.seeds):
                result = compare_render_with_multislice(
                    aggregate(kind, d), luts, seed=seed, scan_sampling=SCAN, binning=1
                )
                low = ncc(gaussian_filter(result.rendered, BLUR / SCAN),
                          gaussian_filter(result.multislice, BLUR / SCAN))  # fmt: skip
                sums[0] += float(result.rendered.sum())
                sums[1] += float(result.multislice.sum())
                print(f"| {kind} | {d:g} | {seed} | {result.ncc:.3f} | {low:.3f} | "
                      f"{result.intensity_ratio:.3f} | {result.render_seconds:.4f} | "
                      f"{result.multislice_seconds:.0f} |", flush=True)  # fmt: skip
                last = result
            print(f"| {kind} | {d:g} | mean of {args.seeds} | | | {sums[0] / sums[1]:.3f} | | |")
    if args.plot and last is not None:
        title = "LUT renderer against multislice"
        plot_render_comparison(last, args.plot, title=title, low_pass=BLUR / SCAN)


if __name__ == "__main__":
    main()
