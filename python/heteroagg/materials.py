"""Material codes shared by the sampler, the descriptors and the atomistic structures.

Particles carry a ``uint8`` material code: ``0`` is TiO2 and ``1`` is WO3.
"""

from __future__ import annotations

from heteroagg._numbers import is_count

TIO2: int = 0
WO3: int = 1

#: Display names indexed by material code.
MATERIAL_NAMES: tuple[str, str] = ("TiO2", "WO3")


def material_code(name: str | int) -> int:
    """Return the material code for a name such as ``"TiO2"`` or a code.

    Parameters
    ----------
    name
        ``"TiO2"``/``"WO3"`` (case-insensitive) or the code ``0``/``1``.

    Raises
    ------
    ValueError
        If the name or code is unknown.
    """
    if is_count(name):
        if name in (TIO2, WO3):
            return int(name)
        raise ValueError(f"material code must be 0 (TiO2) or 1 (WO3), got {name}")
    lowered = str(name).lower()
    for code, known in enumerate(MATERIAL_NAMES):
        if lowered == known.lower():
            return code
    raise ValueError(f"unknown material {name!r}; expected one of {MATERIAL_NAMES}")
