"""Export a trained run to a self-describing ONNX model (needs torch and onnx).

The exported graph takes images ``(batch, H, W)`` in fractions of the
incident beam and returns θ̂ in physical units: the input standardisation,
the ensemble average, the predictive variance and the mapping from the
normalised parameter space back to physical values are all inside it.  The
model's metadata holds what a consumer needs (see :data:`METADATA_KEYS`).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import heteroagg
from heteroagg._atomic import replaced_on_success
from heteroagg.learn.inference import TrainedRun
from heteroagg.learn.networks import LOG_VARIANCE_RANGE
from heteroagg.learn.symmetry import symmetric_outputs
from heteroagg.model import PARAM_UNITS

#: ONNX opset of exported models.
OPSET = 18
#: Name of the graph's input.
INPUT_NAME = "images"
#: Variance bounds of the Gaussian heads' log-variance, as TrainedRun.predict clips it.
#: Metadata keys written into every exported model.
METADATA_KEYS = (
    "heteroagg_version",
    "format_version",
    "parameters",
    "fixed_parameters",
    "units",
    "descriptors",
    "outputs",
    "input_shape",
    "pixel_size_nm",
    "imaging",
    "parameter_space",
    "dataset",
    "train",
    "uncertainty",
    "symmetrized",
)
FORMAT_VERSION = 1


class DeployedRegressor(nn.Module):
    """A run's networks with their post-processing, as one graph.

    Outputs, in order: ``theta`` (B, P) physical values of the varied
    parameters; ``theta_normalized`` (B, P) the unclipped mean in [0, 1]
    space; then, for runs with an uncertainty, ``theta_normalized_std``,
    ``theta_low`` and ``theta_high`` (the one-sigma band in physical units);
    then, for runs with descriptor heads, ``descriptors`` (B, D) and, with
    an uncertainty, ``descriptors_std``.
    """

    def __init__(self, run: TrainedRun, symmetrize: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList([m.cpu().eval() for m in run.models])
        self.symmetrize = symmetrize
        self.n_params = len(run.parameters)
        self.n_outputs = self.n_params + len(run.descriptor_heads)
        self.gaussian = bool(run.architecture["gaussian"])
        self.uncertainty = run.has_uncertainty
        self.has_descriptors = bool(run.descriptor_heads)
        priors = [run.space.priors[name] for name in run.parameters]
        self.register_buffer("low", torch.tensor([p.low for p in priors], dtype=torch.float32))
        self.register_buffer("span", torch.tensor([p.high - p.low for p in priors],
                                                  dtype=torch.float32))  # fmt: skip
        log_ratio = [math.log(p.high / p.low) if p.kind == "log-uniform" else 0.0 for p in priors]
        self.register_buffer("log_ratio", torch.tensor(log_ratio, dtype=torch.float32))
        self.register_buffer("is_log", torch.tensor([p.kind == "log-uniform" for p in priors]))
        stats = run.info["descriptor_stats"]
        self.register_buffer("descriptor_mean", torch.tensor(
            [stats[d][0] for d in run.descriptor_heads], dtype=torch.float32))  # fmt: skip
        self.register_buffer("descriptor_scale", torch.tensor(
            [stats[d][1] for d in run.descriptor_heads], dtype=torch.float32))  # fmt: skip

    def physical(self, normalized: torch.Tensor) -> torch.Tensor:
        """Varied parameters in physical units from [0, 1] values (clipped)."""
        u = torch.clamp(normalized, 0.0, 1.0)
        logarithmic = self.low * torch.exp(u * self.log_ratio)
        return torch.where(self.is_log, logarithmic, self.low + u * self.span)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.unsqueeze(1)
        n, p = self.n_outputs, self.n_params
        outs = torch.stack(  # (M, B, n[, x2])
            [symmetric_outputs(m, x, n) if self.symmetrize else m(x) for m in self.members]
        )
        means = outs[..., :n]
        mean = means.mean(dim=0)
        result = [self.physical(mean[:, :p]), mean[:, :p]]
        std = None
        if self.uncertainty:
            variance = means.var(dim=0, unbiased=False) if len(self.members) > 1 else 0 * mean
            if self.gaussian:
                log_var = torch.clamp(outs[..., n:], *LOG_VARIANCE_RANGE)
                variance = variance + torch.exp(log_var).mean(dim=0)
            std = torch.sqrt(variance)
            result += [
                std[:, :p],
                self.physical(mean[:, :p] - std[:, :p]),
                self.physical(mean[:, :p] + std[:, :p]),
            ]
        if self.has_descriptors:
            result.append(mean[:, p:] * self.descriptor_scale + self.descriptor_mean)
            if std is not None:
                result.append(std[:, p:] * self.descriptor_scale)
        return tuple(result)

    def output_names(self) -> list[str]:
        names = ["theta", "theta_normalized"]
        if self.uncertainty:
            names += ["theta_normalized_std", "theta_low", "theta_high"]
        if self.has_descriptors:
            names += ["descriptors"] + (["descriptors_std"] if self.uncertainty else [])
        return names


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how well ONNX Runtime matches PyTorch.

    Attributes
    ----------
    path
        The ONNX file.
    outputs
        The graph's output names.
    max_abs_difference
        Batch size -> largest |PyTorch - ONNX Runtime| over all outputs.
    max_rel_difference
        Batch size -> the same relative to each output's largest magnitude.
    """

    path: Path
    outputs: list[str]
    max_abs_difference: dict[int, float]
    max_rel_difference: dict[int, float]


