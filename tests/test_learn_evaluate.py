"""heteroagg.learn.evaluate: metrics, digital twins and the written report."""

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

pytest.importorskip("torch")

from heteroagg.data import open_dataset
from heteroagg.learn import TrainedRun, evaluate
from heteroagg.learn.evaluation import (
    REPORT_PLOTS,
    TWIN_DESCRIPTORS,
    coverage_curve,
    error_by_quarter,
    field_fraction_outside,
    noisy_test_images,
    parameter_metrics,
    relative_error,
    twin_analysis,
)
from heteroagg.learn.inference import Prediction
from learn_data import tiny_config


def _refuse(name):
    raise AssertionError(f"report.json holds {name}, which JSON does not allow")


def test_parameter_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    true = rng.random(500)
    pred = true + rng.normal(0.1, 0.2, 500)
    m = parameter_metrics(true, pred)
    e = pred - true
    assert m["mae"] == pytest.approx(np.abs(e).mean())
    assert m["rmse"] == pytest.approx(np.sqrt((e**2).mean()))
    assert m["bias"] == pytest.approx(e.mean())
    ss_res, ss_tot = (e**2).sum(), ((true - true.mean()) ** 2).sum()
    assert m["r2"] == pytest.approx(1 - ss_res / ss_tot)
    assert parameter_metrics(true, true)["r2"] == 1.0
    r = relative_error(np.array([1.1, 2.0, 1.0]), np.array([1.0, 0.0, np.nan]))
    assert r[0] == pytest.approx(0.1) and np.isnan(r[1:]).all()


def test_coverage_curve_follows_the_nominal_levels_for_calibrated_errors():
    rng = np.random.default_rng(0)
    levels = (0.1, 0.5, 0.9, 0.99)
    n = 100_000
    calibrated = coverage_curve(np.abs(rng.normal(size=n)), levels)
    for level, share in zip(levels, calibrated, strict=True):
        assert abs(share - level) < 4 * np.sqrt(level * (1 - level) / n)
    # sigma predicted half as large as the errors' spread: P(|x| <= q/2) of the standard normal
    overconfident = coverage_curve(np.abs(rng.normal(size=n)) * 2, levels)
    halved = [
        math.erf(NormalDist().inv_cdf(0.5 + 0.5 * level) / 2 / math.sqrt(2)) for level in levels
    ]
    np.testing.assert_allclose(overconfident, halved, atol=0.01)
    assert all(share < level for share, level in zip(overconfident, levels, strict=True))
    with pytest.raises(ValueError, match="coverage levels"):
        coverage_curve(np.ones(3), (0.5, 1.0))


def test_error_by_quarter_ranks_items_by_each_true_parameter():
    rng = np.random.default_rng(1)
    n = 403  # quarters of 101, 101, 101 and 100 items
    true = rng.random((n, 3))
    # the first parameter's error grows with the second parameter, the others' do not
    error = np.stack([true[:, 1] * rng.normal(size=n), 0.1 * rng.normal(size=n), 0 * true[:, 2]], 1)
    out = error_by_quarter(true, true + error, ["a", "b", "c"])
    for j, q in enumerate("abc"):
        order = np.argsort(true[:, j])
        for i, p in enumerate("abc"):
            brute = [
                np.sqrt(np.mean(error[order[lo:hi], i] ** 2))
                for lo, hi in ((0, 101), (101, 202), (202, 303), (303, 403))
            ]
            assert out[p][q] == pytest.approx(brute)
    assert out["a"]["b"][3] > 3 * out["a"]["b"][0]
    assert 0.7 < out["a"]["c"][3] / out["a"]["c"][0] < 1.4
    assert out["c"]["a"] == [0.0] * 4
    # a parameter that takes one value ranks nothing: its quarters are undefined
    fixed = true.copy()
    fixed[:, 2] = 0.3
    assert all(
        math.isnan(v) for p in "abc" for v in error_by_quarter(fixed, true, list("abc"))[p]["c"]
    )
    with pytest.raises(ValueError, match="must be"):
        error_by_quarter(true, true[:, :2], ["a", "b", "c"])
    with pytest.raises(ValueError, match="at least 4"):
        error_by_quarter(true[:3], true[:3], ["a", "b", "c"])


def test_share_outside_the_field_agrees_with_the_clipped_flag(tiny_test):
    ds = open_dataset(tiny_test)
    items = np.flatnonzero(~ds.failed[:])
    clipped = ds.clipped[:]
    outside = np.array([field_fraction_outside(ds, int(i)) for i in items])
    assert np.all((outside >= 0) & (outside <= 1))
    # a particle centre outside the field means the aggregate was cropped
    assert np.all(clipped[items][outside > 0])


