"""Predictions averaged over the symmetries of the image (test-time augmentation)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heteroagg.data import SyntheticDataset  # noqa: E402
from heteroagg.learn import TrainedRun, evaluate  # noqa: E402
from heteroagg.learn.symmetry import apply_symmetry, symmetry_elements  # noqa: E402


def numpy_symmetry(x: np.ndarray, k: int) -> np.ndarray:
    """Element k written independently with numpy: k % 4 quarter turns, then a mirror."""
    y = np.rot90(x, k % 4, axes=(-2, -1))
    return np.ascontiguousarray(y[..., ::-1] if k >= 4 else y)


def test_elements_match_numpy_and_form_the_group():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5)
    images = {apply_symmetry(x, k).numpy().tobytes() for k in range(8)}
    assert len(images) == 8  # eight distinct images of a generic square
    for k in range(8):
        np.testing.assert_array_equal(apply_symmetry(x, k).numpy(), numpy_symmetry(x.numpy(), k))
    assert symmetry_elements((3, 5, 5)) == tuple(range(8))
    assert symmetry_elements((3, 4, 6)) == (0, 2, 4, 6)  # these keep a rectangle's shape
    rect = torch.zeros(1, 4, 6)
    assert all(apply_symmetry(rect, k).shape == rect.shape for k in (0, 2, 4, 6))


@pytest.fixture(scope="module")
def run_and_images(tiny_run, tiny_test):
    run = TrainedRun(tiny_run, device="cpu")
    dataset = SyntheticDataset(tiny_test)
    images = np.stack([dataset.images[i] for i in range(12) if not dataset.failed[i]])
    return run, images


def test_symmetrized_prediction_is_the_mean_over_transformed_images(run_and_images):
    run, images = run_and_images
    n = len(run.parameters) + len(run.descriptor_heads)
    symmetric = run.raw_outputs(images, symmetrize=True)
    copies = np.stack([run.raw_outputs(numpy_symmetry(images, k)) for k in range(8)])
    np.testing.assert_allclose(symmetric[..., :n], copies[..., :n].mean(axis=0), atol=1e-5)
    variance = np.exp(copies[..., n:]).mean(axis=0)  # a Gaussian head: the mean variance
    np.testing.assert_allclose(np.exp(symmetric[..., n:]), variance, rtol=1e-4)


def test_symmetrized_prediction_is_invariant(run_and_images):
    run, images = run_and_images
    reference = run.predict(images, symmetrize=True)
    plain = run.predict(images)
    for k in (1, 2, 5, 7):
        turned = run.predict(numpy_symmetry(images, k), symmetrize=True)
        np.testing.assert_allclose(turned.normalized, reference.normalized, atol=1e-5)
        assert not np.allclose(run.predict(numpy_symmetry(images, k)).normalized, plain.normalized)


def test_onnx_export_carries_the_symmetrization(run_and_images, tiny_run, tiny_test, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from heteroagg.deploy import Predictor, export_onnx

    run, images = run_and_images
    export_onnx(tiny_run, tmp_path / "plain.onnx")
    export_onnx(tiny_run, tmp_path / "sym.onnx", symmetrize=True)
    plain, sym = Predictor(tmp_path / "plain.onnx"), Predictor(tmp_path / "sym.onnx")
    assert (plain.symmetrized, sym.symmetrized) == (False, True)
    expected = run.predict(images, symmetrize=True)
    np.testing.assert_allclose(sym.predict(images).normalized, expected.normalized, atol=1e-5)
    with pytest.raises(ValueError, match="symmetrize"):
        evaluate(tmp_path / "plain.onnx", tiny_test, tmp_path / "r", twins=2, twin_images=0,
                 progress=False, symmetrize=True)  # fmt: skip
    report = evaluate(tmp_path / "sym.onnx", tiny_test, tmp_path / "r2", twins=2, twin_images=0,
                      progress=False)  # fmt: skip
    assert report["symmetrized"] is True
    # without twin images there is no coverage to report (and no mean of nothing)
    hcn = report["descriptors"]["hetero_coordination_number"]
    assert hcn["coverage_twins"] is None and hcn["twin_mean"] == {"n": 0}
    saved = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert saved["symmetrized"] is True
    assert "quarter turns and mirrors" in (tmp_path / "r2" / "report.md").read_text()
