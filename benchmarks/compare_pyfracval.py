"""Side-by-side robustness and accuracy of heteroagg and PyFracVAL.

For a grid of (D_f, k_f) at N = 100, sigma_g = 1.2, each tool is called once per
seed without retries. The script prints a markdown table of:

- the success rate;
- the median seconds per call;
- the median miss of the fractal law, |N / (k_f (R_g / r_geo)^D_f) - 1|, with R_g
  volume-weighted and including the (3/5) r^2 self term;
- the worst min_ij d_ij / (r_i + r_j) (1 means touching);
- the share of aggregates whose contact graph, with contacts at
  d_ij <= (r_i + r_j)(1 + 1e-6), is connected.

Needs ``pyfracval`` (not a dependency of heteroagg)::

    pip install pyfracval
    python benchmarks/compare_pyfracval.py

The figures are recorded in docs/performance.md.
"""

import argparse
import logging
import statistics
import time

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

import heteroagg

N, SIGMA_G, SEEDS = 100, 1.2, range(20)
GRID = [(df, kf) for df in (1.5, 1.8, 2.1, 2.4) for kf in (1.0, 1.3, 2.0)]


def quality(x: np.ndarray, r: np.ndarray, df: float, kf: float) -> tuple[float, float, bool]:
    m = r**3
    c = (m[:, None] * x).sum(0) / m.sum()
    rg = np.sqrt((m * (((x - c) ** 2).sum(1) + 0.6 * r**2)).sum() / m.sum())
    miss = abs(len(r) / (kf * (rg / np.exp(np.log(r).mean())) ** df) - 1.0)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    s = r[:, None] + r[None]
    iu = np.triu_indices(len(r), 1)
    adjacency = d <= s * (1 + 1e-6)
    np.fill_diagonal(adjacency, False)
    connected = connected_components(csr_matrix(adjacency), directed=False)[0] == 1
    return miss, float((d[iu] / s[iu]).min()), bool(connected)


def run_heteroagg(df: float, kf: float, seed: int):
    p = heteroagg.ModelParams(
        n_particles=N, frac_w=0.0, radius_ti=1.0, sigma_g=SIGMA_G, fractal_dim=df, prefactor=kf
    )
    try:
        agg = heteroagg.sample_aggregate(p, seed)
    except heteroagg.GenerationError:
        return None
    return agg.centers, agg.radii


def run_pyfracval(df: float, kf: float, seed: int):
    from pyfracval import schemas
    from pyfracval.main_runner import run_simulation

    schemas.Metadata.save_to_file = lambda *args, **kwargs: None  # no result files
    config = {
        "N": N, "Df": df, "kf": kf, "rp_g": 1.0, "rp_gstd": SIGMA_G,
        "tol_ov": 1e-6, "n_subcl_percentage": 0.1, "ext_case": 0,
    }  # fmt: skip
    ok, coords, radii = run_simulation(1, config, seed=seed)
    return (np.asarray(coords), np.asarray(radii)) if ok else None


def main() -> None:
    logging.getLogger("pyfracval").setLevel(logging.CRITICAL)
    tools = {"PyFracVAL": run_pyfracval, "heteroagg": run_heteroagg}
    for run in tools.values():
        run(1.8, 1.3, 0)  # warm-up (Numba compilation)
    print(
        "| D_f | k_f | tool | success | median s/call | median law miss | worst min d/(ri+rj) "
        "| connected |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for df, kf in GRID:
        for name, run in tools.items():
            times, results = [], []
            for seed in SEEDS:
                start = time.perf_counter()
                out = run(df, kf, seed)
                times.append(time.perf_counter() - start)
                if out is not None:
                    results.append(quality(*out, df, kf))
            ok = len(results)
            miss = f"{statistics.median(q[0] for q in results):.1e}" if ok else "-"
            worst = f"{min(q[1] for q in results):.9f}" if ok else "-"
            connected = f"{sum(q[2] for q in results)}/{ok}" if ok else "-"
            print(
                f"| {df} | {kf} | {name} | {ok}/{len(SEEDS)} | {statistics.median(times):.2g} "
                f"| {miss} | {worst} | {connected} |"
            )


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__
    ).parse_args()  # no options; --help says what it does
    main()
