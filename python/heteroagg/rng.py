"""Counter-based random numbers (Philox4x32-10).

Every random draw in heteroagg is a pure function of a 64-bit seed, a 64-bit
stream id and a position in the stream; there is no global random state.
Dataset item ``i`` under a root seed uses :func:`derive_seed` ``(root, i)``.
"""

from __future__ import annotations

import numpy as np

from heteroagg import _core
from heteroagg._device import resolve_device


def check_uint64(name: str, value: object) -> int:
    """Return ``value`` as an int if it is an integer in [0, 2**64), else raise.

    Raises
    ------
    ValueError
        Naming ``name`` and the valid range.
    """
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or not 0 <= value < 2**64:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def derive_seed(root_seed: int, index: int) -> int:
    """Seed of item ``index`` under ``root_seed`` (both in [0, 2**64)).

    The map is one Philox4x32-10 block of (root_seed, index): distinct indices
    give statistically independent seeds.
    """
    root_seed = check_uint64("root_seed", root_seed)
    return int(_core.derive_seed(root_seed, check_uint64("index", index)))


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """One raw Philox4x32-10 block (four uint32 words) of a counter and key."""
    return tuple(_core.philox4x32_10(list(counter), list(key)))


def uniform(seed: int, stream: int, n: int, *, device: str = "auto") -> np.ndarray:
    """The first ``n`` doubles in (0, 1) of the stream ``(seed, stream)``.

    These are the numbers the C++ sampler draws from that stream, bit for bit
    on the CPU and on CUDA.

    Parameters
    ----------
    seed, stream
        Integers in [0, 2**64).
    n
        Number of values, >= 0.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`heteroagg.resolve_device`).
    """
    seed, stream = check_uint64("seed", seed), check_uint64("stream", stream)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if resolve_device(device) == "cuda":
        from heteroagg import _cuda  # type: ignore[attr-defined]

        return _cuda.uniform(seed, stream, int(n))
    return _core.uniform(seed, stream, int(n))
