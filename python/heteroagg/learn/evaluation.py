"""Error analysis of a trained run on a held-out dataset, down to digital twins.

Three parts (see :func:`evaluate`):

1. per parameter: MAE, RMSE, R², bias and predicted-vs-true plots, next to
   the R² ceiling of an oracle that sees the aggregate in 3D
   (:func:`~heteroagg.learn.ceiling.oracle_r2`);
2. per 3D descriptor, through digital twins: K aggregates sampled at θ̂
   against the true aggregate, next to K aggregates sampled at the true θ
   (the model's own stochastic spread, which no network can beat);
3. failure modes: errors against N, the share of the aggregate outside the
   field of view, and the dose; and each parameter's error in each quarter
   of every parameter's true values (:func:`error_by_quarter`);
4. the R² left when the images' intensity calibration is off
   (:mod:`heteroagg.learn.calibration_sweep`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from heteroagg._atomic import replaced_on_success
from heteroagg._device import check_device_name
from heteroagg._progress import progress_bar
from heteroagg.data.dataset import SyntheticDataset
from heteroagg.data.generation import render_seed
from heteroagg.data.space import ParameterSpace
from heteroagg.data.torch_dataset import draw_dose
from heteroagg.learn.batches import shot_noise
from heteroagg.learn.calibration_sweep import CALIBRATION_IMAGES
from heteroagg.learn.ceiling import oracle_r2, volume_observer_r2
from heteroagg.learn.inference import Prediction, TrainedRun, concatenate_predictions
from heteroagg.rng import derive_seed
from heteroagg.twins import (
    TWIN_DESCRIPTORS,
    check_spread,
    descriptor_row,
    descriptor_samples,
    draw_within_prior,
    head_weights,
    resample,
    twin_params,
)

#: Streams of the evaluation seed: twins and true-θ samples (the dose as in training data).
TWIN_STREAM, REFERENCE_STREAM = 0x7477696E, 0x72656673
#: Stream of the read noise of the calibration sweep.
CALIBRATION_STREAM = 0x63616C69
#: The twin rows a killed evaluation had done, in its report folder.
TWIN_CHECKPOINT = "twins.partial.npz"
#: Per-image true and predicted θ, written next to the report.
PREDICTIONS_FILE = "predictions.npz"
#: The figures a report may hold; a new report into the same folder removes them first.
REPORT_PLOTS = (
    "parameters.png", "descriptors.png", "failure_modes.png", "coverage.png",
    "error_by_quarter.png", "training.png", "examples.png", "calibration.png",
)  # fmt: skip
#: How often :func:`twin_analysis` saves the rows done so far, in seconds.
TWIN_CHECKPOINT_SECONDS = 15.0

#: Nominal levels of the central Gaussian intervals whose coverage the report plots.
COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

#: The fewest usable test items an error analysis takes (the error in each quarter needs four).
MIN_TEST_ITEMS = 4

#: Draws of θ behind the report's oracle ceilings (seed 0; :mod:`heteroagg.learn.ceiling`).
CEILING_DRAWS = 50_000

#: Test images kept in memory: the calibration sweep's (the report shows the first few);
#: the predictions of all others are made a chunk at a time.
KEPT_TEST_IMAGES = CALIBRATION_IMAGES


@dataclass
class Evaluated:
    """Everything a report is drawn from."""

    trained: TrainedRun
    dataset: SyntheticDataset
    test: TestImages
    prediction: Prediction
    true_norm: np.ndarray
    twin: dict[str, Any]


@dataclass
class TestImages:
    """Noisy test images with what is known about them.

    ``images`` holds those of the first ``len(images)`` items (all of them
    unless fewer were asked for); ``doses`` and ``outside`` cover every item.
    """

    items: np.ndarray
    images: np.ndarray
    doses: np.ndarray
    outside: np.ndarray


def field_fraction_outside(dataset: SyntheticDataset, i: int) -> float:
    """Volume share of item ``i``'s particles whose centres fall outside the image.

    The renderer centres the middle of the projected bounding box, so this
    follows from the stored rotation alone.
    """
    agg = dataset.aggregate(i)
    imaging = dataset.index["config"]["imaging"]
    xy = (agg.centers @ dataset.rotations[i].T)[:, :2]
    lo = (xy - agg.radii[:, None]).min(axis=0)
    hi = (xy + agg.radii[:, None]).max(axis=0)
    centre = 0.5 * (lo + hi)
    half = 0.5 * np.array(imaging["shape"][::-1], dtype=float) * imaging["pixel_size"]
    outside = np.any(np.abs(xy - centre) > half, axis=1)
    volume = agg.radii**3
    return float(volume[outside].sum() / volume.sum())


class _TestNoise:
    """How test images are made noisy (see :func:`noisy_test_images`), with the
    dataset's imaging settings read once."""

    def __init__(self, dataset: SyntheticDataset, seed: int, noise: bool) -> None:
        from heteroagg.data.config import ImagingConfig

        self.dataset, self.seed, self.noise = dataset, seed, noise
        self.config = ImagingConfig.from_config(dataset.index["config"]["imaging"])

    def dose(self, i: int) -> float:
        """Item ``i``'s dose (NaN without noise)."""
        if self.config.bake_noise:
            return draw_dose(self.config.dose, render_seed(int(self.dataset.index["seed"]), i))
        return draw_dose(self.config.dose, derive_seed(self.seed, i)) if self.noise else math.nan

    def image(self, i: int) -> tuple[np.ndarray, float]:
        """Item ``i``'s test image and its dose."""
        image, dose = self.dataset.images[i], self.dose(i)
        if self.config.bake_noise or not self.noise:
            return image, dose
        electrons = dose * (self.config.pixel_size * 10.0) ** 2
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, i) >> 1)
        counts = shot_noise(torch.from_numpy(image * electrons).double(), g)
        return (counts / electrons).float().numpy(), dose


