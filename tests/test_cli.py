import json
from importlib import resources

import numpy as np
import pytest
from typer.testing import CliRunner

import heteroagg
from heteroagg import Aggregate, ModelParams
from heteroagg.cli import app

runner = CliRunner()


def test_info_reports_version_and_cuda():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert heteroagg.__version__ in result.output
    assert "CUDA" in result.output


def test_info_says_which_arithmetic_cpu_training_uses(monkeypatch):
    torch = pytest.importorskip("torch")
    from heteroagg.learn import torch_device

    for native, steps in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch_device, "native_bfloat16", lambda dev, n=native: n)
        result = runner.invoke(app, ["info"], terminal_width=200)
        assert result.exit_code == 0, result.output
        line = next(row for row in result.output.splitlines() if row.startswith(" torch"))
        assert torch.__version__ in line and f"CPU training steps in {steps}" in line


def test_sample_writes_the_aggregate_it_reports(tmp_path):
    out = tmp_path / "agg.npz"
    result = runner.invoke(
        app,
        ["sample", "--n-particles", "40", "--seed", "7", "--segregation", "0.5", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    agg = Aggregate.load(out)
    expected = heteroagg.sample_aggregate(ModelParams(n_particles=40, segregation=0.5), 7)
    np.testing.assert_array_equal(agg.centers, expected.centers)
    assert "hetero_coordination_number" in result.output
    assert f"{expected.descriptors().n_contacts}" in result.output


def test_sample_plot(tmp_path):
    png = tmp_path / "agg.png"
    result = runner.invoke(app, ["sample", "--n-particles", "30", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_rejects_bad_parameters_with_a_clear_message():
    result = runner.invoke(app, ["sample", "--fractal-dim", "3.5"])
    assert result.exit_code == 2
    assert "fractal_dim" in result.output


def test_sample_reports_output_errors(tmp_path):
    result = runner.invoke(app, ["sample", "--out", str(tmp_path / "agg.txt")])
    assert result.exit_code == 2
    assert ".npz or .json" in result.output
    result = runner.invoke(app, ["sample", "--out", str(tmp_path / "missing" / "agg.npz")])
    assert result.exit_code == 2
    assert "error" in result.output


def test_validate_abtem_prints_the_agreement(tmp_path):
    import pytest

    pytest.importorskip("abtem")
    figure = tmp_path / "validate.png"
    result = runner.invoke(
        app,
        ["validate", "abtem", "--case", "rutile-slab", "--threads", "1", "--plot", str(figure)],
    )
    assert result.exit_code == 0, result.output
    assert "rutile-slab" in result.output and "NCC" in result.output
    row = next(line for line in result.output.splitlines() if "rutile-slab" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[0] == "rutile-slab" and float(cells[1]) >= 0.999
    assert figure.stat().st_size > 10_000


def test_validate_abtem_rejects_unknown_cases():
    result = runner.invoke(app, ["validate", "abtem", "--case", "graphene"])
    assert result.exit_code != 0


def test_calibrate_writes_luts_and_resumes(tmp_path):
    from heteroagg.stem import HaadfLUT

    args = ["calibrate", "TiO2", "--out", str(tmp_path), "--thickness-max", "0.4",
            "--orientations", "2", "--positions", "1", "--outer", "120"]  # fmt: skip
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "luts.png")])
    assert result.exit_code == 0, result.output
    lut = HaadfLUT.load(tmp_path / "TiO2.npz")
    assert lut.orientations == 2 and lut.thickness_max == 0.4
    assert lut.inputs["detector"]["outer_mrad"] == 120.0
    assert (tmp_path / "luts.png").stat().st_size > 0
    assert not (tmp_path / "TiO2.checkpoint.npz").exists()
    # an interrupted run leaves its checkpoint; the next run picks it up
    from heteroagg.stem.calibration import _save_checkpoint

    _save_checkpoint(tmp_path / "TiO2.checkpoint.npz", lut.inputs, [lut.samples[0]])
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(HaadfLUT.load(tmp_path / "TiO2.npz").samples, lut.samples)


def test_calibrate_keeps_finished_luts_and_checks_every_material_first(tmp_path, monkeypatch):
    import heteroagg.stem.multislice
    from heteroagg.stem import HaadfLUT
    from heteroagg.stem.calibration import _save_checkpoint

    args = ["calibrate", "TiO2", "C", "--out", str(tmp_path), "--thickness-max", "0.4",
            "--orientations", "2", "--positions", "1", "--outer", "120"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    made = {m: HaadfLUT.load(tmp_path / f"{m}.npz") for m in ("TiO2", "C")}

    def no_multislice(*args, **kwargs):
        raise AssertionError("a multislice ran")

    monkeypatch.setattr(heteroagg.stem.multislice, "haadf_multislice", no_multislice)
    # the same command again: both LUTs are kept, nothing is recomputed
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("kept") == 2
    for m, lut in made.items():
        np.testing.assert_array_equal(HaadfLUT.load(tmp_path / f"{m}.npz").samples, lut.samples)
    # an option that the second material cannot take fails before the first one starts
    late = runner.invoke(app, [*args[:-6], "--orientations", "2", "--positions", "9"])
    assert late.exit_code == 2 and "9 x 9 probe positions" in " ".join(late.output.split())
    # a checkpoint holding more orientations than a run uses is kept for later
    monkeypatch.undo()
    checkpoint = tmp_path / "C.checkpoint.npz"
    rows = [made["C"].samples[0], made["C"].samples[1], made["C"].samples[0]]
    _save_checkpoint(checkpoint, {**made["C"].inputs, "orientations": 3}, rows)
    (tmp_path / "C.npz").unlink()
    assert runner.invoke(app, [args[0], *args[2:]]).exit_code == 0
    assert checkpoint.exists()
    np.testing.assert_array_equal(HaadfLUT.load(tmp_path / "C.npz").samples, made["C"].samples)


def test_calibrate_refuses_what_it_cannot_finish_before_any_multislice(tmp_path, monkeypatch):
    import heteroagg.stem.multislice

    def no_multislice(*args, **kwargs):
        raise AssertionError("a multislice ran")

    monkeypatch.setattr(heteroagg.stem.multislice, "haadf_multislice", no_multislice)
    # the second material's slab exceeds the memory: refused before the first starts
    big = runner.invoke(app, ["calibrate", "C", "WO3", "--out", str(tmp_path / "a"),
                              "--thickness-max", "45"])  # fmt: skip
    assert big.exit_code == 2 and "above memory_limit" in " ".join(big.output.split())
    assert not (tmp_path / "a" / "C.npz").exists()
    # given more memory, it starts
    more = runner.invoke(app, ["calibrate", "WO3", "--out", str(tmp_path / "a"),
                               "--thickness-max", "45", "--memory-gb", "6"])  # fmt: skip
    assert isinstance(more.exception, AssertionError), more.output
    (tmp_path / "file").write_text("")
    for out, message in ((tmp_path / "file" / "luts", "cannot be made"),
                         (tmp_path / "file", "is a file")):  # fmt: skip
        result = runner.invoke(app, ["calibrate", "C", "--out", str(out)])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), out
    bad = runner.invoke(app, ["calibrate", "C", "--memory-gb", "-1"])
    assert bad.exit_code == 2 and "--memory-gb must be a positive number" in bad.output


def test_calibrate_rejects_unknown_materials():
    result = runner.invoke(app, ["calibrate", "Au"])
    assert result.exit_code != 0
    assert "unknown material" in result.output


def test_render_writes_the_image_render_haadf_gives(tmp_path):
    from heteroagg.stem import render_haadf

    agg = heteroagg.sample_aggregate(ModelParams(n_particles=20), 3)
    path = agg.save(tmp_path / "agg.npz")
    args = ["render", str(path), "--pixel-size", "0.6", "--shape", "96", "--seed", "4"]
    result = runner.invoke(app, [*args, "--dose", "500", "--out", str(tmp_path / "img.npy")])
    assert result.exit_code == 0, result.output
    expected = render_haadf(agg, pixel_size=0.6, shape=96, seed=4, dose=500.0)
    np.testing.assert_array_equal(np.load(tmp_path / "img.npy"), expected)
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "img.png")]).exit_code == 0
    assert (tmp_path / "img.png").stat().st_size > 0
    # the file is the one named, whatever the suffix's case
    for name in ("IMG.NPY", "IMG.PNG"):
        named = [*args, "--dose", "500", "--out", str(tmp_path / name)]
        assert runner.invoke(app, named).exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "IMG.NPY"), expected)
    assert (tmp_path / "IMG.PNG").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.NPY.npy")) and not list(tmp_path.glob("*.part*"))
    small_args = [*args[:2], "--pixel-size", "0.05", "--out", str(tmp_path / "s.npy")]
    small = runner.invoke(app, small_args)
    assert small.exit_code == 0 and "field of view" in small.output
    bad = runner.invoke(app, [*args, "--dose", "-1", "--out", str(tmp_path / "b.npy")])
    assert bad.exit_code == 2 and "dose" in bad.output


