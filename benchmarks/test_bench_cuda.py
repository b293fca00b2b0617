"""Multislice probe-slice steps per second on a GPU: heteroagg's CUDA path
against abTEM on CuPy, the same case on the same card in one run.

Case per window size N (256, 512, 1024): a rutile slab filling an N x N grid
at 0.05 Å, 20 slices of 2 Å, 300 kV, 20 mrad, a 50-120 mrad detector, probes
propagated over the whole periodic grid.  Only propagation and detection are
timed: both codes get their potentials built beforehand (heteroagg's are
turned into transmission functions inside the timed call).  heteroagg runs
both ways: with cuFFT and separate multiply kernels, and with fused steps
(one row and one column kernel per slice).  Skips without a CUDA device; the
abTEM rows skip without abTEM or CuPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import heteroagg

if not heteroagg.cuda_status()[0]:
    pytest.skip(heteroagg.cuda_status()[1], allow_module_level=True)
pytest.importorskip("ase")

from bench_rates import record_rate
from heteroagg import _core
from heteroagg._device import cuda_fft_extension
from heteroagg.validate.against_abtem import rutile_slab

SAMPLING = 0.05  # Å
SLICES = 20
THICKNESS = 2.0  # Å
ENERGY, SEMIANGLE, DETECTOR = 300e3, 20.0, (50.0, 120.0)
PROBES = {256: 4096, 512: 2048, 1024: 512}


def case_atoms(n: int):
    """Rutile filling an n * SAMPLING square, SLICES * THICKNESS deep (cell set to fit)."""
    side = n * SAMPLING
    atoms = rutile_slab((int(side / 4.5937) + 1, int(side / 4.5937) + 1, 14))
    keep = (atoms.positions[:, 0] < side) & (atoms.positions[:, 1] < side)
    atoms = atoms[keep]
    atoms.set_cell([side, side, SLICES * THICKNESS])
    return atoms


def scan_positions(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.uniform(0, n * SAMPLING, (PROBES[n], 2))


@pytest.mark.parametrize("fused", [False, True], ids=["cufft", "fused"])
@pytest.mark.parametrize("n", sorted(PROBES))
def test_heteroagg_cuda(benchmark, n, fused):
    cuda = cuda_fft_extension("cuda")
    atoms = case_atoms(n)
    edges = np.linspace(0, SLICES * THICKNESS, SLICES + 1)
    potentials = _core.projected_potentials(
        atoms.positions, atoms.numbers.astype(np.int32), (n, n), (SAMPLING, SAMPLING), (0.0, 0.0),
        list(edges), "lobato", True, 0,
    )  # fmt: skip
    positions = scan_positions(n)

    def run():
        return cuda.multislice(
            potentials, [THICKNESS] * SLICES, (SAMPLING, SAMPLING), ENERGY, SEMIANGLE, [],
            [(*DETECTOR, [], [])], [SLICES], (0, 0), positions, fused=fused,
        )  # fmt: skip

    run()
    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert np.all(np.isfinite(result)) and result.max() > 0
    record_rate(benchmark, "probe_slice_steps_per_second", PROBES[n] * SLICES)
    benchmark.extra_info["card"] = _card_name()


@pytest.mark.parametrize("n", sorted(PROBES))
def test_abtem_cupy(benchmark, n):
    abtem = pytest.importorskip("abtem")
    pytest.importorskip("cupy")
    abtem.config.set({"dask.lazy": False, "precision": "float32", "device": "gpu"})
    atoms = case_atoms(n)
    potential = abtem.Potential(
        atoms, gpts=(n, n), slice_thickness=THICKNESS, projection="infinite",
        parametrization="lobato", device="gpu",
    ).build()  # fmt: skip
    probe = abtem.Probe(energy=ENERGY, semiangle_cutoff=SEMIANGLE, device="gpu")
    scan = abtem.CustomScan(scan_positions(n))
    detector = abtem.AnnularDetector(*DETECTOR)

    def run():
        return probe.scan(potential, scan=scan, detectors=detector).compute()

    run()
    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert np.all(np.isfinite(np.asarray(result.array.get() if hasattr(result.array, "get")
                                         else result.array)))  # fmt: skip
    record_rate(benchmark, "probe_slice_steps_per_second", PROBES[n] * SLICES)
    benchmark.extra_info["card"] = _card_name()


def _card_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:
        return "unknown"
