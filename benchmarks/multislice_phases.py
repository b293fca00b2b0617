"""Where the multislice spends its time, and probe-slice steps per second.

Usage: ``python benchmarks/multislice_phases.py``.  On the anchor case (a
3242-atom rutile sphere, 59 Å cell, 0.05 Å sampling, 30 slices, 300 kV) it
times, with 1 and 2 threads, the slice potentials, the transmission
functions, 64 probes in 384² windows and 4 over the full cell, then the
propagation-only rate of probe-slice steps in 512² windows, with one readout
and with a readout after every slice.  Last, the same rate on one thread for
whole grids of 256², 512² and 1024² (random potentials, 20 slices).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from heteroagg import _core
from heteroagg.stem.multislice import simulation_grid
from heteroagg.validate.against_abtem import CASES

DETECTOR = [(50.0, 120.0, [], [])]


def run(v, grid, window, positions, planes, threads) -> float:
    start = time.perf_counter()
    _core.multislice(
        v, list(grid.slice_thickness), grid.sampling, 300e3, 20.0, [], DETECTOR, planes, window,
        positions, threads, None,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    atoms = CASES["speed-anchor"].build_atoms()
    grid = simulation_grid(atoms, sampling=0.05, slice_thickness=2.0, scan_sampling=0.5)
    positions = np.asarray(atoms.positions, float)
    numbers = np.asarray(atoms.numbers, np.int32)
    line = np.stack([np.linspace(10, 50, 64), np.full(64, 29.5)], axis=1)
    none = np.zeros((0, 2))
    n = len(grid.slice_thickness)
    for threads in (1, 2):
        start = time.perf_counter()
        v = _core.projected_potentials(
            positions, numbers, grid.gpts, grid.sampling, (0.0, 0.0), list(grid.slice_edges),
            "lobato", True, threads,
        )  # fmt: skip
        potentials = time.perf_counter() - start
        setup = run(v, grid, (384, 384), none, [n], threads)  # transmission functions only
        windowed = run(v, grid, (384, 384), line, [n], threads) - setup
        full = run(v, grid, (0, 0), line[:4], [n], threads) - setup
        print(
            f"{threads} thread(s): potentials {potentials:.2f} s, transmission {setup:.2f} s, "
            f"64 windowed probes {windowed:.2f} s, 4 full-cell probes {full:.2f} s"
        )
        setup = run(v, grid, (512, 512), none, [n], threads)
        once = run(v, grid, (512, 512), line[:32], [n], threads) - setup
        every = run(v, grid, (512, 512), line[:32], list(range(1, n + 1)), threads) - setup
        print(
            f"   512^2 window: {32 * n / once:.0f} probe-slice steps/s, "
            f"{32 * n / every:.0f}/s reading out after every slice"
        )
    for side in (256, 512, 1024):
        print(f"{side}^2 grid, 1 thread: {steps_per_second(side):.0f} probe-slice steps/s")


def steps_per_second(side: int, slices: int = 20) -> float:
    """Probe-slice steps per second on one thread over a whole side x side grid (best of three)."""
    v = (np.random.default_rng(0).random((slices, side, side)) * 50).astype(np.float32)
    probes = max(2, 16 * 256**2 // side**2)
    line = np.stack([np.linspace(5, 20, probes), np.full(probes, 10.0)], axis=1)
    thickness = [2.0] * slices

    def propagate(positions: np.ndarray) -> float:
        start = time.perf_counter()
        _core.multislice(
            v,
            thickness,
            (0.05, 0.05),
            300e3,
            20.0,
            [],
            DETECTOR,
            [slices],
            (0, 0),
            positions,
            1,
            None,
        )
        return time.perf_counter() - start

    setup = min(propagate(np.zeros((0, 2))) for _ in range(2))
    return probes * slices / (min(propagate(line) for _ in range(3)) - setup)


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__
    ).parse_args()  # no options; --help says what it does
    main()
