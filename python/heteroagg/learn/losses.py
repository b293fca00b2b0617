"""The training loss of the parameter and descriptor regressors."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from heteroagg.learn.networks import LOG_VARIANCE_RANGE


def regression_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    gaussian: bool,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error, or the Gaussian NLL for a Gaussian head; NaN targets are masked.

    ``weights`` (one per target column) scales each column's terms.  With a
    Gaussian head the weighted NLL still has its minimum at the true variance,
    so the intervals stay calibrated; only the shared layers' effort shifts.
    """
    n = target.shape[1]
    mask = ~torch.isnan(target)
    target = torch.nan_to_num(target)
    mean = output[:, :n]
    if gaussian:
        log_var = output[:, n:].clamp(*LOG_VARIANCE_RANGE)
        per = 0.5 * (log_var + (mean - target) ** 2 * torch.exp(-log_var))
    else:
        per = (mean - target) ** 2
    if weights is not None:
        per = per * weights
    return (per * mask).sum() / mask.sum().clamp(min=1)


def loss_weight_vector(weights: Mapping[str, float], names: list[str]) -> torch.Tensor | None:
    """One loss weight per target column (1 where ``weights`` names none); None if all are 1.

    Raises
    ------
    ValueError
        If ``weights`` names a column the run does not learn.
    """
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"loss_weights names {unknown}, which the run does not learn: {names}")
    if not weights:
        return None
    return torch.tensor([float(weights.get(n, 1.0)) for n in names], dtype=torch.float32)
