"""Speed of the multislice against abTEM on the same case, in one run.

The case is the issue's anchor: a rutile sphere of 3242 atoms in a 59 Å cell
at 0.05 Å sampling (1200 x 1200 grid points, the first FFT-friendly size),
2 Å slices (30 slices), 300 kV, 20 mrad, a 50-120 mrad detector.  Every
timing includes building the potential.  Figures go to docs/performance.md.

Run with ``pytest benchmarks/test_bench_multislice.py``; the abTEM anchor
skips when abTEM is not installed.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

pytest.importorskip("ase")

from bench_rates import record_rate
from heteroagg.stem import haadf_multislice, simulation_grid
from heteroagg.validate.against_abtem import CASES, _abtem_image

CASE = CASES["speed-anchor"]
SETTINGS = dict(
    energy=CASE.energy,
    semiangle=CASE.semiangle,
    detector=(50.0, 120.0),
    sampling=CASE.sampling,
    slice_thickness=CASE.slice_thickness,
    scan_sampling=CASE.scan_sampling,
)


@pytest.fixture(scope="module")
def atoms():
    return CASE.build_atoms()


def _rate(benchmark, positions: int, slices: int) -> None:
    record_rate(benchmark, "positions_per_second", positions)
    record_rate(benchmark, "probe_slice_steps_per_second", positions * slices)


@pytest.mark.parametrize("positions", [8, 32])
def test_full_cell(benchmark, atoms, positions):
    limit = (1, positions)
    benchmark.pedantic(
        lambda: haadf_multislice(atoms, scan_limit=limit, **SETTINGS), rounds=1, iterations=1
    )
    _rate(benchmark, positions, 30)


@pytest.mark.parametrize("positions", [64])
def test_auto_window(benchmark, atoms, positions):
    limit = (1, positions)
    benchmark.pedantic(
        lambda: haadf_multislice(atoms, window="auto", scan_limit=limit, **SETTINGS),
        rounds=3,
        iterations=1,
    )
    _rate(benchmark, positions, 30)


@pytest.mark.parametrize("positions", [32])
def test_window_512(benchmark, atoms, positions):
    """A 512 x 512 window (25.6 Å), potentials and transmission functions included in the
    time: not the propagation rate alone (benchmarks/multislice_phases.py measures that)."""
    limit = (1, positions)
    benchmark.pedantic(
        lambda: haadf_multislice(atoms, window=25.6, scan_limit=limit, **SETTINGS),
        rounds=2,
        iterations=1,
    )
    _rate(benchmark, positions, 30)


@pytest.mark.parametrize("positions", [8, 32, 64])
def test_anchor_abtem_full_cell(benchmark, atoms, positions):
    pytest.importorskip("abtem")
    grid = simulation_grid(
        atoms, sampling=CASE.sampling, slice_thickness=CASE.slice_thickness,
        scan_sampling=CASE.scan_sampling,
    )  # fmt: skip
    case = dataclasses.replace(CASE, detector=(50.0, 120.0), scan_limit=(1, positions))

    def run():
        start = time.perf_counter()
        _abtem_image(case, atoms, grid.gpts, grid.scan_gpts)
        return time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1)
    _rate(benchmark, positions, 30)
