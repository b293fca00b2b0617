"""The whole method in one call: data, training, ONNX export, evaluation, twins.

:func:`quickstart` runs on embedded defaults sized to a time budget (20
minutes on a 2-core CPU by default) and leaves ``model.onnx`` and
``report.md`` in its folder.  Needs the ``train`` and ``onnx`` extras.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._numbers import is_real
from heteroagg.data import ParameterSpace, default_config, generate, open_dataset
from heteroagg.model import ModelParams

#: Descriptor heads the quickstart network also regresses.
HEADS = ("hetero_coordination_number", "coordination_number", "radius_of_gyration")
#: Root seeds of the quickstart's training and test sets.
TRAIN_SEED, TEST_SEED = 101, 102
#: Test images that `heteroagg predict`-style twins are shown for.
SHOWCASE_IMAGES = 3


@dataclass
class QuickstartResult:
    """What :func:`quickstart` produced.

    Attributes
    ----------
    folder, model, report
        The output folder, the ONNX model and the markdown report.
    steps
        Step name -> seconds.
    evaluation
        What the error analysis's ``report.json`` holds.
    """

    folder: Path
    model: Path
    report: Path
    steps: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)


def _plan(minutes: float, train_items: int | None) -> tuple[int, float]:
    """Training items and training minutes for a total budget."""
    if not (is_real(minutes) and math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"minutes must be positive, got {minutes!r}")
    train_minutes = max(0.2, 0.7 * minutes - 1.0)
    if train_items is None:
        # about two epochs' worth at the 2-core CPU's ~200 images/s, within 1 000-30 000
        train_items = int(np.clip(200 * 60 * train_minutes / 2.5, 1000, 30000))
    if train_items < 100:
        raise ValueError(f"train_items must be >= 100, got {train_items}")
    return train_items, train_minutes


def quickstart(
    out: str | Path = "heteroagg-quickstart",
    minutes: float = 20.0,
    *,
    train_items: int | None = None,
    test_items: int = 1000,
    twin_images: int = 100,
    workers: int = 2,
    progress: bool = True,
) -> QuickstartResult:
    """Generate data, train, export to ONNX, evaluate through ONNX Runtime and sample twins.

    Parameters
    ----------
    out
        Output folder (created).  A folder holding an interrupted quickstart
        is completed: the datasets, the training run and the twins' checkpoint
        there are resumed, not redone.  One holding a finished quickstart
        (``report.md``) is refused.
    minutes
        Total time budget; about 70 % goes to training.
    train_items, test_items
        Dataset sizes (default training size: sized to the budget).
    twin_images
        Test images whose descriptors are checked through 8 twins each.
    workers
        Processes for data generation and loading.
    progress
        Show progress bars.

    Returns
    -------
    QuickstartResult
    """
    from heteroagg.deploy import Predictor, export_onnx
    from heteroagg.learn import TrainConfig, evaluate, train
    from heteroagg.learn.training import training_images_per_second
    from heteroagg.twins import TWIN_DESCRIPTORS, descriptor_row, sample_twins

    n_train, train_minutes = _plan(minutes, train_items)
    if test_items < 10:
        raise ValueError(f"test_items must be >= 10, got {test_items}")
    if twin_images < 0:
        raise ValueError(f"twin_images must be >= 0, got {twin_images}")
    folder = Path(out)
    if (folder / "report.md").exists():
        raise ValueError(f"{folder} already holds a quickstart; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    result = QuickstartResult(folder, folder / "model.onnx", folder / "report.md")

    def step(name: str, start: float) -> None:
        result.steps[name] = time.perf_counter() - start

    config = default_config()
    t = time.perf_counter()
    # resume=True completes what an interrupted quickstart left, and starts what it did not
    generate(config, n_train, folder / "train", seed=TRAIN_SEED, workers=workers,
             resume=True, progress=progress)  # fmt: skip
    generate(config, test_items, folder / "test", seed=TEST_SEED, workers=workers,
             resume=True, progress=progress)  # fmt: skip
    step("generate", t)

    t = time.perf_counter()
    started = folder / "run" / "run.json"
    if started.exists():  # continue the interrupted run with the settings it started with
        settings = TrainConfig.from_saved(json.loads(started.read_text())["train"])
        epochs = settings.epochs
    else:
        base = TrainConfig(gaussian=True, descriptor_heads=HEADS, workers=workers)
        shape = tuple(config.imaging.shape)
        rate = training_images_per_second(base, shape, len(ModelParams.field_names()) + len(HEADS))
        epochs = max(1, int(0.8 * rate * 60 * train_minutes / (0.95 * n_train)))
        fields = {**base.to_dict(), "epochs": epochs, "max_minutes": train_minutes, "patience": 3}
        settings = TrainConfig.from_dict(fields)
    train(folder / "train", folder / "run", settings, resume=started.exists(), progress=progress)
    step("train", t)

    t = time.perf_counter()
    export_onnx(folder / "run", result.model)
    step("export", t)

    t = time.perf_counter()
    result.evaluation = evaluate(result.model, folder / "test", folder / "evaluation",
                                 twin_images=twin_images, progress=progress)  # fmt: skip
    step("evaluate (ONNX Runtime)", t)

    t = time.perf_counter()
    predictor = Predictor(result.model, providers="cpu")
    test = open_dataset(folder / "test")
    items = [i for i in range(len(test)) if not test.failed[i]][:SHOWCASE_IMAGES]
    estimate = predictor.predict(test.images[items])
    space = ParameterSpace.from_config(predictor.metadata["parameter_space"])
    showcase = []
    for b, i in enumerate(items):
        std = None if estimate.normalized_std is None else estimate.normalized_std[b]
        twins, _ = sample_twins(space, estimate.normalized[b], std, 8, i)
        rows = np.array([descriptor_row(a) for a in twins], dtype=float)
        truth = descriptor_row(test.aggregate(i))
        showcase.append({"item": i, "estimate": {n: float(estimate[n][b]) for n in estimate},
                         "truth": {n: float(test.params[n][i]) for n in predictor.parameters},
                         "twins": rows, "truth_descriptors": truth})  # fmt: skip
    step("predict with twins", t)
    network = _training_summary(folder / "run", epochs)
    _write_report(result, predictor, showcase, TWIN_DESCRIPTORS, n_train, test_items, network)
    return result


def _training_summary(run: Path, planned_epochs: int) -> str:
    """How the run trained: epochs, the arithmetic of its steps and its images/s."""
    dtype = json.loads((run / "run.json").read_text())["training_dtype"]
    with (run / "member-0" / "metrics.csv").open() as f:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(f)]
    speed = f" at {min(rates):.0f}-{max(rates):.0f} images/s" if rates else ""
    return (
        f"{len(rates)} of {planned_epochs} planned epochs, training steps in {dtype}{speed} "
        "(bfloat16 where the CPU computes it natively)"
    )


def _write_report(
    result: QuickstartResult,
    predictor: Any,
    showcase: list[dict[str, Any]],
    names: tuple[str, ...],
    n_train: int,
    n_test: int,
    network: str,
) -> None:
    """``report.md`` (and ``quickstart.json``) from the steps' results."""
    from heteroagg.twins import DESCRIPTOR_LABELS, spread_text

    ev = result.evaluation
    hcn = ev["descriptors"]["hetero_coordination_number"]
    lines = [
        "# heteroagg quickstart",
        "",
        f"- Training set: {n_train} generated items; test set: {n_test} items (other seed).",
        f"- Network: default recipe with a Gaussian head; {network}.",
        f"- Model: `{result.model.name}` (ONNX, {predictor.provider}); full error analysis: "
        "[evaluation/report.md](evaluation/report.md).",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.0f} |" for name, seconds in result.steps.items()],
        "",
        "## Parameters on the test set (through ONNX Runtime)",
        "",
        "| parameter | R² | MAE | bias |",
        "|---|---|---|---|",
        *[
            f"| {n} | {m['r2']:.3f} | {m['mae']:.3g} | {m['bias']:.3g} |"
            for n, m in ev["parameters"].items()
        ],
        "",
        "![predicted against true](evaluation/parameters.png)",
        "",
        "## Descriptors through digital twins",
        "",
        (
            f"Hetero-coordination number through {ev['twins_per_image']} twins: median "
            f"relative error {100 * hcn['twin_mean']['median_abs']:.1f} % (the model's own "
            f"spread, twins at the true θ: {100 * hcn['true_theta_mean']['median_abs']:.1f} %)."
            if "median_abs" in hcn["twin_mean"]
            else "No test image was checked through twins (twin_images = 0)."
        ),
        "",
        "![descriptor errors](evaluation/descriptors.png)",
        "",
        "![example images](evaluation/examples.png)",
        "",
        "## Three test images: estimate and twins",
        "",
    ]
    for case in showcase:
        lines += [
            f"### Test item {case['item']}",
            "",
            "| parameter | estimate | truth |",
            "|---|---|---|",
            *[
                f"| {n} | {case['estimate'][n]:.4g} | {case['truth'][n]:.4g} |"
                for n in predictor.parameters
            ],
            "",
            "| descriptor | twins (mean ± spread) | truth |",
            "|---|---|---|",
        ]
        for j, name in enumerate(names):
            text, truth = spread_text(case["twins"], j), case["truth_descriptors"][j]
            lines.append(f"| {DESCRIPTOR_LABELS[name]} | {text} | {truth:.3g} |")
        lines.append("")
    result.report.write_text("\n".join(lines))
    summary = {"steps": result.steps, "model": str(result.model)}
    (result.folder / "quickstart.json").write_text(json.dumps(summary, indent=2))
