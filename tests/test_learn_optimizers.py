"""heteroagg.learn.optimizers: Muon's orthogonalisation and update, and the optimiser pair."""

import copy
import math

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from heteroagg.learn import TrainConfig
from heteroagg.learn.networks import ParameterRegressor
from heteroagg.learn.optimizers import (
    MUON_RMS_MATCH,
    Muon,
    OptimizerPair,
    make_optimizer,
    orthogonalize,
)


def polar_factor(matrix: torch.Tensor) -> torch.Tensor:
    """U V^T of the singular value decomposition, in float64."""
    u, _, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return u @ vh


def spread_matrix(rows: int, cols: int, seed: int) -> torch.Tensor:
    """A random matrix whose singular values span four decades."""
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=g, dtype=torch.float64))
    s = torch.logspace(-3, 1, k, dtype=torch.float64)
    return (u * s) @ v.T


@pytest.mark.parametrize("shape", [(16, 144), (144, 16), (32, 32)])
def test_orthogonalize_keeps_the_singular_vectors_and_evens_out_the_values(shape):
    matrix = spread_matrix(*shape, seed=sum(shape))
    out = orthogonalize(matrix.float())
    assert out.dtype == torch.float32 and out.shape == shape
    values = torch.linalg.svdvals(out.double())
    # all but the smallest singular values (under 1e-2 of the largest, which the
    # five iterations leave partly raised) land in the band around 1
    strong = values[: int(0.5 * len(values))]
    assert strong.min() > 0.6 and values.max() < 1.3
    # the singular vectors are those of the input: in the input's singular
    # bases, out is positive on the diagonal and the strong directions do not
    # mix with any other (bfloat16 blurs the weakest among themselves)
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    inner = u.T @ out.double() @ vh.T
    assert (torch.diagonal(inner) > -0.05).all()
    h = len(strong)
    off = inner - torch.diag(torch.diagonal(inner))
    assert (off[:h].norm() + off[:, :h].norm()) / torch.diagonal(inner)[:h].norm() < 0.05
    with pytest.raises(ValueError, match="matrix"):
        orthogonalize(torch.zeros(2, 3, 4))


def newton_schulz_float64(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The same quintic iteration written out in float64, on the wide orientation."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_orthogonalize_iterates_in_bfloat16_only_where_it_is_fast(monkeypatch):
    from heteroagg.learn import optimizers

    matrix = spread_matrix(24, 72, seed=5).float()
    exact = newton_schulz_float64(matrix)

    def error(out):
        return float((out.double() - exact).norm() / exact.norm())

    assert error(orthogonalize(matrix, dtype=torch.float32)) < 1e-5
    assert error(orthogonalize(matrix, dtype=torch.bfloat16)) > 1e-3
    # by default the arithmetic follows the device: float32 where bfloat16 is emulated
    for fast in (True, False):
        monkeypatch.setattr(optimizers, "fast_bfloat16", lambda dev, f=fast: f)
        want = torch.bfloat16 if fast else torch.float32
        assert torch.equal(orthogonalize(matrix), orthogonalize(matrix, dtype=want))


def test_muon_step_is_the_scaled_polar_factor_of_its_nesterov_momentum():
    g = torch.Generator().manual_seed(3)
    p = torch.nn.Parameter(torch.randn(8, 4, 3, 3, generator=g))
    p0 = p.detach().clone()
    lr, decay, momentum = 0.01, 0.1, 0.9
    opt = Muon([p], lr=lr, weight_decay=decay, momentum=momentum)
    grads = [torch.randn(p.shape, generator=g) for _ in range(2)]
    expected = p0.clone()
    buf = torch.zeros_like(p0)
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
        buf = momentum * buf + (1 - momentum) * grad
        direction = (1 - momentum) * grad + momentum * buf
        step = polar_factor(direction.reshape(8, -1)).reshape(p.shape).float()
        expected = expected * (1 - lr * decay) - lr * MUON_RMS_MATCH * math.sqrt(36) * step
    # the Newton-Schulz factor differs from the exact polar factor by up to ~30 %
    # per singular value; the step's direction and size must still be that one
    moved, wanted = (p.detach() - p0).flatten(), (expected - p0).flatten()
    cosine = float(moved @ wanted / (moved.norm() * wanted.norm()))
    assert cosine > 0.95
    assert 0.8 < float(moved.norm() / wanted.norm()) < 1.2
    with pytest.raises(ValueError, match="two or more"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_muon_pair_takes_the_filters_and_leaves_the_rest_to_adamw():
    torch.manual_seed(0)
    config = TrainConfig(widths=(8, 16), blocks=(1, 1), stem_channels=4, gaussian=True)
    model = ParameterRegressor(3, config.architecture)
    opt = make_optimizer("muon", model, lr=1e-3, weight_decay=1e-4)
    assert isinstance(opt, OptimizerPair)
    muon, adamw = opt.parts
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    filters = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Conv2d)}
    assert {id(p) for p in muon.param_groups[0]["params"]} == filters
    rest = {id(p) for p in adamw.param_groups[0]["params"]}
    assert not rest & filters
    assert rest | filters == {id(p) for p in model.parameters()}
    for group in opt.param_groups:
        group["lr"] = 5e-4
    assert muon.param_groups[0]["lr"] == adamw.param_groups[0]["lr"] == 5e-4
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("sgd", model, 1e-3, 0.0)


def test_optimizer_pair_saves_and_restores_both_states():
    def stepped(model, opt, seed, steps):
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            x = torch.rand(4, 1, 16, 16, generator=g)
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()

    torch.manual_seed(1)
    arch = TrainConfig(widths=(8, 16), blocks=(1, 1)).architecture
    a = ParameterRegressor(2, arch)
    opt_a = make_optimizer("muon", a, 1e-2, 1e-4)
    stepped(a, opt_a, 0, 3)
    b = ParameterRegressor(2, arch)
    b.load_state_dict(a.state_dict())
    opt_b = make_optimizer("muon", b, 1e-2, 1e-4)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as if read from disk
    stepped(a, opt_a, 1, 2)
    stepped(b, opt_b, 1, 2)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=name)
