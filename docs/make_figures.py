"""Regenerate the figures of docs/model.md: ``python docs/make_figures.py``.

Needs matplotlib (the ``plot`` extra).
"""

from pathlib import Path

import matplotlib
import numpy as np

import heteroagg
from heteroagg.plot import draw_projection, material_legend

HERE = Path(__file__).parent / "images"


def segregation_figure(path: Path) -> None:
    """Aggregates at three segregation levels and the hetero-contact fraction."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = (0.0, 0.5, 1.0)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), constrained_layout=True)
    for ax, s in zip(axes[:3], levels, strict=True):
        p = heteroagg.ModelParams(n_particles=120, frac_w=0.4, segregation=s)
        agg = heteroagg.sample_aggregate(p, 3)
        d = agg.descriptors()
        draw_projection(ax, agg, "z")
        ax.set_title(f"segregation {s}: HCN {d.hetero_coordination_number:.2f}")
    material_legend(axes[0])
    sweep = np.linspace(0.0, 1.0, 11)
    mean, spread = [], []
    for k, s in enumerate(sweep):
        p = heteroagg.ModelParams(n_particles=120, frac_w=0.4, segregation=float(s))
        aggs = heteroagg.sample_aggregates(p, k, n=200)
        f = [a.descriptors().hetero_contact_fraction for a in aggs]
        mean.append(np.mean(f))
        spread.append(np.std(f))
    mean, spread = np.array(mean), np.array(spread)
    axes[3].fill_between(sweep, mean - spread, mean + spread, alpha=0.3)
    axes[3].plot(sweep, mean, "o-")
    n, nw = 120, 48
    expected = 2 * nw * (n - nw) / (n * (n - 1))
    axes[3].axhline(expected, ls="--", c="gray", label="random labelling, equal radii")
    axes[3].set_xlabel("segregation")
    axes[3].set_ylabel("hetero-contact fraction (mean ± sd, 200 aggregates)")
    axes[3].legend()
    fig.suptitle("N = 120, 40 % WO3, D_f = 1.8, k_f = 1.3")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    segregation_figure(HERE / "segregation.png")
