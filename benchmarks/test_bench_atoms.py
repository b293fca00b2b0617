"""Speed of the atomic model: sphere fill of a 50-particle aggregate of 5 nm spheres.

Run with ``pytest benchmarks -k atoms``; the fill rate in atoms per second is
the atom count (in ``extra_info``) divided by the mean time.
"""

import numpy as np
import pytest

import heteroagg
from bench_rates import record_rate
from heteroagg import ModelParams, _core
from heteroagg.structures import ANATASE, GAMMA_WO3


@pytest.fixture(scope="module")
def aggregate_50():
    params = ModelParams(n_particles=50, radius_ti=5.0, radius_w=5.0, sigma_g=1.0, frac_w=0.3)
    return heteroagg.sample_aggregate(params, 1)


@pytest.mark.parametrize("threads", [1, 2])
def test_fill_aggregate_core(benchmark, aggregate_50, threads):
    cells = [ANATASE.unit_cell(), GAMMA_WO3.unit_cell()]
    centres = aggregate_50.centers * 10.0
    radii = aggregate_50.radii * 10.0
    index = aggregate_50.materials.astype(np.uint32)

    def fill():
        return _core.fill_aggregate(cells, centres, radii, index, 0, True, False, True, threads)

    n_atoms = len(benchmark(fill)[1])
    benchmark.extra_info["atoms"] = n_atoms
    record_rate(benchmark, "atoms_per_second", n_atoms, "mean")


def test_to_atoms(benchmark, aggregate_50):
    atoms = benchmark(heteroagg.to_atoms, aggregate_50, 0)
    benchmark.extra_info["atoms"] = len(atoms)
    record_rate(benchmark, "atoms_per_second", len(atoms), "mean")


def test_frozen_phonon_configuration(benchmark, aggregate_50):
    configs = heteroagg.frozen_phonons(heteroagg.to_atoms(aggregate_50, 0), 8)
    benchmark(lambda: configs[3])
