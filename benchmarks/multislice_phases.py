"""Where the multislice spends its time, and probe-slice steps per second.

Usage: ``python benchmarks/multislice_phases.py``.  On the anchor case (a
3231-atom rutile sphere, 59 Å cell, 0.05 Å sampling, 30 slices, 300 kV) it
times, with 1 and 2 threads, the slice potentials, the transmission
functions, 64 probes in 384² windows and 4 over the full cell, then the
propagation-only rate of probe-slice steps in 512² windows, with one readout
and with a readout after every slice.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    main()
