"""`heteroagg quickstart` end to end, on a small budget."""

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner

from heteroagg.cli import app
from heteroagg.deploy import Predictor


@pytest.mark.slow
def test_quickstart_leaves_a_model_and_a_report(tmp_path, monkeypatch):
    import heteroagg.deploy
    from heteroagg.quickstart import quickstart

    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--minutes", "1", "--train-items", "300",
            "--test-items", "40", "--twin-images", "3"]  # fmt: skip

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    # a first attempt killed after training: the rerun into the same folder completes it
    with monkeypatch.context() as patch:
        patch.setattr(heteroagg.deploy, "export_onnx", interrupt)
        with pytest.raises(KeyboardInterrupt):
            quickstart(out, 1, train_items=300, test_items=40, twin_images=3, progress=False)
    trained = (out / "run" / "member-0" / "metrics.csv").read_text()
    assert not (out / "report.md").exists()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "run" / "member-0" / "metrics.csv").read_text() == trained  # not trained again
    flat = "".join(result.output.split())  # rich wraps long lines
    assert "throughONNXRuntime" in flat and str(out / "report.md") in flat
    report = (out / "report.md").read_text()
    for section in ("Parameters on the test set", "digital twins", "Test item"):
        assert section in report
    # the report says how the run trained, as its run.json and metrics.csv record it
    info = json.loads((out / "run" / "run.json").read_text())
    dtype, planned = info["training_dtype"], info["train"]["epochs"]
    with (out / "run" / "member-0" / "metrics.csv").open() as f:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(f)]
    speed = f"at {min(rates):.0f}-{max(rates):.0f} images/s"
    assert f"{len(rates)} of {planned} planned epochs, training steps in {dtype} {speed}" in report
    for plot in ("parameters.png", "descriptors.png", "examples.png"):
        assert (out / "evaluation" / plot).stat().st_size > 0
    evaluation = json.loads((out / "evaluation" / "report.json").read_text())
    assert evaluation["n_test_images"] > 30 and evaluation["run"].endswith("model.onnx")
    predictor = Predictor(out / "model.onnx", providers="cpu")
    assert np.isfinite(predictor.predict(np.zeros((256, 256)))["frac_w"]).all()
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "alreadyholdsaquickstart" in "".join(again.output.split())


def test_quickstart_rejects_bad_budgets(tmp_path):
    for bad in (["--minutes", "0"], ["--minutes", "1", "--train-items", "5"]):
        result = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path / "x"), *bad])
        assert result.exit_code != 0 and "mustbe" in "".join(result.output.split())