def test_coverage_of_an_undefined_truth_is_left_out():
    from heteroagg.learn.evaluation import _covered, _share

    draws = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, np.nan]])
    flags = np.stack([
        _covered(np.array([2.0, 5.0, 1.0]), draws),  # inside, outside, no draws
        _covered(np.array([np.nan, 3.0, np.nan]), draws),  # no such material: undefined
    ])  # fmt: skip
    np.testing.assert_array_equal(flags, [[1, 0, np.nan], [np.nan, 1, np.nan]])
    assert _share(flags[:, 0]) == 1.0 and _share(flags[:, 1]) == 0.5
    assert _share(flags[:, 2]) is None


def test_baked_test_images_keep_their_stored_noise_and_dose(tmp_path):
    from heteroagg.data import DatasetConfig
    from heteroagg.data.generation import generate, render_seed
    from heteroagg.data.torch_dataset import draw_dose

    config = tiny_config().to_dict()
    config["imaging"]["bake_noise"] = True
    generate(DatasetConfig.from_dict(config), 6, tmp_path / "baked", seed=4)
    ds = open_dataset(tmp_path / "baked")
    items = np.flatnonzero(~ds.failed[:])
    test = noisy_test_images(ds, items, seed=1, noise=True)
    np.testing.assert_array_equal(test.images, ds.images[items])
    # the dose each image was generated with, as the generator drew it
    imaging = DatasetConfig.from_dict(config).imaging
    doses = [draw_dose(imaging.dose, render_seed(4, int(i))) for i in items]
    np.testing.assert_array_equal(test.doses, doses)
    assert len(set(doses)) == len(items)


def test_test_images_are_predicted_a_chunk_at_a_time_as_whole(tiny_run, tiny_test):
    """Evaluation keeps few images in memory: its chunked predictions are those of
    all the images at once, and the kept images and doses are the first ones'."""
    from heteroagg.learn.evaluation import predict_test_images
    from heteroagg.learn.inference import concatenate_predictions

    ds = open_dataset(tiny_test)
    items = np.flatnonzero(~ds.failed[:])[:11]
    run = TrainedRun(tiny_run, "cpu")
    whole = noisy_test_images(ds, items, seed=3, noise=True)
    kept = noisy_test_images(ds, items, seed=3, noise=True, keep=4)
    np.testing.assert_array_equal(kept.images, whole.images[:4])
    np.testing.assert_array_equal(kept.doses, whole.doses)
    np.testing.assert_array_equal(kept.outside, whole.outside)
    at_once = run.predict(whole.images)
    chunked = predict_test_images(run, ds, items, seed=3, noise=True, chunk=4)
    np.testing.assert_allclose(chunked.normalized, at_once.normalized, rtol=1e-5, atol=1e-6)
    for name, values in at_once.params.items():
        np.testing.assert_allclose(chunked.params[name], values, rtol=1e-5, atol=1e-6)
    assert (chunked.normalized_std is None) == (at_once.normalized_std is None)
    assert chunked.descriptors.keys() == at_once.descriptors.keys()
    with pytest.raises(ValueError, match="no predictions"):
        concatenate_predictions([])


def test_report_json_has_no_nan():
    from heteroagg.learn.report import _json_safe

    safe = _json_safe({"a": [math.nan, 1.0], "b": {"c": math.inf, "d": "x"}, "e": (2, -math.inf)})
    assert safe == {"a": [None, 1.0], "b": {"c": None, "d": "x"}, "e": [2, None]}


def test_test_noise_is_seeded_and_follows_the_dose(tiny_test):
    ds = open_dataset(tiny_test)
    items = np.flatnonzero(~ds.failed[:])[:20]
    a = noisy_test_images(ds, items, seed=1, noise=True)
    b = noisy_test_images(ds, items, seed=1, noise=True)
    np.testing.assert_array_equal(a.images, b.images)
    assert np.all((a.doses >= 1e3) & (a.doses <= 1e5))
    clean = noisy_test_images(ds, items, seed=1, noise=False)
    np.testing.assert_array_equal(clean.images, ds.images[items])
    # standardised by the Poisson standard deviation at each image's dose, the
    # noise of the lit pixels has unit variance
    electrons = a.doses * (2.0 * 10) ** 2
    lit = clean.images > 0.005
    z = np.concatenate(
        [
            (a.images[k] - clean.images[k])[lit[k]]
            * np.sqrt(electrons[k] / clean.images[k][lit[k]])
            for k in range(len(items))
        ]
    )
    assert z.size > 1000
    assert np.var(z) == pytest.approx(1.0, rel=0.08)
    assert abs(np.mean(z)) < 0.1


