"""Pictures of aggregates (needs matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from heteroagg.aggregate import Aggregate
from heteroagg.materials import MATERIAL_NAMES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Face colours of TiO2 and WO3 spheres.
MATERIAL_COLORS: tuple[str, str] = ("#4c72b0", "#dd8452")

#: Projections: (horizontal axis, vertical axis, viewing axis, the side the viewer is on);
#: (horizontal, vertical, towards the viewer) is right-handed, so no view is a mirror image.
_VIEWS = {"z": ("x", "y", 2, 1.0), "y": ("x", "z", 1, -1.0), "x": ("y", "z", 0, 1.0)}
_AXIS = {"x": 0, "y": 1, "z": 2}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def draw_projection(
    ax: Axes,
    agg: Aggregate,
    view: str = "z",
    extent: float | tuple[float, float] | None = None,
    *,
    down: bool = False,
) -> None:
    """Draw the projection of an aggregate along one axis into ``ax``.

    Each sphere projects to a circle of its radius; circles are painted back
    to front and shaded by depth, so the picture reads like a 3D view.  The
    viewer looks from +z, -y or +x, so that the picture is the aggregate as
    seen, not its mirror image.

    Parameters
    ----------
    ax
        A matplotlib axes.
    agg
        The aggregate.
    view
        The viewing axis, ``"x"``, ``"y"`` or ``"z"``.
    extent
        Half-width of the square window in nm, or (half-width, half-height)
        of a rectangular one, about the middle of the aggregate's bounding box
        (where the renderer centres its image); defaults to the aggregate's.
    down
        Point the vertical axis down, as the rows of an image run when it is
        shown as image files are (row 0 at the top; :func:`plot_twins` shows
        images so).  The viewer is then on the other side (-z, +y or -x), so
        the picture is still no mirror image: for ``view="z"`` it matches a
        rendered image shown that way.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Circle

    if view not in _VIEWS:
        raise ValueError(f"view must be 'x', 'y' or 'z', got {view!r}")
    h, v, depth_axis, viewer_side = _VIEWS[view]
    middle, half_size = _bounding_box(agg)
    if extent is None:
        extent = half_size * 1.05
    half_width, half_height = _half_sides(extent)
    if down:
        viewer_side = -viewer_side
    depth = viewer_side * agg.centers[:, depth_axis]  # larger: nearer the viewer
    span = float(np.ptp(depth))
    base = np.array([to_rgb(c) for c in MATERIAL_COLORS])[agg.materials]
    # the nearest spheres in the legend's colours, the farthest darker
    shade = 0.55 + 0.45 * (depth - depth.min()) / span if span > 0 else np.ones(len(depth))
    colors = np.clip(base * shade[:, None], 0, 1)
    order = np.argsort(depth)
    patches = [
        Circle((agg.centers[i, _AXIS[h]], agg.centers[i, _AXIS[v]]), agg.radii[i]) for i in order
    ]
    ax.add_collection(
        PatchCollection(patches, facecolors=colors[order], edgecolors="black", linewidths=0.3)
    )
    x, y = middle[_AXIS[h]], middle[_AXIS[v]]
    ax.set_xlim(x - half_width, x + half_width)
    ax.set_ylim((y + half_height, y - half_height) if down else (y - half_height, y + half_height))
    ax.set_aspect("equal")
    ax.set_xlabel(f"{h} (nm)")
    ax.set_ylabel(f"{v} (nm)")


def _half_sides(extent: object) -> tuple[float, float]:
    """(half-width, half-height) of a window given as one or two half-sides (nm)."""
    try:
        sides = np.broadcast_to(np.asarray(extent, dtype=float), (2,))
    except (TypeError, ValueError):
        sides = np.array([np.nan])
    if sides.shape != (2,) or not (np.all(np.isfinite(sides)) and np.all(sides > 0)):
        raise ValueError(
            f"extent must be a positive half-width, or (half-width, half-height), in nm; "
            f"got {extent!r}"
        )
    return float(sides[0]), float(sides[1])


def _bounding_box(agg: Aggregate) -> tuple[np.ndarray, float]:
    """The middle of the spheres' bounding box (nm) and half its longest side."""
    low = (agg.centers - agg.radii[:, None]).min(axis=0)
    high = (agg.centers + agg.radii[:, None]).max(axis=0)
    return (low + high) / 2.0, float(np.max(high - low)) / 2.0


def material_legend(ax: Axes, **kwargs) -> None:
    """Add a TiO2 / WO3 colour legend to ``ax``."""
    from matplotlib.patches import Patch

    pairs = zip(MATERIAL_COLORS, MATERIAL_NAMES, strict=True)
    handles = [Patch(color=color, label=name) for color, name in pairs]
    ax.legend(handles=handles, **{"loc": "upper right", "fontsize": 8, **kwargs})


