"""Device selection shared by every call that has a GPU path."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

Device = Literal["auto", "cpu", "cuda"]


@cache
def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA extension was compiled in and a device is visible.

    Returns
    -------
    (available, reason)
        ``available`` is True when ``heteroagg._cuda`` imports and reports at
        least one device; ``reason`` explains the answer in words.
    """
    try:
        from heteroagg import _cuda  # type: ignore[attr-defined]
    except ImportError:
        return False, "heteroagg was built without CUDA (no CUDA compiler at build time)"
    count, message = _cuda.device_count()
    if count < 1:
        return False, f"CUDA is compiled in but no device is visible ({message})"
    return True, f"{count} CUDA device(s) visible"


def check_device_name(device: object) -> None:
    """Raise ValueError unless ``device`` is ``"auto"``, ``"cpu"`` or ``"cuda"``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def resolve_device(device: str) -> Literal["cpu", "cuda"]:
    """Map a ``device`` argument to the backend that will run.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        For any other value.
    RuntimeError
        For ``"cuda"`` when no CUDA device can be used; only ``"auto"`` falls
        back to the CPU.
    """
    check_device_name(device)
    if device == "cpu":
        return "cpu"
    available, reason = cuda_status()
    if device == "cuda" and not available:
        raise RuntimeError(f"device='cuda' was requested but {reason}")
    return "cuda" if available else "cpu"


def _cufft_wheel_paths() -> list[str]:
    """cuFFT libraries shipped in ``nvidia-*`` wheels (PyTorch and CuPy bring them)."""
    import glob
    import importlib.util
    import os

    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found: list[str] = []
    for root in spec.submodule_search_locations:
        found += sorted(glob.glob(os.path.join(root, "**", "libcufft.so*"), recursive=True))
    return found


def cuda_fft_extension(device: str) -> Any:
    """The CUDA extension with cuFFT loaded, or None where ``"auto"`` falls back to the CPU.

    Parameters
    ----------
    device
        The caller's ``device`` argument, already known to resolve to CUDA.

    Raises
    ------
    RuntimeError
        For an explicit ``"cuda"`` when cuFFT cannot be loaded.
    """
    from heteroagg import _cuda  # type: ignore[attr-defined]

    try:
        _cuda.load_cufft(_cufft_wheel_paths())
    except RuntimeError:
        if device == "cuda":
            raise
        return None
    return _cuda