def oracle_inputs(path, n_items=None):
    """A tiny test set's dataset, a stand-in run (its space), items, true θ and clean images."""
    ds = open_dataset(path)
    run_like = type("RunLike", (), {})()
    run_like.space = tiny_config().params
    items = np.flatnonzero(~ds.failed[:])[:n_items]
    true_norm = run_like.space.normalize({n: ds.params[n][:][items] for n in run_like.space.varied})
    return ds, run_like, items, true_norm, noisy_test_images(ds, items, seed=0, noise=False)


def test_oracle_twins_cover_the_truth_at_the_exchangeable_rate(tiny_test):
    """With θ̂ = θ the true aggregate and K twins are exchangeable draws: the
    truth lies in the twins' range with probability (K - 1) / (K + 1)."""
    ds, run_like, items, true_norm, test = oracle_inputs(tiny_test)
    oracle = Prediction(true_norm, None, {}, None, None, {}, {})
    k = 4
    twin = twin_analysis(
        run_like, ds, test, oracle, k=k, n_images=len(items), seed=2, progress=False
    )
    j = TWIN_DESCRIPTORS.index("radius_of_gyration")
    n = len(items)
    nominal = (k - 1) / (k + 1)
    for key in ("covered_twin", "covered_reference"):
        coverage = twin[key][:, j].mean()
        assert abs(coverage - nominal) < 4 * np.sqrt(nominal * (1 - nominal) / n), key
    # twins at the true θ and samples at the true θ are the same law
    e_twin = np.abs(relative_error(twin["twin_mean"][:, j], twin["truth"][:, j]))
    e_ref = np.abs(relative_error(twin["reference_mean"][:, j], twin["truth"][:, j]))
    assert np.nanmedian(e_twin) == pytest.approx(np.nanmedian(e_ref), rel=0.5)


def test_twins_conditioned_on_exact_heads_beat_the_true_theta_floor(tiny_test):
    """Heads that know the imaged aggregate's R_g and HCN pull the conditioned
    twins to it: their error falls below that of samples at the true θ."""
    ds, run_like, items, true_norm, test = oracle_inputs(tiny_test, 24)
    truth = np.array([ds.aggregate(int(i)).descriptors().radius_of_gyration for i in items])
    hcn = np.array([ds.aggregate(int(i)).descriptors().hetero_coordination_number for i in items])
    heads = {"radius_of_gyration": truth, "hetero_coordination_number": hcn}
    spread = {"radius_of_gyration": 0.03 * truth, "hetero_coordination_number": 0.05 + 0 * hcn}
    knowing = Prediction(true_norm, None, {}, None, None, heads, spread)
    twin = twin_analysis(
        run_like, ds, test, knowing, 4, len(items), seed=1, progress=False, candidates=48
    )
    assert twin["candidates"] == 48
    j = TWIN_DESCRIPTORS.index("radius_of_gyration")
    e_twin = np.abs(relative_error(twin["twin_mean"][:, j], twin["truth"][:, j]))
    e_ref = np.abs(relative_error(twin["reference_mean"][:, j], twin["truth"][:, j]))
    assert np.median(e_twin) < 0.5 * np.median(e_ref)
    assert np.median(e_twin) < 0.06
    # K twins resampled by weight: one of them, and their range, sit at the truth too
    e_single = np.abs(relative_error(twin["twin_single"][:, j], twin["truth"][:, j]))
    assert np.median(e_single) < 0.5 * np.median(e_ref)
    assert twin["covered_twin"][:, j].mean() > 0.3
    j = TWIN_DESCRIPTORS.index("hetero_coordination_number")
    e_twin = np.abs(twin["twin_mean"][:, j] - twin["truth"][:, j])
    e_ref = np.abs(twin["reference_mean"][:, j] - twin["truth"][:, j])
    assert np.median(e_twin) < np.median(e_ref)
    point = Prediction(true_norm, None, {}, None, None, heads, {})
    with pytest.raises(ValueError, match="uncertainty"):
        twin_analysis(run_like, ds, test, point, 4, 2, seed=1, progress=False, candidates=8)


