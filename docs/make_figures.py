"""Regenerate the figures of docs/model.md and docs/render.md.

``python docs/make_figures.py [segregation] [luts] [rendering]`` (default: all).
Needs matplotlib (the ``plot`` extra).
"""

import sys
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


def luts_figure(path: Path) -> None:
    """The shipped LUTs: I(t) with its orientation spread, and R(t)."""
    from heteroagg.stem import default_lut
    from heteroagg.stem.lut import plot_luts

    plot_luts([default_lut(m) for m in ("TiO2", "WO3", "C")], path)


def rendering_figure(path: Path) -> None:
    """One aggregate: noise-free, with probe, support and shot noise, and two label maps."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from heteroagg.stem import render_haadf

    agg = heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=60, frac_w=0.4), 4)
    kw = dict(pixel_size=0.5, shape=256, seed=2)
    labels = render_haadf(agg, probe=None, orientation_spread=False, labels=True, **kw)
    noisy = render_haadf(agg, dose=2e3, support=5.0, **kw)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), constrained_layout=True)
    panels = [
        (labels.clean, "gray", "LUT intensity (no blur, no noise)"),
        (noisy, "gray", "probe, orientations, 5 nm carbon, 2000 e/Å²"),
        (labels.material, "coolwarm", "material map (-1 vacuum, 0 TiO2, 1 WO3)"),
        (labels.thickness.sum(axis=0), "viridis", "path through matter (nm)"),
    ]
    for ax, (image, cmap, title) in zip(axes, panels, strict=True):
        shown = ax.imshow(image, cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, shrink=0.75)
    fig.savefig(path, dpi=90)
    plt.close(fig)


FIGURES = {
    "segregation": (segregation_figure, "segregation.png"),
    "luts": (luts_figure, "haadf_luts.png"),
    "rendering": (rendering_figure, "rendering.png"),
}

if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    for name in sys.argv[1:] or list(FIGURES):
        make, filename = FIGURES[name]
        make(HERE / filename)
