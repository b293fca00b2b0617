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


@pytest.mark.parametrize("view", ["x", "y", "z"])
def test_projections_are_seen_from_outside_not_mirrored(view):
    import matplotlib.pyplot as plt
    import numpy as np

    from heteroagg.plot import draw_projection

    axes = {"x": 0, "y": 1, "z": 2}
    h, v = {"z": "xy", "y": "xz", "x": "yz"}[view]
    toward_viewer = np.cross(np.eye(3)[axes[h]], np.eye(3)[axes[v]])  # right-handed screen
    # a near sphere off to the right and up, a far one behind the centre
    near = 2 * toward_viewer + np.eye(3)[axes[h]] + 0.5 * np.eye(3)[axes[v]]
    agg = heteroagg.Aggregate([near, -2 * toward_viewer], [0.5, 0.5], [0, 1])
    fig, ax = plt.subplots()
    draw_projection(ax, agg, view)
    (circles,) = ax.collections
    outline = circles.get_paths()[-1].vertices  # painted last: in front
    front = (outline.min(axis=0) + outline.max(axis=0)) / 2
    np.testing.assert_allclose(front, [1.0, 0.5], atol=1e-6)
    plt.close(fig)


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
        assert shown.get_extent() == [-15.0, 15.0, -10.0, 10.0]  # 60 x 40 pixels of 0.5 nm
        for ax, twin in zip(row[1:], twins, strict=False):
            (circles,) = ax.collections
            assert len(circles.get_paths()) == twin.n_particles
            # the window of the image's size about the middle of the twin's bounding box
            low = (twin.centers - twin.radii[:, None]).min(0)
            high = (twin.centers + twin.radii[:, None]).max(0)
            x, y = (low[:2] + high[:2]) / 2
            assert ax.get_xlim() == pytest.approx((x - 15.0, x + 15.0))
            assert ax.get_ylim() == pytest.approx((y - 10.0, y + 10.0))
            assert f"{twin.n_particles} particles" in ax.get_title()
    assert [ax.axison for ax in rows[1]] == [True, True, False, False]
    assert rows[0][0].get_title() == "a.dm4"
    plt.close(fig)
    with pytest.raises(ValueError, match="labels"):
        plot_twins(images, 0.5, made, ["a.dm4"])
    with pytest.raises(ValueError, match="per_image"):
        plot_twins(images, 0.5, made, ["a", "b"], per_image=0)
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="pixel_size_nm"):
            plot_twins(images, bad, made, ["a", "b"])
    with pytest.raises(ValueError, match="images must be 2D"):
        plot_twins([images[0], np.zeros((40, 60, 3))], 0.5, made, ["a", "b"])