def test_head_spread_of_conditioned_twins_widens_the_heads_spread(tiny_test):
    """``head_spread`` s weighs the candidates as heads with s times their spread would."""
    ds, run_like, items, true_norm, test = oracle_inputs(tiny_test, 6)
    truth = np.array([ds.aggregate(int(i)).descriptors().radius_of_gyration for i in items])
    heads = {"radius_of_gyration": truth}

    def analyse(relative_spread, head_spread=1.0):
        spread = {"radius_of_gyration": relative_spread * truth}
        prediction = Prediction(true_norm, None, {}, None, None, heads, spread)
        return twin_analysis(
            run_like, ds, test, prediction, 4, len(items), seed=1, progress=False,
            candidates=16, head_spread=head_spread,
        )  # fmt: skip

    widened, wide = analyse(0.02, head_spread=5.0), analyse(0.1)
    assert widened["head_spread"] == 5.0
    for name in ("twin_mean", "twin_single", "covered_twin"):
        np.testing.assert_allclose(widened[name], wide[name], rtol=1e-12)
    narrow = analyse(0.02)
    j = TWIN_DESCRIPTORS.index("radius_of_gyration")
    assert not np.array_equal(narrow["twin_mean"][:, j], wide["twin_mean"][:, j])
    for bad in (0.0, -2.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="head_spread"):
            analyse(0.02, head_spread=bad)


def test_killed_twin_analysis_resumes_to_the_uninterrupted_result(tiny_test, tmp_path, monkeypatch):
    from heteroagg.learn import evaluation

    ds, run_like, items, true_norm, test = oracle_inputs(tiny_test, 12)
    # a predictive spread, so the twins' θ draws come from the sequential stream too
    guess = Prediction(
        np.clip(true_norm + 0.05, 0, 1), np.full_like(true_norm, 0.05), {}, None, None, {}, {}
    )

    def analyse(seed, checkpoint=None):
        return twin_analysis(
            run_like, ds, test, guess, 3, len(items), seed, False, checkpoint=checkpoint
        )

    full = analyse(3)
    path = tmp_path / evaluation.TWIN_CHECKPOINT
    monkeypatch.setattr(evaluation, "TWIN_CHECKPOINT_SECONDS", 0.0)
    rows = []
    original = evaluation.descriptor_row

    def killed_at_row_5(aggregate):
        if len(rows) == 5:
            raise KeyboardInterrupt
        rows.append(1)
        return original(aggregate)

    monkeypatch.setattr(evaluation, "descriptor_row", killed_at_row_5)
    with pytest.raises(KeyboardInterrupt):
        analyse(3, path)
    with np.load(path) as saved:
        assert int(saved["done"]) == 5

    def counted(aggregate):
        rows.append(1)
        return original(aggregate)

    rows.clear()
    monkeypatch.setattr(evaluation, "descriptor_row", counted)
    resumed = analyse(3, path)
    assert len(rows) == len(items) - 5
    with np.load(path) as saved:  # whole, until evaluate has written its report
        assert int(saved["done"]) == len(items)
    for name in ("truth", "twin_mean", "twin_single", "reference_mean", "covered_twin"):
        np.testing.assert_array_equal(resumed[name], full[name])
    np.testing.assert_array_equal(resumed["covered_reference"], full["covered_reference"])
    assert resumed["failures"] == full["failures"]
    # another analysis (another seed) does not take up this one's rows
    path.unlink()
    rows.clear()
    monkeypatch.setattr(evaluation, "descriptor_row", killed_at_row_5)
    with pytest.raises(KeyboardInterrupt):
        analyse(3, path)
    rows.clear()
    monkeypatch.setattr(evaluation, "descriptor_row", counted)
    other = analyse(4, path)
    assert len(rows) == len(items)
    # a damaged checkpoint (a copy cut short) is started over, not trusted
    path.write_bytes(path.read_bytes()[:100])
    rows.clear()
    again = analyse(4, path)
    assert len(rows) == len(items)
    np.testing.assert_array_equal(again["twin_mean"], other["twin_mean"])
    np.testing.assert_array_equal(other["twin_mean"], analyse(4)["twin_mean"])


def test_resumed_twin_analysis_of_fewer_images_counts_their_failures_only(
    tiny_test, tmp_path, monkeypatch
):
    from heteroagg.learn import evaluation

    ds, run_like, items, true_norm, test = oracle_inputs(tiny_test, 8)
    guess = Prediction(np.clip(true_norm + 0.05, 0, 1), None, {}, None, None, {}, {})
    original = evaluation.descriptor_samples

    def one_failure_each(*args):
        samples, failed = original(*args)
        return samples, failed + 1

    monkeypatch.setattr(evaluation, "descriptor_samples", one_failure_each)
    path = tmp_path / evaluation.TWIN_CHECKPOINT

    def analyse(images, checkpoint=None):
        return twin_analysis(run_like, ds, test, guess, 3, images, 3, False, checkpoint=checkpoint)

    assert analyse(len(items), path)["failures"] == {"twins": len(items), "reference": len(items)}
    fewer = analyse(4, path)  # takes up the whole analysis's rows
    assert fewer["failures"] == analyse(4)["failures"] == {"twins": 4, "reference": 4}
    # an analysis without twin images leaves a checkpoint of no rows, which a rerun takes up
    path.unlink()
    assert (
        analyse(0, path)["failures"] == analyse(0, path)["failures"] == {"twins": 0, "reference": 0}
    )