def noisy_test_images(
    dataset: SyntheticDataset,
    items: np.ndarray,
    seed: int,
    noise: bool,
    keep: int | None = None,
) -> TestImages:
    """The test images with shot noise at a dose drawn per item from the dose prior.

    A dataset generated with ``bake_noise`` already holds noisy images: they are
    taken as stored, with the doses they were generated at.  Item ``i``'s noise
    depends on ``(seed, i)`` alone.  With ``keep``, only the first ``keep``
    images are kept (a float32 image of 256² takes 262 kB); the doses and
    field fractions cover all items.
    """
    n_kept = len(items) if keep is None else min(keep, len(items))
    made = _TestNoise(dataset, seed, noise)
    images = None
    doses = np.full(len(items), np.nan)
    for k, i in enumerate(items):
        if k < n_kept:
            image, doses[k] = made.image(int(i))
            if images is None:
                images = np.empty((n_kept, *image.shape), dtype=np.float32)
            images[k] = image
        else:  # the dose alone, as the image would draw it
            doses[k] = made.dose(int(i))
    if images is None:
        shape = dataset.index["config"]["imaging"]["shape"]
        images = np.empty((0, *shape), dtype=np.float32)
    outside = np.array([field_fraction_outside(dataset, int(i)) for i in items])
    return TestImages(np.asarray(items), images, doses, outside)


def predict_test_images(
    trained: Any,
    dataset: SyntheticDataset,
    items: np.ndarray,
    seed: int,
    noise: bool,
    symmetrize: bool = False,
    chunk: int = 1024,
) -> Prediction:
    """Predictions for every test item, imaged ``chunk`` at a time as
    :func:`noisy_test_images` images them: memory does not grow with the test set."""
    made, parts = _TestNoise(dataset, seed, noise), []
    for start in range(0, len(items), chunk):
        block = np.stack([made.image(int(i))[0] for i in items[start : start + chunk]])
        if isinstance(trained, TrainedRun):
            parts.append(trained.predict(block, symmetrize=symmetrize))
        else:
            parts.append(trained.predict(block))
    return concatenate_predictions(parts)


def coverage_curve(z: np.ndarray, levels: tuple[float, ...]) -> list[float]:
    """Share of the errors inside each central interval of a Gaussian prediction.

    Parameters
    ----------
    z
        Absolute errors over the predicted standard deviations.
    levels
        Nominal probabilities in (0, 1) of the central intervals, mean ± the
        ``(1 + level) / 2`` quantile of the standard normal times sigma.

    Returns
    -------
    list of float
        The observed share for each level: equal to the level, up to the
        sampling spread, for calibrated uncertainties; below it for
        overconfident ones.
    """
    if any(not 0 < level < 1 for level in levels):
        raise ValueError(f"coverage levels must lie in (0, 1), got {levels}")
    unit = NormalDist()
    z = np.asarray(z, dtype=float)
    return [float(np.mean(z <= unit.inv_cdf(0.5 + 0.5 * level))) for level in levels]


