"""Pictures of aggregates (needs matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from heteroagg.aggregate import Aggregate
from heteroagg.materials import MATERIAL_NAMES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Face colours of TiO2 and WO3 spheres.
MATERIAL_COLORS: tuple[str, str] = ("#4c72b0", "#dd8452")

_VIEWS = (("x", "y", 2), ("x", "z", 1), ("y", "z", 0))


def plot_aggregate(agg: Aggregate, *, title: str | None = None) -> Figure:
    """Three orthogonal projections of an aggregate, spheres drawn to scale.

    Each sphere projects to a circle of its radius; circles are painted back
    to front and shaded by depth, so the picture reads like a 3D view.

    Parameters
    ----------
    agg
        The aggregate.
    title
        Figure title; defaults to the particle counts.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Circle, Patch

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3), constrained_layout=True)
    axis_index = {"x": 0, "y": 1, "z": 2}
    extent = float(np.max(np.abs(agg.centers)) + np.max(agg.radii)) * 1.05
    for ax, (h, v, depth_axis) in zip(axes, _VIEWS, strict=False):
        depth = agg.centers[:, depth_axis]
        span = float(np.ptp(depth)) or 1.0
        order = np.argsort(depth)
        patches, colors = [], []
        for i in order:
            shade = 0.55 + 0.45 * (depth[i] - depth.min()) / span
            base = np.array(to_rgb(MATERIAL_COLORS[agg.materials[i]]))
            colors.append(np.clip(base * shade, 0, 1))
            patches.append(
                Circle((agg.centers[i, axis_index[h]], agg.centers[i, axis_index[v]]), agg.radii[i])
            )
        ax.add_collection(
            PatchCollection(patches, facecolors=colors, edgecolors="black", linewidths=0.3)
        )
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{h} (nm)")
        ax.set_ylabel(f"{v} (nm)")
        ax.set_title(f"view along {'xyz'[depth_axis]}")
    handles = [
        Patch(color=c, label=n) for c, n in zip(MATERIAL_COLORS, MATERIAL_NAMES, strict=False)
    ]
    axes[2].legend(handles=handles, loc="upper right", fontsize=8)
    fig.suptitle(title or f"{agg.n_particles} particles: {agg.n_tio2} TiO2, {agg.n_wo3} WO3")
    return fig


def save_aggregate_plot(agg: Aggregate, path: str | os.PathLike[str], **kwargs) -> Path:
    """Draw :func:`plot_aggregate` and save it (format from the suffix)."""
    import matplotlib.pyplot as plt

    fig = plot_aggregate(agg, **kwargs)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