def test_evaluate_writes_a_consistent_report(tiny_run, tiny_test, tmp_path):
    report = evaluate(
        tiny_run,
        tiny_test,
        tmp_path / "report",
        twins=3,
        twin_images=10,
        device="cpu",
        progress=False,
    )
    saved = json.loads((tmp_path / "report/report.json").read_text())
    assert saved["parameters"] == report["parameters"]
    for name in (
        "report.md",
        "parameters.png",
        "descriptors.png",
        "failure_modes.png",
        "error_by_quarter.png",
        "coverage.png",
        "examples.png",
    ):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert not (tmp_path / "report/twins.partial.npz").exists()  # removed once the twins are done
    # recompute the parameter metrics from an independent prediction
    run = TrainedRun(tiny_run, device="cpu")
    ds = open_dataset(tiny_test)
    items = np.flatnonzero(~ds.failed[:])
    test = noisy_test_images(ds, items, seed=0, noise=True)
    p = run.predict(test.images)
    text = (tmp_path / "report/report.md").read_text()
    true_norm = run.space.normalize({n: ds.params[n][:][items] for n in run.parameters})
    z = np.abs(p.normalized - true_norm) / p.normalized_std
    half = report["coverage_levels"].index(0.5)
    for k, name in enumerate(run.parameters):
        expected = parameter_metrics(ds.params[name][:][items], p.params[name])
        assert report["parameters"][name]["r2"] == pytest.approx(expected["r2"])
        if run.space.priors[name].kind == "uniform":  # normalising is affine: the same R²
            normalized_r2 = report["parameters"][name]["r2_normalized"]
            assert normalized_r2 == pytest.approx(expected["r2"], rel=1e-6, abs=1e-9)
        assert 0 <= report["parameters"][name]["coverage_1sigma"] <= 1
        # the central 50 % interval reaches the standard normal's quartile, 0.6745 sigma
        inside = np.mean(z[:, k] <= 0.6744897501960817)
        assert report["parameters"][name]["coverage_curve"][half] == pytest.approx(inside)
    # every test image's prediction, as the independent one gives it
    with np.load(tmp_path / "report/predictions.npz") as saved_rows:
        assert saved_rows["parameters"].tolist() == list(run.parameters)
        np.testing.assert_array_equal(saved_rows["item"], items)
        np.testing.assert_array_equal(saved_rows["dose"], test.doses)
        for k, name in enumerate(run.parameters):
            np.testing.assert_array_equal(saved_rows["true"][:, k], ds.params[name][:][items])
            np.testing.assert_allclose(saved_rows["predicted"][:, k], p.params[name], rtol=1e-6)
        np.testing.assert_allclose(saved_rows["predicted_normalized"], p.normalized, rtol=1e-6)
        np.testing.assert_allclose(
            saved_rows["predicted_normalized_std"], p.normalized_std, rtol=1e-6
        )
    quarters = report["error_by_quarter"]
    n_true = ds.params["n_particles"][:][items]
    k = run.parameters.index("frac_w")
    prior = run.space.priors["frac_w"]  # uniform: normalised is (value - low) / (high - low)
    error = np.clip(p.normalized[:, k], 0, 1) - (ds.params["frac_w"][:][items] - prior.low) / (
        prior.high - prior.low
    )
    few = np.argsort(n_true, kind="stable")[: -(-len(items) // 4)]
    assert quarters["frac_w"]["n_particles"][0] == pytest.approx(
        np.sqrt(np.mean(error[few] ** 2)), rel=1e-5
    )
    assert "## Errors across the prior" in text
    assert report["uncertainty"] and report["n_twin_images"] == 10
    hcn = report["descriptors"]["hetero_coordination_number"]
    assert hcn["twin_mean"]["n"] + hcn["true_theta_mean"]["n"] > 0
    assert "hetero_coordination_number" in report["direct_descriptor_heads"]
    assert "| n_particles |" in text and "HCN" in text
    # the oracle ceilings of the test set's prior, as heteroagg.learn.ceiling gives them
    from heteroagg.learn.ceiling import oracle_r2, volume_observer_r2
    from heteroagg.learn.evaluation import CEILING_DRAWS

    ceiling = oracle_r2(tiny_config().params, n=CEILING_DRAWS)
    assert set(ceiling) == {"n_particles", "frac_w", "radius_ti", "radius_w"}
    for name, m in report["parameters"].items():
        if name in ceiling:
            assert m["oracle_r2"] == pytest.approx(ceiling[name]["r2"])
            assert m["oracle_r2_normalized"] == pytest.approx(ceiling[name]["r2_normalized"])
        else:
            assert m["oracle_r2"] is None and m["oracle_r2_normalized"] is None
    assert "| oracle R² (3D, upper bound) |" in text
    # and the observer that only weighs the materials, which sits below the oracle
    weighing = volume_observer_r2(tiny_config().params, n=CEILING_DRAWS)
    assert set(weighing) == {"frac_w", "radius_ti", "radius_w"}
    for name in weighing:
        m = report["parameters"][name]
        assert m["volume_observer_r2"] == pytest.approx(weighing[name]["r2"])
        assert m["volume_observer_r2"] < m["oracle_r2"]
    assert report["parameters"]["n_particles"]["volume_observer_r2"] is None
    assert "| volume observer R² |" in text
    row = next(line for line in text.splitlines() if line.startswith("| frac_w |"))
    assert row.split("|")[7].strip() == f"{ceiling['frac_w']['r2']:.3g}"
    assert row.split("|")[8].strip() == f"{weighing['frac_w']['r2']:.3g}"
    row = next(line for line in text.splitlines() if line.startswith("| sigma_g |"))
    assert row.split("|")[7].strip() == "n/a" and row.split("|")[8].strip() == "n/a"
    # the calibration sweep: unperturbed, it is the report's R²; scaled, an independent prediction
    sweep = report["calibration"]
    assert sweep["images"] == len(items) and (tmp_path / "report/calibration.png").exists()
    scaled = np.clip(run.predict(test.images * np.float32(sweep["scales"][0])).normalized, 0, 1)
    for k, name in enumerate(run.parameters):
        unperturbed = sweep["scale_r2"][name][sweep["scales"].index(1.0)]
        assert unperturbed == pytest.approx(report["parameters"][name]["r2_normalized"])
        assert sweep["offset_r2"][name][sweep["offsets"].index(0.0)] == unperturbed
        expected = parameter_metrics(true_norm[:, k], scaled[:, k])["r2"]
        assert sweep["scale_r2"][name][0] == pytest.approx(expected, rel=1e-5)
    assert "## Intensity calibration" in text and "Read noise" in text
    trained = json.loads((tiny_run / "run.json").read_text())["train"]
    assert f"read_noise = {trained['read_noise']:g}." in text  # what the run was trained to take
    assert set(sweep["read_noise_r2"]) == set(run.parameters)
    assert all(len(v) == len(sweep["read_noise"]) for v in sweep["read_noise_r2"].values())
    frame = np.ones(test.images.shape[1:], dtype=bool)
    frame[4:-4, 4:-4] = False
    levels = np.median(test.images[:, frame], axis=1)
    assert sweep["border_nonzero"] == np.count_nonzero(levels)
    corrected = run.predict(test.images - levels[:, None, None].astype(np.float32)).normalized
    corrected = np.clip(corrected, 0, 1)
    for k, name in enumerate(run.parameters):
        expected = parameter_metrics(true_norm[:, k], corrected[:, k])["r2"]
        assert sweep["border_r2"][name] == pytest.approx(expected, rel=1e-5)


def test_evaluate_refuses_training_items_and_other_imaging(tiny_run, tiny_train, tmp_path):
    with pytest.raises(ValueError, match="training set's root seed"):
        evaluate(tiny_run, tiny_train, tmp_path / "r", progress=False)
    from heteroagg.data import default_config
    from heteroagg.data.generation import generate

    config = default_config().to_dict()
    config["imaging"].update(shape=[32, 32])
    from heteroagg.data import DatasetConfig

    generate(DatasetConfig.from_dict(config), 4, tmp_path / "other", seed=99)
    with pytest.raises(ValueError, match="trained on"):
        evaluate(tiny_run, tmp_path / "other", tmp_path / "r2", progress=False)
    with pytest.raises(ValueError, match="twins"):
        evaluate(tiny_run, tmp_path / "other", tmp_path / "r3", twins=1)
    with pytest.raises(ValueError, match="twin_candidates"):
        evaluate(tiny_run, tmp_path / "other", tmp_path / "r4", twins=8, twin_candidates=4)
    with pytest.raises(ValueError, match="twin_head_spread"):
        evaluate(tiny_run, tmp_path / "other", tmp_path / "r5", twin_head_spread=0.0)
    # too few test items for the analysis: refused before any work
    generate(tiny_config(), 3, tmp_path / "three", seed=98)
    with pytest.raises(
        ValueError, match=r"3 usable test items \(of 3\); the error analysis needs at least 4"
    ):
        evaluate(tiny_run, tmp_path / "three", tmp_path / "r6", progress=False)
    assert not (tmp_path / "r6").exists()


def test_evaluate_refuses_what_it_cannot_do_before_the_long_steps(
    tiny_run, tiny_test, tmp_path, monkeypatch
):
    import dataclasses

    from heteroagg.learn import evaluation
    from heteroagg.learn.inference import TrainedRun

    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        evaluate(tiny_run, tiny_test, tmp_path / "file", progress=False)

    class WithoutHeads:
        """The run, its direct descriptor heads taken away."""

        def __init__(self, run):
            self._run = run

        def __getattr__(self, name):
            return getattr(self._run, name)

        def predict(self, images, **kwargs):
            found = self._run.predict(images, **kwargs)
            return dataclasses.replace(found, descriptors={}, descriptors_std={})

    def too_late(*args, **kwargs):
        raise AssertionError("the long steps ran")

    monkeypatch.setattr(evaluation, "oracle_r2", too_late)
    monkeypatch.setattr(evaluation, "_calibration", too_late)
    headless = WithoutHeads(TrainedRun(tiny_run, "cpu"))
    with pytest.raises(ValueError, match="need a run with descriptor heads"):
        evaluate(headless, tiny_test, tmp_path / "r", twin_candidates=8, progress=False)

    class Diverged(WithoutHeads):
        """The run, its outputs NaN for one image as a diverged network gives them."""

        def predict(self, images, **kwargs):
            found = self._run.predict(images, **kwargs)
            normalized = found.normalized.copy()
            normalized[1] = np.nan
            return dataclasses.replace(found, normalized=normalized)

    diverged = Diverged(TrainedRun(tiny_run, "cpu"))
    with pytest.raises(ValueError, match=r"non-finite θ \(or its spread\) for 1 of"):
        evaluate(diverged, tiny_test, tmp_path / "r", progress=False)


def test_report_of_conditioned_twins(tiny_run, tiny_test, tmp_path):
    report = evaluate(
        tiny_run, tiny_test, tmp_path / "r", twins=2, twin_images=3, progress=False,
        twin_candidates=6, twin_head_spread=2.0,
    )  # fmt: skip
    assert report["twin_candidates"] == 6 and report["twin_head_spread"] == 2.0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "conditioned on the direct descriptor heads: 6 candidates" in text
    assert "standard deviations widened 2 times" in text
    hcn = report["descriptors"]["hetero_coordination_number"]
    assert hcn["twin_mean"]["n"] == 3 and hcn["single_twin"]["n"] == 3


def test_calibration_sweep_meets_the_analytic_r2():
    from heteroagg.learn.calibration_sweep import calibration_sweep

    # a predictor that reads θ off the mean intensity: scaling by s gives s·θ, a shift δ gives θ + δ
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.0, 1.0, (400, 2))
    images = np.empty((400, 12, 12), dtype=np.float32)
    images[:, :6] = truth[:, 0, None, None]  # top half reads a, bottom half b
    images[:, 6:] = truth[:, 1, None, None]

    def predict(x):
        return np.stack([x[:, :6].mean(axis=(1, 2)), x[:, 6:].mean(axis=(1, 2))], axis=1)

    sweep = calibration_sweep(
        predict, images, truth, ["a", "b"], predict(images), scales=(0.5, 1.0), offsets=(0.1,),
        read_noise=(0.0, 0.1),
    )  # fmt: skip
    spread = truth.var(axis=0)
    for k, name in enumerate(("a", "b")):
        scaled = 1.0 - np.mean((0.5 * truth[:, k]) ** 2) / spread[k]  # residual (s - 1) θ
        assert sweep["scale_r2"][name] == pytest.approx([scaled, 1.0], rel=1e-5)
        assert sweep["offset_r2"][name] == pytest.approx([1.0 - 0.01 / spread[k]], rel=1e-5)
        # half the border reads a, half b: the border's median m = (a + b) / 2 is taken as
        # the black level, and x becomes (x - m) / (1 - m)
        m = (truth[:, 0] + truth[:, 1]) / 2
        residual = np.mean(((truth[:, k] - m) / (1 - m) - truth[:, k]) ** 2)
        assert sweep["border_r2"][name] == pytest.approx(1.0 - residual / spread[k], rel=1e-4)
    assert sweep["border_nonzero"] == 400
    # on a film of level v the border should read v: the black level is (m - v) / (1 - v)
    v = 0.25
    film = calibration_sweep(predict, images, truth, ["a", "b"], predict(images), scales=(1.0,),
                             offsets=(0.0,), read_noise=(0.0,), vacuum_level=v)  # fmt: skip
    black = (m - v) / (1 - v)
    for k, name in enumerate(("a", "b")):
        residual = np.mean(((truth[:, k] - black) / (1 - black) - truth[:, k]) ** 2)
        assert film["border_r2"][name] == pytest.approx(1.0 - residual / spread[k], rel=1e-4)
    # read noise of sigma on the 72 pixels a parameter is read off: residual variance sigma² / 72
    for k, name in enumerate(("a", "b")):
        noisy = 1.0 - 0.1**2 / 72 / spread[k]
        assert sweep["read_noise_r2"][name][0] == pytest.approx(1.0)
        assert sweep["read_noise_r2"][name][1] == pytest.approx(noisy, abs=3e-4)
        assert sweep["read_noise_r2"][name][1] != 1.0
    with pytest.raises(ValueError, match="as many"):
        calibration_sweep(predict, images, truth[:5], ["a", "b"], truth)


def test_a_small_test_set_gets_honest_plots(tiny_run, tmp_path):
    """Twelve test images and no twins: the failure-mode panels bin what there is,
    and no empty histograms of twins are drawn or listed."""
    pytest.importorskip("matplotlib")
    from heteroagg.data.generation import generate

    generate(tiny_config(), 12, tmp_path / "twelve", seed=96)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "descriptors.png").write_bytes(b"an earlier report's")
    report = evaluate(tiny_run, tmp_path / "twelve", tmp_path / "r", twins=2, twin_images=0,
                      progress=False, calibration=False)  # fmt: skip
    assert "descriptors.png" not in report["plots"]
    assert not (tmp_path / "r" / "descriptors.png").exists()
    assert "failure_modes.png" in report["plots"]
    assert set(report["plots"]) <= set(REPORT_PLOTS)
    # undefined figures (R² of a parameter the test set does not vary) are JSON null
    saved = json.loads((tmp_path / "r" / "report.json").read_text(), parse_constant=_refuse)
    assert saved["n_test_images"] == 12
    # the run records the version its training data was generated with
    info = json.loads((tiny_run / "run.json").read_text())
    dataset = json.loads((Path(info["dataset"]["path"]) / "dataset.json").read_text())
    assert info["dataset"]["heteroagg_version"] == dataset["version"] is not None


