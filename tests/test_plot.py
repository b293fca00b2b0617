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


def test_bad_view():
    import matplotlib.pyplot as plt

    from heteroagg.plot import draw_projection

    agg = heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=5), 2)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="view"):
        draw_projection(ax, agg, "w")
    plt.close(fig)
