"""ONNX export, the numpy + onnxruntime runtime, image readers and `heteroagg predict`."""

import dataclasses
import json
import math
import re

import h5py
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner

from heteroagg.cli import app
from heteroagg.data import open_dataset
from heteroagg.data.space import ParameterSpace
from heteroagg.deploy import Predictor, export_onnx
from heteroagg.deploy.export import METADATA_KEYS
from heteroagg.deploy.images import border_level, border_noise, read_images
from heteroagg.learn import TrainedRun, evaluate
from heteroagg.pooling import pool_sample
from heteroagg.rng import derive_seed
from heteroagg.twins import sample_twins, twin_params


def flat(text: str) -> str:
    """CLI output without whitespace: rich wraps long lines anywhere."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(tiny_run, path)
    return path, report


def test_export_checks_parity_and_writes_metadata(exported, tiny_run):
    path, report = exported
    assert sorted(report.max_rel_difference) == [1, 8]
    assert max(report.max_rel_difference.values()) < 1e-4
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert set(METADATA_KEYS) <= set(meta)
    info = json.loads((tiny_run / "run.json").read_text())
    assert meta["parameters"] == info["parameters"]
    assert meta["input_shape"] == [64, 64] and meta["pixel_size_nm"] == 2.0
    assert meta["units"]["radius_w"] == "nm" and meta["uncertainty"] is True
    assert meta["imaging"]["energy"] == info["dataset_config"]["imaging"]["energy"]
    assert [i.name for i in model.graph.input] == ["images"]
    batch_axis = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param  # symbolic: any batch size
    assert model.opset_import[0].version == 18


def test_predictor_matches_the_trained_run(exported, tiny_run, tiny_test):
    predictor = Predictor(exported[0], providers="cpu")
    assert predictor.provider == "CPUExecutionProvider"
    images = open_dataset(tiny_test).images[:11]
    got = predictor.predict(images, batch_size=4)
    run = TrainedRun(tiny_run, device="cpu")
    expected = run.predict(images)
    in_threes = run.predict(images, batch_size=np.int64(3))  # a numpy count, as Predictor takes
    np.testing.assert_allclose(in_threes.normalized, expected.normalized, rtol=1e-5, atol=1e-6)
    assert set(got) == set(expected.params)  # every ModelParams field, fixed ones too
    for name in expected.params:
        np.testing.assert_allclose(got[name], expected.params[name], rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(got.low[name], expected.params_low[name], rtol=1e-4)
        np.testing.assert_allclose(got.high[name], expected.params_high[name], rtol=1e-4)
    np.testing.assert_allclose(got.normalized_std, expected.normalized_std, rtol=1e-4, atol=1e-6)
    hcn = "hetero_coordination_number"
    np.testing.assert_allclose(got.descriptors[hcn], expected.descriptors[hcn], rtol=1e-4)
    single = predictor.predict(images[0])  # (H, W) works too
    np.testing.assert_allclose(single["frac_w"], got["frac_w"][:1], rtol=1e-5)
    # both refuse what cannot be fractions of the beam alike
    for bad, message in (((images * 60000).astype(np.uint16), "must be floats"),
                         (images * 100, "cannot be fractions")):  # fmt: skip
        for runtime in (predictor, TrainedRun(tiny_run, device="cpu")):
            with pytest.raises(ValueError, match=message):
                runtime.predict(bad)


def test_predictor_checks_input_and_resamples_when_asked(exported, tiny_test):
    predictor = Predictor(exported[0], providers="cpu")
    images = open_dataset(tiny_test).images[:2]
    with pytest.raises(ValueError, match="64 x 64 images at 2 nm"):
        predictor.predict(np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match="resample"):
        predictor.predict(images, pixel_size_nm=1.0)
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(np.full((64, 64), np.nan))
    # the same field at twice the sampling, resampled back, is the same image
    fine = np.kron(images, np.ones((1, 2, 2)))
    np.testing.assert_allclose(predictor.prepare(fine, 1.0, resample=True), images, atol=1e-7)
    np.testing.assert_allclose(
        predictor.predict(fine, 1.0, resample=True)["frac_w"],
        predictor.predict(images)["frac_w"],
        rtol=1e-5,
    )
    # a smaller field is padded with vacuum around its centre
    padded = predictor.prepare(images[:, 16:48, 16:48], resample=True)
    np.testing.assert_array_equal(padded[:, 16:48, 16:48], images[:, 16:48, 16:48])
    assert not padded[:, :16].any()
    # at the model's pixel an odd excess is cropped by whole pixels, not interpolated
    wider = np.pad(images, ((0, 0), (0, 1), (0, 1)), constant_values=0.3)
    np.testing.assert_array_equal(predictor.prepare(wider, resample=True), images)
    # a field exactly the model's, at another pixel, fills it to the edges
    uniform = predictor.prepare(np.full((32, 32), 0.1, np.float32), 4.0, resample=True)
    np.testing.assert_allclose(uniform, 0.1, rtol=1e-6)
    # a finer scan is averaged over each model pixel: every electron counts, so the shot
    # noise is that of a scan at the model's 2 nm pixels, and the signal is kept
    dose, level = 2000.0, 0.05  # e/Å², fraction of the beam
    rng = np.random.default_rng(5)
    for fine_nm, side in ((0.1, 1280), (0.25, 512), (0.1, 1281)):  # the model's 128 nm
        electrons = dose * (10 * fine_nm) ** 2
        scan = rng.poisson(level * electrons, (side, side)) / electrons
        got = predictor.prepare(scan.astype(np.float32), fine_nm, resample=True)[0]
        inner = got[1:-1, 1:-1]  # pixels whose footprint lies within the scan
        assert inner.mean() == pytest.approx(level, rel=2e-3)
        expected_noise = math.sqrt(level / (dose * 20.0**2))  # one 2 nm pixel's electrons
        assert inner.std() == pytest.approx(expected_noise, rel=0.1), (fine_nm, side)
    disc = np.zeros((640, 640), np.float32)
    yy, xx = np.mgrid[:640, :640] - 319.5
    disc[np.hypot(yy, xx) < 150] = 0.2
    got = predictor.prepare(disc, 0.1, resample=True)[0]
    assert got.sum() * 2.0**2 == pytest.approx(disc.sum() * 0.1**2, rel=1e-6)
    # raw detector counts are not fractions of the beam
    with pytest.raises(ValueError, match="must be floats"):
        predictor.predict((images * 60000).astype(np.uint16))
    with pytest.raises(ValueError, match="cannot be fractions"):
        predictor.predict(images * 100)
    for bad in (math.inf, math.nan, 0.0):
        with pytest.raises(ValueError, match="pixel_size_nm must be a positive number"):
            predictor.prepare(images, bad, resample=True)
    # channels last are one image, as read_images reads them from files
    np.testing.assert_array_equal(predictor.prepare(images[0][:, :, None]), images[:1])
    grey = np.repeat(images[..., None], 3, axis=-1)
    np.testing.assert_array_equal(predictor.prepare(grey), images)
    with pytest.raises(ValueError, match="colour"):
        predictor.prepare(grey * np.array([1.0, 0.5, 1.0], np.float32))


def test_predictor_pads_with_the_field_of_its_training_images(exported, tiny_test):
    predictor = Predictor(exported[0], providers="cpu")
    assert predictor.vacuum_level == 0.0  # trained in vacuum
    images = open_dataset(tiny_test).images[:2]
    predictor.vacuum_level = 1.2e-3  # as on a support film
    small = images[:, 16:48, 16:48]
    for pixel, inner in ((2.0, slice(16, 48)), (1.0, slice(24, 40)), (3.0, slice(8, 56))):
        got = predictor.prepare(small, pixel, resample=True)
        outside = np.ones((64, 64), dtype=bool)
        outside[inner, inner] = False
        np.testing.assert_allclose(got[:, outside], 1.2e-3, rtol=1e-6, err_msg=str(pixel))
    # a pixel size within SAME_PIXEL_TOLERANCE is the model's: cropped, not interpolated
    wider = np.pad(images, ((0, 0), (1, 1), (1, 1)), constant_values=0.3)
    np.testing.assert_array_equal(predictor.prepare(wider, 2.0 * (1 + 2e-6), True), images)
    assert not np.array_equal(predictor.prepare(wider, 2.0 * (1 + 2e-3), True), images)


def test_vacuum_level_is_the_rendered_films():
    from heteroagg import ModelParams, sample_aggregate
    from heteroagg.deploy.runtime import vacuum_level
    from heteroagg.stem import render_haadf

    assert vacuum_level({"support": 0.0}) == 0.0 and vacuum_level({}) == 0.0
    agg = sample_aggregate(ModelParams(n_particles=3), seed=1)
    for thickness in (4.0, 10.0):
        image = render_haadf(agg, pixel_size=1.0, shape=128, support=thickness, seed=2)
        assert border_level(image)[0] == pytest.approx(
            vacuum_level({"support": thickness}), rel=0.02
        )


def test_cropped_run_with_an_extra_stem_exports_and_ignores_the_field_outside_its_crop(
    tiny_train, tiny_test, tmp_path
):
    from heteroagg.learn import TrainConfig, train

    config = TrainConfig(epochs=1, batch_size=32, widths=(8, 16), blocks=(1, 1), crop=32,
                         stem_channels=6, stem_layers=2, gaussian=True, val_fraction=0.15,
                         input_transform="linear+log", log_pooling=True, pool_stages=2,
                         seed=4)  # fmt: skip
    train(tiny_train, tmp_path / "run", config, progress=False, device="cpu")
    architecture = TrainedRun(tmp_path / "run", device="cpu").architecture
    assert (architecture["stem_channels"], architecture["stem_layers"]) == (6, 2)
    assert architecture["input_transform"] == "linear+log"
    assert (architecture["log_pooling"], architecture["pool_stages"]) == (True, 2)
    report = export_onnx(tmp_path / "run", tmp_path / "cropped.onnx")
    assert max(report.max_rel_difference.values()) < 1e-4
    predictor = Predictor(tmp_path / "cropped.onnx", providers="cpu")
    images = np.array(open_dataset(tiny_test).images[:3])
    expected = TrainedRun(tmp_path / "run", device="cpu").predict(images)
    got = predictor.predict(images)
    np.testing.assert_allclose(got["frac_w"], expected.params["frac_w"], rtol=1e-4)
    changed = images.copy()
    changed[:, :16] = 0.5  # rows above the centred 32 x 32 square of 64 x 64
    changed[:, :, 48:] = 0.25  # columns to its right
    np.testing.assert_array_equal(predictor.predict(changed)["frac_w"], got["frac_w"])


def test_predictor_errors(exported, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(RuntimeError, match="CUDA"):
            Predictor(exported[0], providers="cuda")
    with pytest.raises(ValueError, match="providers"):
        Predictor(exported[0], providers="gpu")
    with pytest.raises(ValueError, match="does not exist"):
        Predictor(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        Predictor(tmp_path / "junk.onnx")


def test_twins_follow_the_estimate(exported):
    predictor = Predictor(exported[0], providers="cpu")
    space = ParameterSpace.from_config(predictor.metadata["parameter_space"])
    theta = np.full(len(space.varied), 0.5)
    twins, failed = sample_twins(space, theta, None, 3, seed=7)
    assert len(twins) + failed == 3
    for twin in twins:
        assert twin.params == twin_params(space, theta)
    again, _ = sample_twins(space, theta, np.full_like(theta, 0.1), 3, seed=7)
    repeat, _ = sample_twins(space, theta, np.full_like(theta, 0.1), 3, seed=7)
    assert [t.params for t in again] == [t.params for t in repeat]
    assert len({t.params.frac_w for t in again}) == len(again)  # drawn per twin


def test_read_images_in_every_format(tmp_path):
    from PIL import Image

    image = np.linspace(0, 0.05, 64 * 48, dtype=np.float32).reshape(48, 64)
    np.save(tmp_path / "a.npy", image)
    np.testing.assert_array_equal(read_images(tmp_path / "a.npy").images[0], image)
    counts = np.round(image * 60000).astype(np.uint16)
    Image.fromarray(counts).save(tmp_path / "a.png")
    Image.fromarray(counts).save(tmp_path / "a.tif")
    for name in ("a.png", "a.tif"):
        with pytest.raises(ValueError, match="intensity-scale"):
            read_images(tmp_path / name)
        got = read_images(tmp_path / name, intensity_scale=60000).images[0]
        np.testing.assert_allclose(got, counts / 60000, rtol=1e-6)
        for bad in (0.0, math.inf, math.nan, "2"):  # inf would make every pixel 0
            with pytest.raises(ValueError, match="intensity_scale must be positive and finite"):
                read_images(tmp_path / name, intensity_scale=bad)
        for bad in ("2", math.nan):
            with pytest.raises(ValueError, match="black_level must be a"):
                read_images(tmp_path / name, intensity_scale=60000, black_level=bad)
        with pytest.raises(ValueError, match="holds no named datasets"):
            read_images(tmp_path / name, intensity_scale=60000, dataset="HAADF")
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[2, 3] = (200, 10, 10)
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="colour"):
        read_images(tmp_path / "rgb.png", intensity_scale=255)
    # a grey image stored with alpha, as colour or through a palette reads as its grey
    grey = Image.fromarray(np.round(image * 4000).astype(np.uint8))
    for mode in ("LA", "RGB", "RGBA", "P"):
        grey.convert(mode).save(tmp_path / f"{mode}.png")
        got = read_images(tmp_path / f"{mode}.png", intensity_scale=255).images
        np.testing.assert_array_equal(got, np.asarray(grey)[None] / np.float32(255), err_msg=mode)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("meta/scalar", data=np.arange(3.0))
        f.create_dataset("scan/haadf", data=np.stack([image, 2 * image]))
    stack = read_images(tmp_path / "a.h5")
    assert stack.images.shape == (2, 48, 64) and stack.pixel_size_nm is None
    with h5py.File(tmp_path / "a.emd", "w") as f:  # EMD 1.0 layout
        group = f.create_group("data/haadf")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=image)
        group.create_dataset("dim1", data=np.arange(48) * 5.0).attrs["units"] = "Å"
        group.create_dataset("dim2", data=np.arange(64) * 5.0).attrs["units"] = "Å"
    emd = read_images(tmp_path / "a.emd")
    assert emd.pixel_size_nm == pytest.approx(0.5)
    np.testing.assert_array_equal(emd.images[0], image)
    # a trailing axis of one is a channel, in every format, not a stack of 1-pixel images
    np.save(tmp_path / "hwc.npy", image[:, :, None])
    np.testing.assert_array_equal(read_images(tmp_path / "hwc.npy").images, image[None])
    np.save(tmp_path / "rgb.npy", np.stack([image, image + 0.01, image], axis=-1))
    with pytest.raises(ValueError, match="colour"):
        read_images(tmp_path / "rgb.npy")
    # pages of different sizes are named with their file
    pages = [Image.fromarray(counts), Image.fromarray(counts[:20])]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match=r"pages\.tif holds pages of different shapes"):
        read_images(tmp_path / "pages.tif", intensity_scale=60000)
    with pytest.raises(ValueError, match="unknown image format"):
        read_images(tmp_path / "a.jpg")
    (tmp_path / "scans.npy").mkdir()  # a folder, whatever its name
    for folder in (tmp_path, tmp_path / "scans.npy"):
        with pytest.raises(ValueError, match="is a folder; give the image files in it"):
            read_images(folder)


def test_read_images_subtracts_the_black_level(tmp_path):
    rng = np.random.default_rng(5)
    fraction = np.zeros((3, 40, 48))
    fraction[:, 10:30, 12:36] = rng.uniform(0.01, 0.2, (3, 20, 24))  # an object inside vacuum
    black, full = 800.0, 60000.0
    counts = black + fraction * (full - black)
    np.save(tmp_path / "raw.npy", np.round(counts).astype(np.uint16))
    got = read_images(tmp_path / "raw.npy", intensity_scale=full, black_level=black).images
    np.testing.assert_allclose(got, fraction, atol=0.5 / (full - black))  # rounding only
    # each frame with its own black level, recovered from its border
    drift = np.array([700.0, 800.0, 950.0])[:, None, None]
    noisy = rng.normal(drift + fraction * (full - drift), 3.0)
    np.save(tmp_path / "drift.npy", noisy)
    border = read_images(tmp_path / "drift.npy", intensity_scale=full, black_level="border")
    np.testing.assert_allclose(border.images, fraction, atol=3e-4)  # 3 counts of noise: 5e-5
    np.testing.assert_allclose(border_level(noisy), drift.ravel(), atol=1.0)
    # on a support film the border reads the film's level, which is not the detector's
    film = 1.2e-3
    on_film = drift + (film + (1 - film) * fraction) * (full - drift)
    np.save(tmp_path / "film.npy", rng.normal(on_film, 3.0))
    kept = read_images(tmp_path / "film.npy", full, black_level="border", vacuum_level=film)
    np.testing.assert_allclose(kept.images, film + (1 - film) * fraction, atol=3e-4)
    np.testing.assert_allclose(border_level(kept.images), film, atol=1e-5)
    for bad in (-0.1, 1.0, math.nan):
        with pytest.raises(ValueError, match="vacuum_level must be"):
            read_images(tmp_path / "film.npy", full, black_level="border", vacuum_level=bad)
    masked = noisy.copy()
    masked[:, :6] = np.nan  # a mask over the top rows
    np.save(tmp_path / "masked.npy", masked)
    with pytest.raises(ValueError, match="border of image 0 holds values that are not finite"):
        read_images(tmp_path / "masked.npy", intensity_scale=full, black_level="border")
    with pytest.raises(ValueError, match="below the value of the full beam"):
        read_images(tmp_path / "raw.npy", intensity_scale=full, black_level=full)
    with pytest.raises(ValueError, match="'border'"):
        read_images(tmp_path / "raw.npy", intensity_scale=full, black_level="edge")
    with pytest.raises(ValueError, match="larger than 8"):
        border_level(np.zeros((8, 40)))


def test_border_noise_is_the_vacuum_read_noise():
    rng = np.random.default_rng(11)
    sigma = np.array([0.0, 1e-4, 3e-4, 1e-3])[:, None, None]
    vacuum = 0.002 + sigma * rng.standard_normal((4, 96, 96))
    frame = np.ones((96, 96), dtype=bool)
    frame[4:-4, 4:-4] = False
    spread = vacuum[:, frame].std(axis=1)  # the border's sample standard deviation
    np.testing.assert_allclose(border_noise(vacuum), spread, rtol=0.1, atol=1e-12)
    assert border_noise(vacuum)[0] == 0.0
    # an object across one edge and a quarter of two others leaves the estimate alone
    objects = vacuum.copy()
    objects[:, :, :24] += rng.uniform(0.01, 0.2, (4, 96, 24))
    np.testing.assert_allclose(border_noise(objects)[1:], spread[1:], rtol=0.15)
    assert np.std(objects[1][frame]) > 10 * spread[1]  # where the plain deviation fails
    with pytest.raises(ValueError, match="larger than 8"):
        border_noise(np.zeros((8, 40)))


def test_cli_exports_and_predicts_with_twins(tiny_run, tiny_test, tmp_path):
    runner = CliRunner()
    model = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export-onnx", str(tiny_run), str(model)])
    assert result.exit_code == 0, result.output
    assert "onnx.checkerpassed" in flat(result.output)
    images = open_dataset(tiny_test).images[:2]
    np.save(tmp_path / "two.npy", images)
    out = tmp_path / "twins.h5"
    args = ["predict", str(model), str(tmp_path / "two.npy"), "--twins", "3", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "frac_w" in result.output and "HCN" in result.output
    assert "nopixelsizeintwo.npy" in flat(result.output)  # the model's pixel size is assumed
    estimate = Predictor(model, providers="cpu").predict(images)
    with h5py.File(out) as f:
        assert list(f) == ["image-0", "image-1"]
        group = f["image-1"]
        assert group.attrs["frac_w"] == pytest.approx(estimate["frac_w"][1], rel=1e-5)
        table = group["descriptors"]
        assert table.shape[1] == len(table.attrs["names"])
        assert table.shape[0] + group.attrs["failed_twins"] == 3
        twin = group["twin-0"]
        assert twin["centers"].shape == (len(twin["radii"]), 3)
        assert len(twin["radii"]) == twin.attrs["n_particles"]
    # twins conditioned on the HCN head: 12 candidates, 3 kept by weight, all from the pool
    conditioned = tmp_path / "conditioned.h5"
    result = runner.invoke(app, [*args[:-1], str(conditioned), "--twin-candidates", "12"])
    assert result.exit_code == 0, result.output
    with h5py.File(conditioned) as f:
        hcn = list(f["image-0"]["descriptors"].attrs["names"]).index("hetero_coordination_number")
        kept = f["image-0"]["descriptors"][:, hcn]
        assert len(kept) == 3
    space = ParameterSpace.from_config(Predictor(model).metadata["parameter_space"])
    std = estimate.normalized_std[0]
    pool, _ = sample_twins(space, estimate.normalized[0], std, 12, derive_seed(0, 0))
    pool_hcn = {round(t.descriptors().hetero_coordination_number, 9) for t in pool}
    assert {round(v, 9) for v in kept} <= pool_hcn
    few = runner.invoke(app, [*args, "--twin-candidates", "2"])
    assert few.exit_code != 0 and "--twin-candidates" in flat(few.output)
    # heads of other descriptors cannot condition twins: refused, not silently ignored
    real_predict = Predictor.predict

    def other_heads(self, *a, **kw):
        found = real_predict(self, *a, **kw)
        rename = lambda d: {f"{k}_other": v for k, v in d.items()}  # noqa: E731
        return dataclasses.replace(found, descriptors=rename(found.descriptors),
                                   descriptors_std=rename(found.descriptors_std))  # fmt: skip

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Predictor, "predict", other_heads)
        unusable = runner.invoke(app, [*args, "--twin-candidates", "12"])
    assert unusable.exit_code != 0 and "headsoftwindescriptors" in flat(unusable.output)
    flat_heads = runner.invoke(app, [*args, "--twin-candidates", "12", "--twin-head-spread", "0"])
    assert flat_heads.exit_code != 0 and "--twin-head-spread" in flat(flat_heads.output)
    bad = runner.invoke(app, ["predict", str(model), str(tmp_path / "two.npy"), "--twins", "2"])
    assert bad.exit_code != 0 and "--out" in flat(bad.output)
    # outputs that cannot be written are refused before the work, not after it
    nowhere = str(tmp_path / "nodir" / "x")
    for extra in (["--twins", "2", "--out", nowhere + ".h5"], ["--csv", nowhere + ".csv"]):
        lost = runner.invoke(app, [*args[:3], *extra])
        assert lost.exit_code == 2 and "doesnotexist" in flat(lost.output), lost.output
    zero = runner.invoke(app, [*args[:3], "--pixel-size", "0"])
    assert zero.exit_code == 2 and "--pixel-sizemustbeapositive" in flat(zero.output)
    pytest.importorskip("matplotlib")
    figure = tmp_path / "twins.png"
    plotted = runner.invoke(app, [*args, "--plot", str(figure)])
    assert plotted.exit_code == 0 and "plot:" in plotted.output, plotted.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    no_twins = runner.invoke(app, [*args[:3], "--plot", str(figure)])
    assert no_twins.exit_code != 0 and "--twins" in flat(no_twins.output)
    gif = runner.invoke(app, [*args, "--plot", str(tmp_path / "twins.gif")])
    assert gif.exit_code != 0 and "--plot" in flat(gif.output)
    wrong = runner.invoke(app, ["predict", str(model), str(tmp_path / "none.npy")])
    assert wrong.exit_code != 0 and "doesnotexist" in flat(wrong.output)
    holed = np.array(images[:1])
    holed[0, 5, 5] = np.nan  # a dead pixel: the error names the file it is in
    np.save(tmp_path / "holed.npy", holed)
    nan = runner.invoke(app, ["predict", str(model), str(tmp_path / "two.npy"),
                              str(tmp_path / "holed.npy")])  # fmt: skip
    assert nan.exit_code == 2 and "holed.npy:imagescontainNaN" in flat(nan.output), nan.output


def test_cli_predicts_a_digitalmicrograph_file(exported, tiny_test, tmp_path):
    pytest.importorskip("rsciio")
    from microscope_writers import write_dm

    model = exported[0]
    predictor = Predictor(model, providers="cpu")
    image = open_dataset(tiny_test).images[3]
    counts = (image * 1e4).astype(np.float32)  # a scan in detector counts, calibrated in Å
    angstrom = 10.0 * predictor.pixel_size_nm
    write_dm(tmp_path / "scan.dm4", counts, (angstrom, angstrom), ("Å", "Å"))
    runner = CliRunner()
    args = ["predict", str(model), str(tmp_path / "scan.dm4")]
    result = runner.invoke(app, [*args, "--intensity-scale", "1e4"])
    assert result.exit_code == 0, result.output
    assert "nopixelsize" not in flat(result.output)  # the file states it
    expected = predictor.predict(counts / np.float32(1e4))
    assert f"{expected['frac_w'][0]:.4g}" in result.output
    unscaled = runner.invoke(app, args)
    assert unscaled.exit_code != 0 and "intensity-scale" in flat(unscaled.output)
    write_dm(tmp_path / "offset.dm4", counts + 250, (angstrom, angstrom), ("Å", "Å"))
    offset = ["predict", str(model), str(tmp_path / "offset.dm4"), "--intensity-scale", "10250"]
    subtracted = runner.invoke(app, [*offset, "--black-level", "250"])
    assert subtracted.exit_code == 0, subtracted.output
    assert f"{expected['frac_w'][0]:.4g}" in subtracted.output  # (v - 250) / 10000
    assert "theborderof" not in flat(subtracted.output)
    left_in = runner.invoke(app, offset)  # the black level left in: 250 / 10250 of the beam
    assert left_in.exit_code == 0 and "theborderofoffset.dm4(0.024)" in flat(left_in.output)
    assert "readnoise" not in flat(left_in.output)
    noise = np.random.default_rng(2).normal(0.0, 20.0, counts.shape).astype(np.float32)
    write_dm(tmp_path / "noisy.dm4", counts + noise, (angstrom, angstrom), ("Å", "Å"))
    noisy = runner.invoke(app, ["predict", str(model), str(tmp_path / "noisy.dm4"),
                                "--intensity-scale", "1e4"])  # fmt: skip
    assert noisy.exit_code == 0, noisy.output
    warned = re.search(r"theborderofnoisy\.dm4\(([0-9.e-]+)\)hasreadnoise", flat(noisy.output))
    assert warned and float(warned.group(1)) == pytest.approx(2e-3, rel=0.15)  # 20 / 1e4
    # a black level taken off does not take the noise with it
    noisy_args = ["predict", str(model), str(tmp_path / "noisy.dm4"), "--intensity-scale", "1e4"]
    bordered = runner.invoke(app, [*noisy_args, "--black-level", "border"])
    assert bordered.exit_code == 0 and "theborderofnoisy.dm4" in flat(bordered.output)
    # and a wrong black level leaves the rest of it in: (250 - 150) / (10250 - 150) of the beam
    wrong_level = runner.invoke(app, [*offset, "--black-level", "150"])
    assert "theborderofoffset.dm4(0.0099)" in flat(wrong_level.output), wrong_level.output
    bad_level = runner.invoke(app, [*offset, "--black-level", "vacuum"])
    assert bad_level.exit_code != 0 and "--black-level" in flat(bad_level.output)
    write_dm(tmp_path / "coarse.dm4", counts, (2 * angstrom, 2 * angstrom), ("Å", "Å"))
    coarse = runner.invoke(app, ["predict", str(model), str(tmp_path / "coarse.dm4"),
                                 "--intensity-scale", "1e4"])  # fmt: skip
    assert coarse.exit_code != 0 and "--resample" in flat(coarse.output)


def test_cli_writes_the_estimates_as_csv(exported, tiny_test, tmp_path):
    import csv

    model = exported[0]
    images = open_dataset(tiny_test).images[:3]
    np.save(tmp_path / "two.npy", images[:2])
    np.save(tmp_path / "one.npy", images[2])
    table = tmp_path / "theta.csv"
    args = ["predict", str(model), str(tmp_path / "two.npy"), str(tmp_path / "one.npy")]
    result = CliRunner().invoke(app, [*args, "--csv", str(table)])
    assert result.exit_code == 0, result.output
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["two.npy[0]", "two.npy[1]", "one.npy"]
    predictor = Predictor(model, providers="cpu")
    estimate = predictor.predict(images)
    for b, row in enumerate(rows):
        for name in predictor.parameters:
            for column, values in ((name, estimate), (f"{name}_low", estimate.low),
                                   (f"{name}_high", estimate.high)):  # fmt: skip
                assert float(row[column]) == pytest.approx(values[name][b], rel=1e-5)
        hcn = "hetero_coordination_number"
        assert float(row[hcn]) == pytest.approx(estimate.descriptors[hcn][b], rel=1e-5)
        assert float(row[f"{hcn}_std"]) == pytest.approx(estimate.descriptors_std[hcn][b], rel=1e-5)
    wrong = CliRunner().invoke(app, [*args, "--csv", str(tmp_path / "theta.txt")])
    assert wrong.exit_code != 0 and "--csv" in flat(wrong.output)
    # files of one name in two folders keep their paths, so each row says where it came from
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "scan.npy", images[2])
    same = [str(tmp_path / folder / "scan.npy") for folder in ("a", "b")]
    result = CliRunner().invoke(app, ["predict", str(model), *same, "--csv", str(table)])
    assert result.exit_code == 0, result.output
    with table.open(newline="") as f:
        assert [r["image"] for r in csv.DictReader(f)] == same


def test_cli_predict_holds_one_file_of_images_at_a_time(exported, tiny_test, tmp_path, monkeypatch):
    import weakref

    import heteroagg.deploy.images as images_module

    model = exported[0]
    images = open_dataset(tiny_test).images[:3]
    paths = [tmp_path / f"{k}.npy" for k in range(3)]
    for path, image in zip(paths, images, strict=True):
        np.save(path, image)
    read, alive_at_read = [], []
    real_read = images_module.read_images

    def tracked(*args, **kwargs):
        alive_at_read.append(sum(ref() is not None for ref in read))
        f = real_read(*args, **kwargs)
        read.append(weakref.ref(f.images))
        return f

    monkeypatch.setattr(images_module, "read_images", tracked)
    out = tmp_path / "twins.h5"
    args = ["predict", str(model), *map(str, paths), "--twins", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert alive_at_read == [0, 0, 0]  # each file's images are freed before the next is read
    with h5py.File(out) as f:
        assert [f[f"image-{k}"].attrs["source"] for k in range(3)] == list(map(str, paths))
    pytest.importorskip("matplotlib")
    figure = tmp_path / "twins.png"
    plotted = CliRunner().invoke(app, [*args, "--plot", str(figure)])
    assert plotted.exit_code == 0 and figure.exists(), plotted.output


def test_cli_pools_the_images_of_one_sample(exported, tiny_test, tmp_path):
    model = exported[0]
    images = open_dataset(tiny_test).images[:3]
    np.save(tmp_path / "three.npy", images)
    runner = CliRunner()
    out = tmp_path / "sample.h5"
    args = ["predict", str(model), str(tmp_path / "three.npy"), "--twins", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--sample"])
    assert result.exit_code == 0, result.output
    assert "pooledover3images" in flat(result.output) and "sample" in result.output
    predictor = Predictor(model, providers="cpu")
    estimate = predictor.predict(images)
    pool = pool_sample(estimate.normalized, estimate.normalized_std, predictor.parameters)
    space = ParameterSpace.from_config(predictor.metadata["parameter_space"])
    column = list(predictor.parameters).index("frac_w")
    with h5py.File(out) as f:
        assert f.attrs["pooled_images"] == 3
        for b in range(3):
            group = f[f"image-{b}"]
            expected = space.denormalize(np.clip(pool.normalized[b], 0, 1))
            assert group.attrs["frac_w"] == pytest.approx(expected["frac_w"], rel=1e-6)
            assert group.attrs["n_particles"] == pytest.approx(estimate["n_particles"][b], rel=1e-5)
            for j in range(len(group["descriptors"])):  # twins drawn about the pooled θ̂
                twin_frac = group[f"twin-{j}"].attrs["frac_w"]
                low, high = space.priors["frac_w"].low, space.priors["frac_w"].high
                band = 5 * pool.normalized_std[b, column] * (high - low)
                assert abs(twin_frac - expected["frac_w"]) <= band
        fracs = {round(float(f[f"image-{b}"].attrs["frac_w"]), 12) for b in range(3)}
        assert len(fracs) == 1
        # the sample's pooled value and band, where a program reads them
        sd = pool.normalized_std[0, column]
        band = space.denormalize(np.clip(pool.normalized[0] + np.c_[[-sd], [sd]].T, 0, 1))
        sample = f["sample"].attrs
        pooled_frac = float(sample["frac_w"])
        assert pooled_frac == pytest.approx(fracs.pop(), rel=1e-9)
        assert (sample["frac_w_low"], sample["frac_w_high"]) == pytest.approx(band["frac_w"])
        assert "n_particles" not in sample  # each aggregate has its own
    import csv

    table = tmp_path / "sample.csv"
    result = runner.invoke(app, [*args, "--sample", "--csv", str(table)])
    assert result.exit_code == 0, result.output
    with table.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["image"] for r in rows] == ["three.npy[0]", "three.npy[1]", "three.npy[2]",
                                          "sample (pooled over 3 images)"]  # fmt: skip
    assert float(rows[-1]["frac_w"]) == pytest.approx(pooled_frac, rel=1e-6)
    assert float(rows[-1]["frac_w_low"]) == pytest.approx(band["frac_w"][0], rel=1e-6)
    assert float(rows[-1]["frac_w_high"]) == pytest.approx(band["frac_w"][1], rel=1e-6)
    assert rows[-1]["n_particles"] == "" and float(rows[0]["frac_w"]) != pytest.approx(pooled_frac)
    widened = runner.invoke(app, [*args, "--sample", "--shared-error", "0.5"])
    assert widened.exit_code == 0, widened.output
    assert "sharederrorshareof0.5" in flat(widened.output)
    for bad, message in [(["--shared-error", "0.5"], "needs--sample"),
                         (["--sample", "--shared-error", "2"], "[0,1]")]:  # fmt: skip
        result = runner.invoke(app, [*args, *bad])
        assert result.exit_code != 0 and message in flat(result.output)
    alone = tmp_path / "alone.h5"
    result = runner.invoke(app, [*args[:-1], str(alone)])
    assert result.exit_code == 0, result.output
    with h5py.File(alone) as f:
        assert f.attrs["pooled_images"] == 0
        fracs = {round(float(f[f"image-{b}"].attrs["frac_w"]), 12) for b in range(3)}
        assert len(fracs) == 3


def test_evaluation_through_onnx_runtime_matches_pytorch(exported, tiny_run, tiny_test, tmp_path):
    kwargs = dict(twins=2, twin_images=3, progress=False, device="cpu")
    via_torch = evaluate(tiny_run, tiny_test, tmp_path / "torch", **kwargs)
    via_onnx = evaluate(exported[0], tiny_test, tmp_path / "onnx", **kwargs)
    for name, metrics in via_torch["parameters"].items():
        assert via_onnx["parameters"][name]["r2"] == pytest.approx(metrics["r2"], abs=1e-4)
    assert (tmp_path / "onnx" / "report.md").exists()


def test_evaluation_checks_the_device_on_every_path(exported, tiny_run, tiny_test, tmp_path):
    import onnxruntime

    from heteroagg.learn.inference import TrainedRun

    for run in (exported[0], tiny_run, TrainedRun(tiny_run, device="cpu")):
        for device in ("gpu", "CUDA"):
            with pytest.raises(ValueError, match="device must be"):
                evaluate(run, tiny_test, tmp_path / "r", device=device, progress=False)
    with pytest.raises(ValueError, match="already loaded"):
        evaluate(TrainedRun(tiny_run, device="cpu"), tiny_test, tmp_path / "r", device="cpu")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(RuntimeError, match="providers='cuda'"):
            evaluate(exported[0], tiny_test, tmp_path / "r", device="cuda", progress=False)
    assert not (tmp_path / "r").exists()
