"""The scripts of benchmarks/ that device sessions run end to end, on tiny sizes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [None, "muon_stem.toml"])
def test_train_at_scale_runs_to_its_summary(tmp_path, recipe):
    config = [] if recipe is None else ["--config", str(BENCHMARKS / "configs" / recipe)]
    command = [sys.executable, str(BENCHMARKS / "train_at_scale.py"), *config,
               "--items", "120", "--test-items", "20", "--minutes", "0.1", "--device", "cpu",
               "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert summary["items"] == 120 and summary["epochs"] >= 2
    assert set(summary["r2"]) >= {"n_particles", "frac_w", "radius_ti", "radius_w"}


def test_spread_coverage_leaves_out_images_whose_draws_all_failed(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import numpy as np

    from conditioning_spread import _coverage

    assert _coverage(np.array([1.0, np.nan, 0.0, 1.0])) == pytest.approx(2 / 3)
    assert np.isnan(_coverage(np.array([np.nan])))


def test_sample_level_refuses_too_few_samples_before_any_work():
    command = [sys.executable, str(BENCHMARKS / "sample_level.py"), "--run", "nowhere",
               "--data", "nowhere", "--groups", "2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--groups must be >= 4" in done.stderr