def _metadata(run: TrainedRun, outputs: list[str], symmetrized: bool) -> dict[str, str]:
    fixed = {
        name: float(prior.low)
        for name, prior in run.space.priors.items()
        if name not in run.parameters
    }
    values: dict[str, Any] = {
        "heteroagg_version": heteroagg.__version__,
        "format_version": FORMAT_VERSION,
        "parameters": list(run.parameters),
        "fixed_parameters": fixed,
        "units": PARAM_UNITS,
        "descriptors": list(run.descriptor_heads),
        "outputs": outputs,
        "input_shape": list(run.image_shape),
        "pixel_size_nm": run.pixel_size_nm,
        "imaging": run.info["dataset_config"]["imaging"],
        "parameter_space": run.info["dataset_config"]["params"],
        "dataset": run.info["dataset"],
        "train": run.info["train"],
        "uncertainty": run.has_uncertainty,
        "symmetrized": symmetrized,
    }
    return {key: json.dumps(values[key]) for key in METADATA_KEYS}


def parity_images(shape: tuple[int, int], batch: int, seed: int = 0) -> np.ndarray:
    """Test images for the parity check: particles as bright discs on a dark field."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    images = np.zeros((batch, *shape), dtype=np.float32)
    for b in range(batch):
        for _ in range(20):
            cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(2, 8)
            inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r
            images[b][inside] += rng.uniform(0.005, 0.05)
        images[b] += rng.poisson(20.0, shape) / 2e4
    return images


def export_onnx(
    run: str | Path | TrainedRun, path: str | Path, *, check: bool = True, symmetrize: bool = False
) -> ExportReport:
    """Export a trained run to ONNX, verify it, and check PyTorch-vs-ONNX Runtime parity.

    Parameters
    ----------
    run
        A run folder from :func:`heteroagg.learn.train`, or a loaded run.
    path
        The ``.onnx`` file to write.
    check
        Run ``onnx.checker`` and compare ONNX Runtime with PyTorch at batch
        sizes 1 and 8 (needs onnxruntime).
    symmetrize
        Average every member over the image's quarter turns and mirrors inside
        the graph (:meth:`~heteroagg.learn.TrainedRun.predict` with
        ``symmetrize=True``): eight times the work per image, a smaller error.

    Returns
    -------
    ExportReport

    Raises
    ------
    ValueError
        When the run cannot be loaded, or ONNX Runtime disagrees with PyTorch
        by more than 1e-4 of an output's magnitude.
    """
    import onnx

    trained = run if isinstance(run, TrainedRun) else TrainedRun(run, device="cpu")
    model = DeployedRegressor(trained, symmetrize).eval()
    names = model.output_names()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(parity_images(trained.image_shape, 2))
    batch = torch.export.Dim("batch", min=1)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it lists every optional op library it lacks
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    proto = program.model_proto
    for key, value in _metadata(trained, names, symmetrize).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "heteroagg: model parameters of a hetero-aggregate from one HAADF-STEM image"
    report = ExportReport(path, names, {}, {})
    # the model replaces an earlier file at ``path`` only once it has passed its checks
    with replaced_on_success(path) as written:
        onnx.save(proto, str(written))
        if check:
            _check_against_torch(written, trained, model, report)
    return report


def _check_against_torch(path: Path, trained: Any, model: Any, report: ExportReport) -> None:
    """onnx.checker, and ONNX Runtime's outputs against PyTorch's, into ``report``."""
    import onnx
    import onnxruntime

    onnx.checker.check_model(str(path), full_check=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (1, 8):
        images = parity_images(trained.image_shape, size, seed=size)
        with torch.no_grad():
            expected = [t.numpy() for t in model(torch.from_numpy(images))]
        got = session.run(None, {INPUT_NAME: images})
        abs_diff = max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got, strict=True))
        rel_diff = max(
            float(np.max(np.abs(e - g)) / max(float(np.max(np.abs(e))), 1e-12))
            for e, g in zip(expected, got, strict=True)
        )
        report.max_abs_difference[size] = abs_diff
        report.max_rel_difference[size] = rel_diff
        if rel_diff > 1e-4:
            raise ValueError(
                f"ONNX Runtime differs from PyTorch by {rel_diff:.2e} (relative) at batch {size}"
            )