def parameter_metrics(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, bias and R² of one parameter."""
    error = predicted - true
    variance = float(np.var(true))
    r2 = 1.0 - float(np.mean(error**2)) / variance if variance > 0 else math.nan
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "bias": float(np.mean(error)),
        "r2": r2,
    }


def error_by_quarter(
    true: np.ndarray, predicted: np.ndarray, names: list[str] | tuple[str, ...]
) -> dict[str, dict[str, list[float]]]:
    """RMSE of each parameter within each quarter of each parameter's true values.

    Parameters
    ----------
    true, predicted
        (n_items, n_parameters) arrays, normalised so that the errors of all
        parameters share one scale.
    names
        The parameters, in the arrays' column order.

    Returns
    -------
    dict
        ``out[p][q]``: the RMSE of parameter ``p`` in the four groups of
        items ranked by the true value of ``q``, lowest first (groups of
        equal size, give or take one item; ties keep the items' order).
        NaN where ``q`` takes one value on every item: it ranks nothing.
    """
    true, predicted = np.asarray(true, float), np.asarray(predicted, float)
    if true.shape != predicted.shape or true.ndim != 2 or true.shape[1] != len(names):
        raise ValueError(
            f"true {true.shape} and predicted {predicted.shape} must be (n, {len(names)})"
        )
    if true.shape[0] < MIN_TEST_ITEMS:
        raise ValueError(f"need at least 4 items to form quarters, got {true.shape[0]}")
    squared = (predicted - true) ** 2
    groups = {
        q: np.array_split(np.argsort(true[:, j], kind="stable"), 4) for j, q in enumerate(names)
    }
    constant = {q for j, q in enumerate(names) if np.ptp(true[:, j]) == 0}
    return {
        p: {
            q: [
                math.nan if q in constant else float(np.sqrt(squared[g, i].mean()))
                for g in groups[q]
            ]
            for q in names
        }
        for i, p in enumerate(names)
    }


# Imaging settings a test set may differ in from the training set without a warning:
# those checked before (shape, pixel) and where the noise is drawn.
_IMAGING_NOT_COMPARED = ("shape", "pixel_size", "bake_noise")


def imaging_differences(training: dict, test: dict) -> dict[str, dict[str, Any]]:
    """The imaging settings in which a test set differs from the training set.

    Parameters
    ----------
    training, test
        The ``imaging`` tables of the two datasets' configs.

    Returns
    -------
    dict
        ``{setting: {"training": value, "test": value}}`` for every differing
        setting but the image shape, the pixel size and where noise is drawn.
    """
    return {
        key: {"training": training.get(key), "test": test.get(key)}
        for key in sorted(set(training) | set(test))
        if key not in _IMAGING_NOT_COMPARED and training.get(key) != test.get(key)
    }


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(estimate - truth) / truth, NaN where the truth is 0 or undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (estimate - truth) / truth
    return np.where(np.isfinite(out) & (truth != 0), out, np.nan)


_TWIN_ARRAYS = (
    "truth",
    "twin_mean",
    "twin_single",
    "reference_mean",
    "covered_twin",
    "covered_reference",
)


def _twin_key(
    dataset: SyntheticDataset,
    test: TestImages,
    prediction: Prediction,
    k: int,
    seed: int,
    candidates: int = 0,
    head_spread: float = 1.0,
) -> str:
    """What the twin rows depend on: the data, the items, the prediction, K, the seed
    and the candidates and head spread of conditioned twins."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps([str(Path(dataset.path).resolve()), dataset.index.get("seed")]).encode()
    )
    for array in (test.items, prediction.normalized, prediction.normalized_std):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    conditioning = [candidates] + ([] if head_spread == 1.0 else [repr(head_spread)])
    digest.update(json.dumps([k, seed] + (conditioning if candidates else [])).encode())
    if candidates:
        for name in sorted(prediction.descriptors):
            digest.update(np.ascontiguousarray(prediction.descriptors[name]).tobytes())
            digest.update(np.ascontiguousarray(prediction.descriptors_std[name]).tobytes())
    return digest.hexdigest()


def _save_twin_checkpoint(path: Path, key: str, done: int, arrays: dict, state: dict) -> None:
    with replaced_on_success(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=key, done=done, state=json.dumps(state), **arrays)


def _load_twin_checkpoint(path: Path | None, key: str, rows: int) -> dict | None:
    """The saved rows of the same analysis, or None (no file, or another analysis's)."""
    if path is None or not path.exists():
        return None
    try:
        with np.load(path) as saved:
            if str(saved["key"]) != key:
                return None
            out = {name: saved[name] for name in _TWIN_ARRAYS}
            out["done"], out["state"] = int(saved["done"]), json.loads(str(saved["state"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: start over
        return None
    if any(len(out[name]) < rows for name in _TWIN_ARRAYS):
        return None
    return out


def twin_analysis(
    run: TrainedRun,
    dataset: SyntheticDataset,
    test: TestImages,
    prediction: Prediction,
    k: int,
    n_images: int,
    seed: int,
    progress: bool,
    checkpoint: Path | None = None,
    candidates: int = 0,
    head_spread: float = 1.0,
) -> dict[str, Any]:
    """Descriptors of the true aggregates, of K twins at θ̂ and of K samples at the true θ.

    With ``candidates`` M > 0 the twins are conditioned on the run's direct
    descriptor heads: M candidates are drawn at θ̂, weighted by
    :func:`~heteroagg.twins.head_weights`, and their weighted mean is the
    twins' estimate; K of them, resampled by weight, give the single twin
    and the twins' range.  ``head_spread`` multiplies the heads' standard
    deviations in the weights.

    With ``checkpoint``, the rows done so far are saved there every
    :data:`TWIN_CHECKPOINT_SECONDS`, and an analysis of the same data,
    prediction, K and seed picks up where a killed one stopped, with the
    result it would have had uninterrupted.  The file is removed when done.
    """
    space = run.space
    rng_u = np.random.default_rng(derive_seed(seed, TWIN_STREAM))
    chosen = np.arange(min(n_images, len(test.items)))
    d = len(TWIN_DESCRIPTORS)
    # coverage flags are 1 or 0, NaN where undefined (a material the true aggregate lacks)
    arrays = {name: np.full((len(chosen), d), np.nan) for name in _TWIN_ARRAYS}
    row_failures = np.zeros((len(chosen), 2), dtype=np.int64)  # failed twins, references
    heads = [n for n in prediction.descriptors if n in TWIN_DESCRIPTORS] if candidates else []
    check_spread(head_spread, "head_spread")
    if candidates and (not heads or not prediction.descriptors_std):
        raise ValueError(
            "conditioned twins need a run with descriptor heads and an uncertainty "
            "(a Gaussian head or an ensemble)"
        )
    key = _twin_key(dataset, test, prediction, k, seed, candidates, head_spread)
    draws_per_image = candidates or k
    start = 0
    saved = _load_twin_checkpoint(checkpoint, key, len(chosen))
    if saved is not None and "row_failures" in saved["state"]:
        # a resumed analysis of fewer images keeps the rows, and the failures, of those only
        start = min(saved["done"], len(chosen))
        for name in _TWIN_ARRAYS:
            arrays[name][:start] = saved[name][:start]
        saved_failures = np.asarray(saved["state"]["row_failures"], dtype=np.int64).reshape(-1, 2)
        row_failures[:start] = saved_failures[:start]
        rng_u.bit_generator.state = saved["state"]["rng"]
    truth, twin_mean, twin_single = arrays["truth"], arrays["twin_mean"], arrays["twin_single"]
    reference_mean = arrays["reference_mean"]
    covered_twin, covered_reference = arrays["covered_twin"], arrays["covered_reference"]
    last_save = time.monotonic()
    with (
        progress_bar(progress, len(chosen), "digital twins", completed=start) as advance,
        warnings.catch_warnings(),
    ):
        # per-material descriptors are NaN for aggregates without that material
        warnings.simplefilter("ignore", RuntimeWarning)
        for row in range(start, len(chosen)):
            k_img = int(chosen[row])
            i = int(test.items[k_img])
            true_agg = dataset.aggregate(i)
            truth[row] = descriptor_row(true_agg)
            mu = prediction.normalized[k_img]
            twin_seed = derive_seed(derive_seed(seed, TWIN_STREAM), i)
            if prediction.normalized_std is None:
                twins, failed = descriptor_samples(
                    twin_params(space, mu), twin_seed, draws_per_image
                )
            else:  # propagate the predictive uncertainty, within the prior
                uniforms = rng_u.random((draws_per_image, mu.size))
                draws = draw_within_prior(mu, prediction.normalized_std[k_img], uniforms)
                parts = [
                    descriptor_samples(twin_params(space, t), derive_seed(twin_seed, j), 1)
                    for j, t in enumerate(draws)
                ]
                twins = np.concatenate([p[0] for p in parts])
                failed = sum(p[1] for p in parts)
            true_theta = true_agg.params
            reference, failed_ref = descriptor_samples(
                true_theta, derive_seed(derive_seed(seed, REFERENCE_STREAM), i), k
            )
            row_failures[row] = failed, failed_ref
            if len(twins):
                if candidates:  # weigh M candidates by the heads, keep K drawn by weight
                    estimates = {
                        n: (prediction.descriptors[n][k_img], prediction.descriptors_std[n][k_img])
                        for n in heads
                    }
                    weights = head_weights(twins, estimates, head_spread)
                    twin_mean[row] = _weighted_mean(twins, weights)
                    twins = twins[resample(weights, k, derive_seed(twin_seed, draws_per_image))]
                else:
                    twin_mean[row] = np.nanmean(twins, axis=0)
                twin_single[row] = twins[0]
                covered_twin[row] = _covered(truth[row], twins)
            if len(reference):
                reference_mean[row] = np.nanmean(reference, axis=0)
                covered_reference[row] = _covered(truth[row], reference)
            advance()
            if checkpoint is not None and time.monotonic() - last_save >= TWIN_CHECKPOINT_SECONDS:
                state = {
                    "row_failures": row_failures[: row + 1].tolist(),
                    "rng": rng_u.bit_generator.state,
                }
                _save_twin_checkpoint(checkpoint, key, row + 1, arrays, state)
                last_save = time.monotonic()
    if checkpoint is not None:  # kept whole until the caller has written what it found
        state = {"row_failures": row_failures.tolist(), "rng": rng_u.bit_generator.state}
        _save_twin_checkpoint(checkpoint, key, len(chosen), arrays, state)
    totals = row_failures.sum(axis=0)
    failures = {"twins": int(totals[0]), "reference": int(totals[1])}
    return {
        "items": test.items[chosen],
        **arrays,
        "failures": failures,
        "k": k,
        "candidates": candidates,
        "head_spread": head_spread,
    }


def _weighted_mean(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per column, the ``weights``-weighted mean of the finite values (NaN if none)."""
    finite = np.isfinite(rows)
    w = weights[:, None] * finite
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * np.where(finite, rows, 0.0)).sum(axis=0) / total, np.nan)


def _covered(truth: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Per column, 1 where ``truth`` lies within the range of ``draws``, 0 where it lies
    outside, NaN where either is undefined."""
    with warnings.catch_warnings():  # a column without any defined draw
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(draws, 0), np.nanmax(draws, 0)
    inside = ((low <= truth) & (truth <= high)).astype(float)
    return np.where(np.isfinite(truth) & np.isfinite(low), inside, np.nan)


def _share(flags: np.ndarray) -> float | None:
    """Share of 1 among the defined (finite) ``flags``, or None without any."""
    defined = flags[np.isfinite(flags)]
    return float(np.mean(defined)) if defined.size else None


def summarize_relative_errors(errors: np.ndarray) -> dict[str, float]:
    """Median, quartiles and the share within 15 % of relative errors (NaNs dropped)."""
    a = np.abs(errors[np.isfinite(errors)])
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "median_abs": float(np.median(a)),
        "q25_abs": float(np.quantile(a, 0.25)),
        "q75_abs": float(np.quantile(a, 0.75)),
        "q90_abs": float(np.quantile(a, 0.9)),
        "median_signed": float(np.median(errors[np.isfinite(errors)])),
        "within_15pct": float(np.mean(a <= 0.15)),
    }


def evaluate(
    run: str | Path | TrainedRun,
    data: str | Path,
    out: str | Path,
    *,
    twins: int = 8,
    twin_images: int = 200,
    seed: int = 0,
    noise: bool = True,
    device: str = "auto",
    progress: bool = True,
    symmetrize: bool = False,
    twin_candidates: int = 0,
    twin_head_spread: float = 1.0,
    calibration: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained run on a held-out dataset; write ``report.md``,
    ``report.json`` and PNG plots into ``out``.

    Parameters
    ----------
    run
        A run folder, an exported ``.onnx`` model (evaluated through ONNX
        Runtime, as deployed), or a loaded :class:`TrainedRun` or
        :class:`~heteroagg.learn.onnx_run.OnnxRun`.
    data
        A test dataset generated with a different root seed than the
        training set, with the same imaging settings.
    out
        Report folder (created).  The twins are checkpointed there while
        they are sampled (``twins.partial.npz``): evaluating into the same
        folder again, with the same run, data, K and seed, continues a killed
        evaluation where it stopped, with the result it would have had.
    twins
        K: twins sampled from θ̂ per image, and samples from the true θ.
    twin_images
        How many test images get twins (the first ones).
    seed
        Root seed of the test noise, the twins and the reference samples.
    noise
        Apply shot noise at a dose drawn from the dataset's dose prior.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``, where ``run`` is a path (for an
        ONNX model, the onnxruntime provider).  A run already loaded keeps the
        device it was loaded on, and ``device`` must then stay ``"auto"``.
    progress
        Show progress bars.
    symmetrize
        Predict with each member averaged over the image's quarter turns and
        mirrors (:meth:`TrainedRun.predict`).  An ONNX model does so when it
        was exported with ``symmetrize=True``; asking it of one that was not
        raises ``ValueError``.
    twin_candidates
        M > 0 conditions the twins on the run's direct descriptor heads: M
        candidates are drawn at θ̂ per image and weighted by how well their
        descriptors agree with the heads' (:func:`twin_analysis`); 0 (the
        default) samples the K twins at θ̂ alone.  Needs descriptor heads
        and an uncertainty, and M >= K.
    twin_head_spread
        Factor on the heads' predicted standard deviations when they weigh
        the candidates (:func:`~heteroagg.twins.head_weights`): 1 takes them
        at face value; larger values give flatter weights and wider twin
        ranges.  Choose it on a validation set, not the test set
        (``benchmarks/conditioning_spread.py``).
    calibration
        Also predict the first test images with their intensities scaled and
        shifted, as a wrong full-beam value or black level would
        (:func:`~heteroagg.learn.calibration_sweep.calibration_sweep`), and
        report the R² that is left.

    Returns
    -------
    dict
        What ``report.json`` holds.

    Notes
    -----
    ``out`` also receives ``predictions.npz``, one row per test image without
    a failed draw: ``parameters`` (the varied names, the columns), ``item``
    (dataset index), ``dose`` (e/Å², NaN without noise), ``true`` and
    ``predicted`` (physical units), ``predicted_normalized`` and
    ``predicted_normalized_std`` (NaN for a point-estimate model).
    """
    from heteroagg.learn.report import write_report

    if twins < 2:
        raise ValueError(f"twins must be >= 2, got {twins}")
    if twin_images < 0:
        raise ValueError(f"twin_images must be >= 0, got {twin_images}")
    if twin_candidates and twin_candidates < twins:
        raise ValueError(f"twin_candidates must be 0 or >= twins ({twins}), got {twin_candidates}")
    check_spread(twin_head_spread, "twin_head_spread")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder for the report")
    from heteroagg.learn.onnx_run import OnnxRun

    check_device_name(device)
    if isinstance(run, (str, Path)) and Path(run).suffix == ".onnx":
        trained: Any = OnnxRun(run, providers=device)
    elif isinstance(run, (str, Path)):
        trained = TrainedRun(run, device)
    elif device != "auto":
        raise ValueError(
            f"device={device!r} applies to a run given by its path; this "
            f"{type(run).__name__} is already loaded and keeps its own device"
        )
    else:
        trained = run
    dataset = SyntheticDataset(data)
    imaging = dataset.index["config"]["imaging"]
    if tuple(imaging["shape"]) != trained.image_shape or (
        imaging["pixel_size"] != trained.pixel_size_nm
    ):
        raise ValueError(
            f"{data} has images of {imaging['shape']} at {imaging['pixel_size']} nm; "
            f"the run was trained on {list(trained.image_shape)} at "
            f"{trained.pixel_size_nm} nm"
        )
    if dataset.index.get("seed") == trained.info["dataset"].get("seed"):
        raise ValueError(
            f"{data} was generated with the training set's root seed: its items "
            "are training aggregates, not held-out ones"
        )
    differences = imaging_differences(getattr(trained, "training_imaging", None) or {}, imaging)
    if differences:
        warnings.warn(
            f"{data} was imaged otherwise than the training set ({', '.join(differences)}): "
            "the report measures the run outside its training conditions",
            UserWarning,
            stacklevel=2,
        )
    baked = bool(getattr(trained, "symmetrized", False))
    if symmetrize and isinstance(trained, OnnxRun) and not baked:
        raise ValueError(
            f"{trained.path} was exported without symmetrize; export it with "
            "symmetrize=True (heteroagg export-onnx --symmetrize) to evaluate it so"
        )
    items = np.flatnonzero(~dataset.failed[:])
    if len(items) < MIN_TEST_ITEMS:
        raise ValueError(
            f"{data} holds {len(items)} usable test items (of {len(dataset)}); the error "
            f"analysis needs at least {MIN_TEST_ITEMS}"
        )
    test = noisy_test_images(dataset, items, seed, noise, keep=KEPT_TEST_IMAGES)
    prediction = predict_test_images(trained, dataset, items, seed, noise, symmetrize)
    outputs = [prediction.normalized]
    if prediction.normalized_std is not None:
        outputs.append(prediction.normalized_std)
    broken = int(np.sum(~np.all([np.isfinite(o).all(axis=1) for o in outputs], axis=0)))
    if broken:
        raise ValueError(
            f"{trained.path} predicts non-finite θ (or its spread) for {broken} of "
            f"{len(items)} test images: its weights are damaged or its training diverged"
        )
    heads = [n for n in prediction.descriptors if n in TWIN_DESCRIPTORS]
    if twin_candidates and twin_images and (not heads or not prediction.descriptors_std):
        raise ValueError(  # before the oracle draws and the calibration sweep
            "conditioned twins (twin_candidates) need a run with descriptor heads and an "
            "uncertainty (a Gaussian head or an ensemble)"
        )
    true_params = {n: dataset.params[n][:][items] for n in trained.parameters}
    true_norm = trained.space.normalize(true_params)

    # the point estimates, clipped to the prior as the physical values are: every
    # metric of a point estimate reads the same predictions (coverage reads the
    # Gaussian's own mean)
    estimate = np.clip(prediction.normalized, 0.0, 1.0)
    per_parameter = {}
    for k, name in enumerate(trained.parameters):
        metrics = parameter_metrics(true_params[name], prediction.params[name])
        metrics["r2_normalized"] = parameter_metrics(true_norm[:, k], estimate[:, k])["r2"]
        if prediction.normalized_std is not None:
            z = (
                np.abs(prediction.normalized[:, k] - true_norm[:, k])
                / prediction.normalized_std[:, k]
            )
            metrics["coverage_1sigma"] = float(np.mean(z <= 1.0))
            metrics["coverage_2sigma"] = float(np.mean(z <= 2.0))
            metrics["coverage_curve"] = coverage_curve(z, COVERAGE_LEVELS)
        per_parameter[name] = metrics
    space = ParameterSpace.from_config(dataset.index["config"]["params"])
    ceiling = oracle_r2(space, n=CEILING_DRAWS)
    weighing = volume_observer_r2(space, n=CEILING_DRAWS)
    for name, metrics in per_parameter.items():
        for key, observer in (("oracle", ceiling), ("volume_observer", weighing)):
            metrics[f"{key}_r2"] = observer.get(name, {}).get("r2")
            metrics[f"{key}_r2_normalized"] = observer.get(name, {}).get("r2_normalized")

    direct = {}
    for name, values in prediction.descriptors.items():
        true = dataset.descriptors[name][:][items]
        ok = np.isfinite(true)
        direct[name] = {
            **parameter_metrics(true[ok], values[ok]),
            "relative": summarize_relative_errors(relative_error(values[ok], true[ok])),
        }

    sweep = None
    if calibration:
        sweep = _calibration(
            trained, test.images, true_norm, prediction, symmetrize, progress, seed
        )

    out.mkdir(parents=True, exist_ok=True)
    twin = twin_analysis(
        trained,
        dataset,
        test,
        prediction,
        twins,
        twin_images,
        seed,
        progress,
        checkpoint=out / TWIN_CHECKPOINT,
        candidates=twin_candidates,
        head_spread=twin_head_spread,
    )
    per_descriptor = {}
    for j, name in enumerate(TWIN_DESCRIPTORS):
        truth = twin["truth"][:, j]
        per_descriptor[name] = {
            "twin_mean": summarize_relative_errors(relative_error(twin["twin_mean"][:, j], truth)),
            "single_twin": summarize_relative_errors(
                relative_error(twin["twin_single"][:, j], truth)
            ),
            "true_theta_mean": summarize_relative_errors(
                relative_error(twin["reference_mean"][:, j], truth)
            ),
            "coverage_twins": _share(twin["covered_twin"][:, j]),
            "coverage_true_theta": _share(twin["covered_reference"][:, j]),
        }
    report = {
        "run": str(trained.path),
        "data": str(Path(data).resolve()),
        "n_test_images": len(items),
        "n_twin_images": len(twin["items"]),
        "twins_per_image": twins,
        "twin_candidates": twin_candidates,
        "twin_head_spread": twin_head_spread if twin_candidates else None,
        "noise": noise,
        "baked_noise": bool(dataset.index["config"]["imaging"].get("bake_noise", False)),
        "imaging_differences": differences,
        "symmetrized": symmetrize or baked,
        "uncertainty": prediction.normalized_std is not None,
        "coverage_levels": list(COVERAGE_LEVELS),
        "nominal_twin_range_coverage": (twins - 1) / (twins + 1),
        "parameters": per_parameter,
        "descriptors": per_descriptor,
        "direct_descriptor_heads": direct,
        "twin_failures": twin["failures"],
        "error_by_quarter": error_by_quarter(true_norm, estimate, list(trained.parameters)),
        "calibration": sweep,
        "train": trained.info["train"],
        "training_dataset": trained.info["dataset"],
    }
    for stale in ("report.json", "report.md", PREDICTIONS_FILE, *REPORT_PLOTS):  # an earlier
        (out / stale).unlink(missing_ok=True)  # report's, which this one may not replace
    _save_predictions(out / PREDICTIONS_FILE, true_params, test, prediction)
    write_report(out, report, Evaluated(trained, dataset, test, prediction, true_norm, twin))
    (out / TWIN_CHECKPOINT).unlink(missing_ok=True)  # only now: the report is whole
    return report


def _calibration(
    trained: Any,
    images: np.ndarray,
    true_norm: np.ndarray,
    prediction: Prediction,
    symmetrize: bool,
    progress: bool,
    seed: int,
) -> dict[str, Any] | None:
    """The calibration sweep on the first test images (None with fewer than two)."""
    from heteroagg.learn.calibration_sweep import (
        CALIBRATION_OFFSETS,
        CALIBRATION_READ_NOISE,
        CALIBRATION_SCALES,
        calibration_sweep,
    )

    n = min(CALIBRATION_IMAGES, len(images))
    if n < 2:
        return None
    passes = sum(s != 1.0 for s in CALIBRATION_SCALES) + sum(d != 0.0 for d in CALIBRATION_OFFSETS)
    passes += 1 + sum(sigma != 0.0 for sigma in CALIBRATION_READ_NOISE)  # border, read noise
    with progress_bar(progress, passes, "calibration sweep") as advance:

        def predict_normalized(x: np.ndarray) -> np.ndarray:
            if isinstance(trained, TrainedRun):
                result = trained.predict(x, symmetrize=symmetrize).normalized
            else:
                result = trained.predict(x).normalized
            advance()
            return np.clip(result, 0.0, 1.0)  # the point estimates, as the report's R²

        return calibration_sweep(
            predict_normalized,
            images[:n],
            true_norm[:n],
            list(trained.parameters),
            np.clip(prediction.normalized[:n], 0.0, 1.0),
            seed=derive_seed(seed, CALIBRATION_STREAM),
            vacuum_level=trained.vacuum_level,
        )


def _save_predictions(
    path: Path, true_params: dict[str, np.ndarray], test: TestImages, prediction: Prediction
) -> None:
    """Write every test image's true and predicted θ (see :func:`evaluate`)."""
    columns = list(true_params)
    true = np.stack([true_params[n] for n in columns], axis=1)
    predicted = np.stack([prediction.params[n] for n in columns], axis=1)
    std = prediction.normalized_std
    with replaced_on_success(path) as tmp:
        np.savez(
            tmp,
            parameters=np.array(columns),
            item=test.items,
            dose=test.doses,
            true=true,
            predicted=predicted,
            predicted_normalized=prediction.normalized,
            predicted_normalized_std=np.full_like(prediction.normalized, np.nan)
            if std is None
            else std,
        )