def plot_aggregate(agg: Aggregate, *, title: str | None = None) -> Figure:
    """Three orthogonal projections of an aggregate, spheres drawn to scale.

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
    fig, axes = _pyplot().subplots(1, 3, figsize=(12, 4.3), constrained_layout=True)
    extent = _bounding_box(agg)[1] * 1.05
    for ax, view in zip(axes, "zyx", strict=True):
        draw_projection(ax, agg, view, extent)
        ax.set_title(f"view along {view}")
    material_legend(axes[2])
    fig.suptitle(title or f"{agg.n_particles} particles: {agg.n_tio2} TiO2, {agg.n_wo3} WO3")
    return fig


def save_aggregate_plot(agg: Aggregate, path: str | os.PathLike[str], **kwargs) -> Path:
    """Draw :func:`plot_aggregate` and save it (format from the suffix)."""
    return _save(plot_aggregate(agg, **kwargs), path, dpi=120)


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    """Save ``fig`` to ``path`` and close it, whether or not saving works."""
    path = Path(path)
    try:
        fig.savefig(path, dpi=dpi)
    finally:
        _pyplot().close(fig)
    return path


def plot_twins(
    images: Sequence[np.ndarray],
    pixel_size_nm: float,
    twins: Sequence[Sequence[Aggregate]],
    labels: Sequence[str],
    *,
    per_image: int = 3,
) -> Figure:
    """Each image beside the projections of its first digital twins, on one nm scale.

    Parameters
    ----------
    images
        (H, W) images, fractions of the incident beam.
    pixel_size_nm
        Their pixel size: every panel of a row spans the image's field of view.
    twins
        The twins of each image (as :func:`heteroagg.twins.sample_twins` draws them).
    labels
        A title per image (its file, say).
    per_image
        Twins drawn per image, at most.

    Returns
    -------
    matplotlib.figure.Figure
        One row per image: the image, then up to ``per_image`` twins viewed
        along the beam, coloured by material and titled with their particle
        count and hetero-coordination number.  Images are shown as image
        files are, row 0 at the top, and the twins the same way (y down, as
        :func:`draw_projection` draws with ``down=True``).
    """
    if not len(images) == len(twins) == len(labels) > 0:
        raise ValueError(
            f"need as many twin lists and labels as images (>= 1), got {len(images)} images, "
            f"{len(twins)} twin lists and {len(labels)} labels"
        )
    if not isinstance(per_image, numbers.Integral) or isinstance(per_image, bool) or per_image < 1:
        raise ValueError(f"per_image must be an integer >= 1, got {per_image!r}")
    if not (
        isinstance(pixel_size_nm, numbers.Real)
        and not isinstance(pixel_size_nm, bool)
        and pixel_size_nm > 0
        and np.isfinite(pixel_size_nm)
    ):
        raise ValueError(f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}")
    shapes = [np.shape(image) for image in images]
    if any(len(shape) != 2 for shape in shapes):
        raise ValueError(f"images must be 2D (H, W), got shapes {shapes}")
    rows, cols = len(images), 1 + per_image
    fig, axes = _pyplot().subplots(
        rows, cols, figsize=(2.8 * cols, 2.8 * rows), squeeze=False, constrained_layout=True
    )
    for row, image, made, label in zip(axes, images, twins, labels, strict=True):
        height, width = (n * pixel_size_nm / 2 for n in np.shape(image))
        row[0].imshow(image, cmap="gray", origin="upper", extent=(-width, width, height, -height))
        row[0].set_title(label, fontsize=9)
        row[0].set_xlabel("x (nm)")
        row[0].set_ylabel("y (nm)")
        for ax, twin in zip(row[1:], made, strict=False):
            draw_projection(ax, twin, "z", (width, height), down=True)
            hcn = twin.descriptors().hetero_coordination_number
            ax.set_title(f"twin: {twin.n_particles} particles, HCN {hcn:.2f}", fontsize=9)
        for ax in row[1 + len(made) :]:
            ax.set_axis_off()
    drawn = [row[1] for row, made in zip(axes, twins, strict=True) if len(made)]
    if drawn:
        material_legend(drawn[0])
    return fig


def save_twins_plot(path: str | os.PathLike[str], *args, **kwargs) -> Path:
    """Draw :func:`plot_twins` (same arguments) and save it (format from the suffix)."""
    return _save(plot_twins(*args, **kwargs), path, dpi=110)
