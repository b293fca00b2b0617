import numpy as np
import pytest

import heteroagg

pytest.importorskip("matplotlib")


def test_plot_aggregate_draws_one_circle_per_sphere_in_each_view():
    from heteroagg.plot import plot_aggregate

    agg = heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=25, frac_w=0.4), 2)
    fig = plot_aggregate(agg)
    for ax in fig.axes[:3]:
        (collection,) = ax.collections
        assert len(collection.get_paths()) == 25
    assert "25 particles" in fig._suptitle.get_text()
    # an aggregate far from the origin, as particles marked in an image are, fills its window
    shift = np.array([500.0, -300.0, 40.0])
    far = heteroagg.Aggregate(agg.centers + shift, agg.radii, agg.materials)
    fig = plot_aggregate(far)
    for ax, (h, v) in zip(fig.axes[:3], ((0, 1), (0, 2), (1, 2)), strict=True):
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for axis, (a, b) in ((h, (x0, x1)), (v, (y0, y1))):
            low = (far.centers[:, axis] - far.radii).min()
            high = (far.centers[:, axis] + far.radii).max()
            assert a <= low and high <= b  # every sphere inside
            assert b - a <= 1.05 * 2 * _half_size(far) + 1e-9  # and no wider than it needs


def _half_size(agg):
    low = (agg.centers - agg.radii[:, None]).min(0)
    return float(((agg.centers + agg.radii[:, None]).max(0) - low).max()) / 2


def test_bad_view():
    import matplotlib.pyplot as plt

    from heteroagg.plot import draw_projection

    agg = heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=5), 2)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="view"):
        draw_projection(ax, agg, "w")
    plt.close(fig)


@pytest.mark.parametrize("down", [False, True])
@pytest.mark.parametrize("view", ["x", "y", "z"])
def test_projections_are_seen_from_outside_not_mirrored(view, down):
    import matplotlib.pyplot as plt
    import numpy as np

    from heteroagg.plot import draw_projection

    axes = {"x": 0, "y": 1, "z": 2}
    h, v = {"z": "xy", "y": "xz", "x": "yz"}[view]
    right, up = np.eye(3)[axes[h]], np.eye(3)[axes[v]] * (-1 if down else 1)
    toward_viewer = np.cross(right, up)  # right-handed screen
    # a near sphere off to the right and up on the screen, a far one behind the centre
    near = 2 * toward_viewer + right + 0.5 * up
    agg = heteroagg.Aggregate([near, -2 * toward_viewer], [0.5, 0.5], [0, 1])
    fig, ax = plt.subplots()
    draw_projection(ax, agg, view, 3.0, down=down)
    fig.canvas.draw()  # applies the equal aspect
    (circles,) = ax.collections
    outline = circles.get_paths()[-1].vertices  # painted last: in front
    front = ax.transData.transform((outline.min(axis=0) + outline.max(axis=0)) / 2)
    middle = ax.transData.transform(agg.centers[1, [axes[h], axes[v]]])
    step = ax.transData.transform([1, 0])[0] - ax.transData.transform([0, 0])[0]  # pixels per nm
    np.testing.assert_allclose((front - middle) / step, [1.0, 0.5], atol=1e-6)  # right and up
    plt.close(fig)


def test_a_rendered_image_and_its_aggregate_drawn_beside_it_agree_on_screen():
    """plot_twins shows images as image files are, row 0 at the top; a twin that is
    the imaged aggregate itself must show each particle where the image shows it."""
    import matplotlib.pyplot as plt

    from heteroagg.plot import plot_twins
    from heteroagg.stem.renderer import render_haadf

    # a large WO3 sphere right of the centre, a small TiO2 one above it (+y)
    agg = heteroagg.Aggregate([[0, 0, 0], [6, 0, 0], [0, 6, 0]], [2.0, 3.0, 1.5], [0, 1, 0])
    rendered = render_haadf(agg, pixel_size=0.25, shape=80, rotation=np.eye(3), labels=True,
                            probe=None, orientation_spread=False, device="cpu")  # fmt: skip
    fig = plot_twins([rendered.image], 0.25, [[agg]], ["rendered"], per_image=1)
    image_ax, twin_ax = fig.axes[:2]
    fig.canvas.draw()
    for k in range(3):
        rows, cols = np.nonzero(rendered.particle == k)
        (shown,) = image_ax.get_images()
        left, right, bottom, top = shown.get_extent()
        pixel = ((right - left) / 80, (bottom - top) / 80)
        where = (left + (cols.mean() + 0.5) * pixel[0], top + (rows.mean() + 0.5) * pixel[1])
        in_image = image_ax.transData.transform(where) - image_ax.transAxes.transform((0, 0))
        sphere = agg.centers[k, :2]
        in_twin = twin_ax.transData.transform(sphere) - twin_ax.transAxes.transform((0, 0))
        np.testing.assert_allclose(in_image, in_twin, atol=1.0)  # the same place, to a pixel
    assert image_ax.yaxis_inverted() and twin_ax.yaxis_inverted()  # y down in both
    plt.close(fig)