def test_generate_writes_a_dataset_and_resumes(tmp_path):
    from heteroagg.data.dataset import open_dataset

    config = tmp_path / "cfg.toml"
    text = (resources.files("heteroagg.data") / "default.toml").read_text()
    config.write_text(text.replace("shape = [256, 256]", "shape = [48, 48]"))
    args = ["generate", "--config", str(config), "--n", "12", "--out", str(tmp_path / "ds"),
            "--shard-size", "5", "--seed", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "images/s" in result.output and "kB per image" in result.output
    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == 12 and ds.images[:].shape == (12, 48, 48)
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "resume" in again.output
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0 and "0 computed" in resumed.output
    (tmp_path / "ds" / "shard-00001.h5").unlink()
    on_dask = runner.invoke(app, [*args, "--resume", "--dask-local", "--workers", "2"])
    assert on_dask.exit_code == 0 and "5 computed" in on_dask.output
    assert "failed items in this run" in " ".join(on_dask.output.split())  # not the dataset's
    assert "failed items in this run" not in " ".join(result.output.split())
    np.testing.assert_array_equal(open_dataset(tmp_path / "ds").images[:], ds.images[:])
    pytest.importorskip("rsciio.hspy")
    export_args = ["export", str(tmp_path / "ds"), "--format", "hspy", "--items", "2:7"]
    exported = runner.invoke(app, [*export_args, "--out", str(tmp_path / "sub.hspy")])
    assert exported.exit_code == 0, exported.output
    from heteroagg.deploy.images import read_images

    back = read_images(tmp_path / "sub.hspy")  # what `heteroagg predict` reads
    np.testing.assert_array_equal(back.images, ds.images[2:7])
    assert back.pixel_size_nm == pytest.approx(ds.index["config"]["imaging"]["pixel_size"])
    bad = runner.invoke(app, ["export", str(tmp_path / "ds"), "--format", "tif", "--out", "x"])
    assert bad.exit_code == 2 and "format" in bad.output


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    from heteroagg.data import generation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generation, "generate", interrupted)
    result = runner.invoke(app, ["generate", "--n", "4", "--out", str(tmp_path / "ds")])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "--resume" in result.output
    # evaluate and quickstart pick up where they stopped when run again: they say so
    import heteroagg.learn
    import heteroagg.quickstart

    monkeypatch.setattr(heteroagg.learn, "evaluate", interrupted)
    monkeypatch.setattr(heteroagg.quickstart, "quickstart", interrupted)
    for args in (["evaluate", "--model", "m", "--data", "d", "--out", str(tmp_path / "r")],
                 ["quickstart", "--out", str(tmp_path / "q")]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 130, result.output
        assert "interrupted" in result.output and "same command again" in result.output


def test_train_and_evaluate_from_the_shell(tiny_train, tiny_test, tmp_path):

    config = tmp_path / "run.toml"
    config.write_text(
        "[train]\nbatch_size = 32\nwidths = [8, 16]\nblocks = [1, 1]\nval_fraction = 0.15\n"
        "crop = 32\n"
    )
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(tiny_train),
        "--out",
        str(run),
        "--config",
        str(config),
        "--epochs",
        "2",
        "--seed",
        "4",
        "--device",
        "cpu",
        "--label-maps",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "last epoch" in result.output
    info = json.loads((run / "run.json").read_text())
    assert info["train"]["epochs"] == 2 and info["train"]["seed"] == 4
    assert info["train"]["widths"] == [8, 16] and len(info["train"]["label_maps"]) == 4
    assert info["train"]["crop"] == 32  # kept: the label maps are cut with the image
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "not empty" in " ".join(again.output.split())
    report = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(run),
            "--data",
            str(tiny_test),
            "--out",
            str(report),
            "--twins",
            "2",
            "--twin-images",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((report / "report.json").read_text())
    r2 = saved["parameters"]["n_particles"]["r2"]
    assert f"{r2:.3f}" in result.output
    assert (report / "report.md").exists()
    with np.load(report / "predictions.npz") as rows:
        assert rows["predicted"].shape == (saved["n_test_images"], len(saved["parameters"]))
    assert str(report / "predictions.npz") in result.output
    quick = [
        "evaluate", "--model", str(run), "--data", str(tiny_test), "--out",
        str(tmp_path / "quick"), "--twins", "2", "--twin-images", "0",
    ]  # fmt: skip
    result = runner.invoke(app, quick)
    assert result.exit_code == 0, result.output
    assert "HCN through twins: not computed" in result.output
    flat_heads = runner.invoke(app, [*quick, "--twin-head-spread", "0"])
    assert flat_heads.exit_code != 0
    assert "twin_head_spread must be finite and > 0" in " ".join(flat_heads.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "--plot", "pic.txt"], "--plot must end in one of"),
        (["sample", "--plot", "pic"], "--plot must end in one of"),
        (["sample", "--out", "{tmp}/nowhere/a.npz"], "does not exist"),
        (["render", "{tmp}/agg.npz", "--out", "{tmp}/nowhere/x.npy"], "does not exist"),
        (["calibrate", "--plot", "luts.txt", "--out", "{tmp}/luts"], "--plot must end in one of"),
        (["calibrate", "--plot", "{tmp}/nowhere/l.png", "--out", "{tmp}/luts"], "does not exist"),
        (["calibrate", "--out", "{tmp}/agg.npz"], "is a file"),
        (["calibrate", "--plot", "{tmp}/dir.png", "--out", "{tmp}/luts"], "is a folder"),
        (["render", "{tmp}/agg.npz", "--out", "{tmp}/dir.png"], "is a folder"),
        (
            ["generate", "--config", "{tmp}/bare.toml", "--out", "{tmp}/d", "--n", "2"],
            "a [params] table",
        ),
        (["quickstart", "--out", "{tmp}/qs", "--twin-images", "-1"], "twin_images must be >= 0"),
    ],
)
def test_bad_outputs_are_refused_before_the_work(tmp_path, args, message):
    Aggregate([[0, 0, 0], [2, 0, 0]], [1.0, 1.0], [0, 1]).save(tmp_path / "agg.npz")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "bare.toml").write_text("[imaging]\nshape = [64, 64]\n")
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "qs").exists() and not (tmp_path / "luts").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "-5"], "positive size"),
        (["--window", "nan"], "positive size"),
        (["--threads", "-3"], "threads must be >= 0"),
        (["--plot", "x.txt"], "--plot must end in one of"),
    ],
)
def test_validate_checks_its_options_before_simulating(args, message):
    pytest.importorskip("abtem")
    result = runner.invoke(app, ["validate", "abtem", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--n", "2", "--out", "{tmp}/d", "--scheduler", "tcp://x:1", "--dask-local"],
         "not both"),
        (["train", "--data", "{tmp}/d", "--out", "{tmp}/r", "--items-per-epoch", "100"],
         "are for --on-the-fly runs"),
        (["train", "--data", "{tmp}/d", "--out", "{tmp}/r", "--data-seed", "3"],
         "are for --on-the-fly runs"),
        (["predict", "{tmp}/m.onnx", "{tmp}/a.npy", "--twin-candidates", "8"], "needs --twins"),
        (["predict", "{tmp}/m.onnx", "{tmp}/a.npy", "--twin-head-spread", "2"],
         "needs --twin-candidates"),
        (["predict", "{tmp}/m.onnx", "{tmp}/a.npy", "--dataset", "HAADF"], "a.npy holds one"),
        # outputs that would overwrite an input, or one another, or be misread
        (["predict", "{tmp}/m.onnx", "{tmp}/a.npy", "--twins", "1", "--out", "{tmp}/t.csv"],
         "must end in .h5 or .hdf5"),
        (["predict", "{tmp}/m.onnx", "{tmp}/s.h5", "--twins", "1", "--out", "{tmp}/s.h5"],
         "is one of the input images"),
        (["predict", "{tmp}/m.onnx", "{tmp}/a.npy", "--csv", "{tmp}/a.npy"], "must end in .csv"),
        (["predict", "{tmp}/m.onnx", "{tmp}/a.npy", "--pixel-size", "-1"],
         "--pixel-size must be a positive number"),
    ],
)  # fmt: skip
def test_options_that_would_do_nothing_are_refused(tmp_path, args, message):
    (tmp_path / "m.onnx").write_bytes(b"")
    np.save(tmp_path / "a.npy", np.zeros((8, 8), np.float32))
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