def test_a_damaged_run_folder_is_named_not_a_traceback(tiny_run, tiny_test, tmp_path):
    import shutil
    import warnings

    from typer.testing import CliRunner

    from heteroagg.cli import app

    def copy(name):
        shutil.copytree(tiny_run, tmp_path / name)
        return tmp_path / name

    empty = copy("empty")
    (empty / "member-0/best.pt").write_bytes(b"")
    garbage = copy("garbage")
    (garbage / "member-0/best.pt").write_bytes(b"not a torch file at all")
    foreign = copy("foreign")
    (foreign / "run.json").write_text("{}")
    for run, culprit in ((empty, "best.pt"), (garbage, "best.pt"), (foreign, "run.json")):
        with pytest.raises(ValueError, match=culprit):
            TrainedRun(run, device="cpu")
    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(empty), "--data", str(tiny_test), "--out", str(tmp_path / "r")],
    )
    assert result.exit_code != 0
    assert "best.ptisdamaged" in "".join(result.output.split())
    # an unreadable checkpoint only costs the note on unfinished training
    checkpoint = copy("checkpoint")
    (checkpoint / "member-0/checkpoint.pt").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = TrainedRun(checkpoint, device="cpu")
    assert len(run.models) == 2
    assert any("cannot be read" in str(w.message) for w in caught)


def test_a_test_set_imaged_otherwise_is_flagged_in_the_warning_and_the_report(tiny_run, tmp_path):
    from heteroagg.data import DatasetConfig, generate
    from heteroagg.learn.evaluation import imaging_differences

    training = tiny_config().to_dict()["imaging"]
    assert imaging_differences(training, dict(training)) == {}
    assert imaging_differences(training, {**training, "bake_noise": True, "shape": [8, 8]}) == {}
    on_film = {**training, "support": 20.0}
    assert imaging_differences(training, on_film) == {
        "support": {"training": training["support"], "test": 20.0}
    }
    config = tiny_config().to_dict()
    config["imaging"]["support"] = 20.0
    generate(DatasetConfig.from_dict(config), 12, tmp_path / "film", seed=97)
    with pytest.warns(UserWarning, match=r"imaged otherwise than the training set \(support\)"):
        report = evaluate(
            tiny_run, tmp_path / "film", tmp_path / "r", twins=2, twin_images=0,
            calibration=False, progress=False,
        )  # fmt: skip
    assert report["imaging_differences"] == {"support": {"training": 0.0, "test": 20.0}}
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "Imaged otherwise than the training set:** support 20.0 (training: 0.0)" in markdown
