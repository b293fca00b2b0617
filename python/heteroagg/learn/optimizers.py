"""Optimisers of a training run: AdamW, or Muon on the convolution filters.

Muon (momentum orthogonalised by Newton-Schulz iterations) replaces each
filter bank's momentum, seen as an (out, in · k · k) matrix, by the nearest
semi-orthogonal matrix, so that every direction of the update moves at the
same rate.  Its updates are scaled to the root-mean-square size of AdamW's
(0.2 · sqrt(max(rows, cols)) times the orthogonal matrix), so one learning
rate and one schedule serve both parts.  The head, the normalisation layers,
the biases and every tensor of fewer than two dimensions stay with AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from heteroagg.learn.config import OPTIMIZERS
from heteroagg.learn.torch_device import fast_bfloat16

#: Coefficients of the quintic Newton-Schulz iteration towards the orthogonal factor.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
#: Update size of Muon relative to AdamW's root mean square, per sqrt(max(rows, cols)).
MUON_RMS_MATCH = 0.2


def orthogonalize(
    matrix: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with the row and column spaces of ``matrix``.

    Quintic Newton-Schulz iterations on the matrix scaled to unit Frobenius
    norm: its singular values are driven into about [0.7, 1.2] while its
    singular vectors are kept.  The result is float32.

    Parameters
    ----------
    matrix
        A 2D tensor.
    steps
        Newton-Schulz iterations.
    dtype
        The arithmetic of the iterations.  By default bfloat16 where it is
        fast (:func:`~heteroagg.learn.torch_device.fast_bfloat16`), which
        halves their time on a CPU with native bfloat16 and costs nothing in
        accuracy at that spread, and float32 elsewhere: emulated, bfloat16
        made a Muon step of the full runs' network 4.2-4.5 times as long on an
        AVX2 CPU (docs/performance.md).
    """
    if matrix.ndim != 2:
        raise ValueError(f"orthogonalize needs a matrix, got shape {tuple(matrix.shape)}")
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    if dtype is None:
        dtype = torch.bfloat16 if fast_bfloat16(x.device) else torch.float32
    x = (x / (x.norm() + 1e-7)).to(dtype)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).float()


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, orthogonalised, on tensors of two or more dimensions.

    Each tensor is seen as a matrix of (its first dimension) rows; its update
    is ``lr · 0.2 · sqrt(max(rows, cols))`` times the orthogonalised
    momentum, which matches the root-mean-square size of AdamW's updates.

    Parameters
    ----------
    params
        Tensors of two or more dimensions (or groups of them).
    lr
        Learning rate, on AdamW's scale.
    weight_decay
        Decoupled weight decay.
    momentum
        Nesterov momentum.
    ns_steps
        Newton-Schulz iterations per update.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.95,
        ns_steps: int = 5,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "ns_steps": ns_steps,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            if any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon updates tensors of two or more dimensions only")

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every tensor with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                matrix = p.grad.lerp(buf, momentum).reshape(p.shape[0], -1)
                update = orthogonalize(matrix, group["ns_steps"])
                p.mul_(1 - lr * group["weight_decay"])
                scale = MUON_RMS_MATCH * math.sqrt(max(matrix.shape))
                p.add_(update.reshape(p.shape).to(p.dtype), alpha=-lr * scale)
        return loss


class OptimizerPair:
    """Two optimisers over disjoint parameters, stepped, zeroed and saved as one.

    ``param_groups`` lists the groups of both, so a learning-rate schedule
    that sets every group's ``lr`` drives both.
    """

    def __init__(self, first: torch.optim.Optimizer, second: torch.optim.Optimizer) -> None:
        self.parts = (first, second)

    @property
    def param_groups(self) -> list[dict]:
        """The groups of both optimisers, the first's first."""
        return [g for part in self.parts for g in part.param_groups]

    def step(self) -> None:
        """One step of both."""
        for part in self.parts:
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of both."""
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Both states, under ``"first"`` and ``"second"``."""
        return {"first": self.parts[0].state_dict(), "second": self.parts[1].state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore both from :meth:`state_dict`."""
        self.parts[0].load_state_dict(state["first"])
        self.parts[1].load_state_dict(state["second"])


def muon_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(filters, rest): the convolution weights Muon updates, and everything else."""
    filters = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            filters.append(module.weight)
    chosen = {id(p) for p in filters}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    return filters, rest


def make_optimizer(
    kind: str, model: nn.Module, lr: float, weight_decay: float
) -> torch.optim.Optimizer | OptimizerPair:
    """The optimiser ``kind`` (one of :data:`OPTIMIZERS`) for ``model``'s parameters."""
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if kind == "muon":
        filters, rest = muon_parameters(model)
        return OptimizerPair(
            Muon(filters, lr=lr, weight_decay=weight_decay),
            torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay),
        )
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {kind!r}")
