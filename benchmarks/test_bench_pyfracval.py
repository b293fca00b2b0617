"""PyFracVAL speed anchor for ``docs/performance.md``.

Times the generation of one polydisperse fractal aggregate with PyFracVAL
(Morán et al. 2019, Python + Numba port; PyPI package ``pyfracval``) so that
the aggregate sampler of ``heteroagg`` can be compared against an established
tunable-``Df``/``kf`` generator.

Notes
-----
``pyfracval`` is *not* a project dependency; the module is skipped when it is
missing. Install it in a separate environment and run, e.g.::

    pip install pyfracval pytest pytest-benchmark
    python -m pytest benchmarks/test_bench_pyfracval.py -p no:cacheprovider

(add ``--benchmark-columns=min,median,max,rounds`` for a compact table).

Settings: ``Df = 1.8``, ``kf = 1.3``, lognormal radii with geometric mean 1 and
geometric standard deviation ``sigma_g = 1.2``, PyFracVAL CLI defaults for the
rest (``tol_ov = 1e-6``, ``n_subcl_percentage = 0.1``, ``ext_case = 0``).
One timed round is one *successful* aggregate: ``run_simulation`` is called with
fresh seeds until it succeeds (failed attempts are timed too), and the number
of attempts is stored in ``extra_info``. Numba compilation is excluded by a
warm-up call, and PyFracVAL's per-aggregate ``.dat`` output file is disabled
(``Metadata.save_to_file`` is replaced by a no-op).

"""

import itertools
import logging

import pytest

schemas = pytest.importorskip("pyfracval.schemas")
run_simulation = pytest.importorskip("pyfracval.main_runner").run_simulation

DF = 1.8
KF = 1.3
SIGMA_G = 1.2
RP_G = 1.0
MAX_ATTEMPTS = 50

# (N, rounds): seeds are fixed, so the whole file runs in under three minutes on 2 cores.
CASES = [(64, 20), (100, 15), (128, 15), (1000, 4)]


def _config(n):
    return {
        "N": n,
        "Df": DF,
        "kf": KF,
        "rp_g": RP_G,
        "rp_gstd": SIGMA_G,
        "tol_ov": 1e-6,
        "n_subcl_percentage": 0.1,
        "ext_case": 0,
    }


@pytest.fixture(scope="module")
def generate():
    """Return ``generate(n, seeds) -> (coords, radii, attempts)``, output files off."""

    def _generate(n, seeds):
        for attempt in range(1, MAX_ATTEMPTS + 1):
            ok, coords, radii = run_simulation(0, _config(n), seed=next(seeds))
            if ok:
                return coords, radii, attempt
        raise RuntimeError(f"pyfracval failed {MAX_ATTEMPTS} times for N={n}")

    pfv_logger = logging.getLogger("pyfracval")
    old_level = pfv_logger.level
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(schemas.Metadata, "save_to_file", lambda self, *args, **kwargs: None)
        pfv_logger.setLevel(logging.CRITICAL)
        _generate(64, itertools.count(1))  # warm-up: Numba JIT / cache load
        yield _generate
        pfv_logger.setLevel(old_level)


@pytest.mark.parametrize(("n", "rounds"), CASES, ids=[f"N{n}" for n, _ in CASES])
def test_pyfracval_one_aggregate(benchmark, generate, n, rounds):
    """Time one successful PyFracVAL aggregate (Df=1.8, kf=1.3, sigma_g=1.2)."""
    seeds = itertools.count(1000 * n)
    attempts = []

    def one_aggregate():
        coords, radii, attempt = generate(n, seeds)
        attempts.append(attempt)
        return coords, radii

    coords, radii = benchmark.pedantic(one_aggregate, rounds=rounds, iterations=1)
    benchmark.extra_info.update(
        {
            "N": n,
            "Df": DF,
            "kf": KF,
            "sigma_g": SIGMA_G,
            "attempts_per_round": attempts,
            "failed_attempts": sum(attempts) - len(attempts),
        }
    )
    assert coords.shape == (n, 3)
    assert radii.shape == (n,)