def test_bad_windows_and_flat_aggregates():
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from heteroagg.plot import MATERIAL_COLORS, draw_projection

    agg = heteroagg.Aggregate([[0, 0, 0], [3, 0, 0]], [1.0, 1.0], [0, 1])
    fig, ax = plt.subplots()
    for bad in (-10.0, (10.0, -10.0), 0.0, float("nan"), (1.0, 2.0, 3.0), "wide"):
        with pytest.raises(ValueError, match="extent"):
            draw_projection(ax, agg, "z", bad)
    # spheres at one depth keep the legend's colours (a single sphere too)
    for flat in (agg, heteroagg.Aggregate([[0, 0, 0]], [1.0], [1])):
        ax.clear()
        draw_projection(ax, flat, "z")
        (circles,) = ax.collections
        faces = circles.get_facecolors()[:, :3]
        expected = [to_rgb(MATERIAL_COLORS[m]) for m in flat.materials]
        np.testing.assert_allclose(faces, expected)
    plt.close(fig)


def test_a_failed_save_leaves_no_figure_open(tmp_path):
    import matplotlib.pyplot as plt

    from heteroagg.plot import save_aggregate_plot

    agg = heteroagg.Aggregate([[0, 0, 0], [3, 0, 0]], [1.0, 1.0], [0, 1])
    before = plt.get_fignums()
    for path in (tmp_path / "missing/a.png", tmp_path / "a.unknown"):
        with pytest.raises((OSError, ValueError)):
            save_aggregate_plot(agg, path)
    assert plt.get_fignums() == before


def test_plot_twins_puts_each_image_beside_its_twins_on_one_scale():
    import matplotlib.pyplot as plt
    import numpy as np

    from heteroagg.plot import plot_twins

    rng = np.random.default_rng(0)
    images = [rng.random((40, 60)), rng.random((40, 60))]
    made = [
        [heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=n), s) for n, s in
         ((12, 1), (20, 2), (30, 3))],
        [heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=8), 4)],
    ]  # fmt: skip
    fig = plot_twins(images, 0.5, made, ["a.dm4", "b.dm4"])
    rows = np.array(fig.axes[:8]).reshape(2, 4)
    for row, image, twins in zip(rows, images, made, strict=True):
        (shown,) = row[0].get_images()
        np.testing.assert_array_equal(shown.get_array(), image)
        assert shown.get_extent() == [-15.0, 15.0, 10.0, -10.0]  # 60 x 40 pixels, row 0 on top
        for ax, twin in zip(row[1:], twins, strict=False):
            (circles,) = ax.collections
            assert len(circles.get_paths()) == twin.n_particles
            # the window of the image's size about the middle of the twin's bounding box
            low = (twin.centers - twin.radii[:, None]).min(0)
            high = (twin.centers + twin.radii[:, None]).max(0)
            x, y = (low[:2] + high[:2]) / 2
            assert ax.get_xlim() == pytest.approx((x - 15.0, x + 15.0))
            assert ax.get_ylim() == pytest.approx((y + 10.0, y - 10.0))  # y down, as the rows
            assert f"{twin.n_particles} particles" in ax.get_title()
    assert [ax.axison for ax in rows[1]] == [True, True, False, False]
    assert rows[0][0].get_title() == "a.dm4"
    plt.close(fig)
    with pytest.raises(ValueError, match="labels"):
        plot_twins(images, 0.5, made, ["a.dm4"])
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="per_image"):
            plot_twins(images, 0.5, made, ["a", "b"], per_image=bad)
    for bad in (0.0, float("inf"), float("nan"), "0.5"):
        with pytest.raises(ValueError, match="pixel_size_nm"):
            plot_twins(images, bad, made, ["a", "b"])
    with pytest.raises(ValueError, match="images must be 2D"):
        plot_twins([images[0], np.zeros((40, 60, 3))], 0.5, made, ["a", "b"])
