"""The ``device`` argument of the learning calls, for torch."""

from __future__ import annotations

import torch


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
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise RuntimeError(
            "device='cuda' was requested but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})"
        )
    return torch.device("cuda" if available else "cpu")