def test_progress_rates_read_at_any_speed():
    from heteroagg._progress import rate_text

    assert rate_text(None) == "-/s" and rate_text(0.0) == "-/s"
    assert rate_text(1234.4) == "1,234/s"
    assert rate_text(2.5) == "2.5/s"
    assert rate_text(0.4) == "2.5 s/step"  # a calibration's orientations read 0/s before
    assert rate_text(1 / 600) == "10 min/step"


@pytest.mark.parametrize(("twin_images", "message"), [
    (8, "every twin image's true HCN is 0, or its twins could not be built"),
    (0, "not computed (no twin images)"),
])  # fmt: skip
def test_evaluate_says_why_the_hcn_has_no_relative_error(
    tmp_path, monkeypatch, twin_images, message
):
    pytest.importorskip("torch")
    import heteroagg.learn

    def report_without_hcn_errors(*args, **kwargs):
        # a test set of pure TiO2: twins ran, but every true HCN is 0
        hcn = {"twin_mean": {"n": 0}, "true_theta_mean": {"n": 0}}
        return {
            "parameters": {"n_particles": {"r2": 0.9, "mae": 1.0, "bias": 0.0}},
            "n_test_images": 8,
            "n_twin_images": twin_images,
            "descriptors": {"hetero_coordination_number": hcn},
        }

    monkeypatch.setattr(heteroagg.learn, "evaluate", report_without_hcn_errors)
    args = ["evaluate", "--model", "m", "--data", "d", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert message in " ".join(result.output.split())
