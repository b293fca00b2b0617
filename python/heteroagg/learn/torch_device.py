"""The ``device`` and ``precision`` arguments of the learning calls, for torch."""

from __future__ import annotations

import functools
import warnings

import torch

from heteroagg._device import check_device_name
from heteroagg.learn.config import PRECISIONS


def torch_device(device: str) -> torch.device:
    """``"auto"`` (CUDA when torch sees a GPU), ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        For any other value.
    RuntimeError
        For ``"cuda"`` when torch sees no CUDA device; only ``"auto"`` falls
        back to the CPU.
    """
    check_device_name(device)
    if device == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise RuntimeError(
            "device='cuda' was requested but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})"
        )
    return torch.device("cuda" if available else "cpu")


def native_bfloat16(dev: torch.device) -> bool:
    """Whether ``dev`` is a CPU that computes bfloat16 convolutions natively
    (AVX-512 BF16 or AMX; oneDNN's own check).  False for any other device."""
    return dev.type == "cpu" and _cpu_computes_bfloat16()


@functools.cache
def _cpu_computes_bfloat16() -> bool:
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def fast_bfloat16(dev: torch.device) -> bool:
    """Whether bfloat16 arithmetic on ``dev`` is at least as fast as float32:
    a CPU with :func:`native_bfloat16`, or a GPU that supports bfloat16.

    Elsewhere (a CPU with AVX2 alone, say) bfloat16 is emulated: on a 2-core
    AVX2 machine a training step of the full runs' network took about 11 times as
    long with bfloat16 autocast as in float32 (docs/performance.md).
    """
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return native_bfloat16(dev)


def training_dtype(precision: str, dev: torch.device) -> torch.dtype | None:
    """The autocast type of training forward passes on ``dev``, or None for float32.

    ``"bfloat16"`` always autocasts, and warns on a CPU where it is emulated
    (about eleven times slower there); ``"auto"`` only where
    :func:`native_bfloat16` holds, on a CPU.
    On a GPU ``"auto"`` stays in float32: cuDNN already runs float32
    convolutions on the tensor cores (TF32), and on an H100 the default
    network trained 7-13 % faster in float32 than with bfloat16 autocast.

    Raises
    ------
    ValueError
        For a ``precision`` not in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16":
        if dev.type == "cpu" and not native_bfloat16(dev):
            warnings.warn(
                "precision='bfloat16' on a CPU without native bfloat16 (AVX-512 BF16 or AMX): "
                "it is emulated and a training step takes several times as long as in "
                "float32; precision='auto' chooses the faster arithmetic",
                stacklevel=1,
            )
        return torch.bfloat16
    if precision == "auto" and native_bfloat16(dev):
        return torch.bfloat16
    return None


def forward_autocast(dtype: torch.dtype | None, dev: torch.device) -> torch.autocast:
    """Autocast to ``dtype`` on ``dev`` (from :func:`training_dtype`); for None, a
    context that changes nothing."""
    return torch.autocast(dev.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
