"""Independent-atom electrostatic potentials from parametrised electron scattering factors.

Two parametrisations are available, evaluated in the compiled core:

``"lobato"``
    I. Lobato and D. Van Dyck, Acta Cryst. A 70 (2014) 636-649, five terms
    ``a (2 + b k²) / (1 + b k²)²`` per element.
``"kirkland"``
    E. J. Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed. (2010),
    Appendix C, three Lorentzians ``a / (k² + b)`` and three Gaussians ``c exp(-d k²)``.

Both tables cover H to Lr (Z = 1..103) with the same numbers as abTEM 1.0.11.

Units and conventions
---------------------
Spatial frequencies ``k`` are in 1/Å **without** a factor 2π (``k = 1/d``, as returned by
``numpy.fft.fftfreq(n, d=sampling)``); this is the argument of the published fits and of
abTEM's ``scattering_factor(k**2)``. Radii ``r`` are in Å. The scattering factor is in Å, the
potential in V, the infinitely projected potential in V·Å and its 2D Fourier transform in
V·Å³. With ``C = h² / (2π m_e e) = 2π a₀² E_h / e ≈ 47.8776 V·Å²`` (CODATA 2014, the constant
abTEM calls ``1 / kappa``; :data:`POTENTIAL_PREFACTOR`)::

    V(r)   = C ∫ f_e(q) exp(2πi q·r) d³q
    V_z(r) = ∫ V dz = ∫ F(k) exp(2πi k·r) d²k,    F(k) = C f_e(k)

so that the projected potential of atoms at positions ``r_j`` in a periodic cell of area ``A``
is ``(1/A) Σ_k F(|k|) Σ_j exp(-2πi k·r_j) exp(2πi k·r)`` summed over the reciprocal lattice.

abTEM 1.0.11's infinite projection
----------------------------------
What ``abtem.Potential(atoms, projection="infinite")`` computes, read from its sources
(``abtem/potentials/iam.py``, ``abtem/integrals.py``, ``abtem/slicing.py``, ``abtem/atoms.py``,
``abtem/parametrizations/``); the tests rebuild its arrays from our ``F`` to 6e-8 of the
maximum (3e-16 with its own ``F``, see the last point):

* Atoms (``periodic=True``) are wrapped into the cell with ``np.mod`` and coordinates within
  1e-10 Å of 0 or of the cell length are set to 0 (``atoms._wrap_and_snap_atoms``); no
  in-plane images are added. ``slicing.SliceIndexedAtoms`` puts each atom, whole, into the one
  slice ``k`` with ``edge_k - 1e-12 <= z < edge_{k+1} - 1e-12`` (``edge`` = cumulative slice
  thicknesses, ``np.digitize``).
* For each slice and each element, ``ScatteringFactorProjectionIntegrals.integrate_on_grid``
  converts ``x/dx, y/dy`` to pixel units and deposits unit weights bilinearly
  (``superpose_deltas``): with ``i = floor(x/dx)``, ``u = x/dx - i`` (likewise ``j``, ``v``),
  pixel ``(i, j)`` gets ``(1-u)(1-v)``, ``(i+1, j)`` ``u(1-v)``, ``(i, j+1)`` ``(1-u)v`` and
  ``(i+1, j+1)`` ``uv``, indices modulo the grid. Array axis 0 is x, axis 1 is y; pixel
  ``(i, j)`` sits at ``(i dx, j dy)`` (no half-pixel offset).
* That array goes through an unnormalised forward ``fft2`` (``exp(-2πi…)``), is multiplied by
  ``F(k) = f_e(k) / kappa`` on the ``fftfreq(n, dx)`` grid (``projected_scattering_factor``
  of the parametrisation; ``1/kappa`` = :data:`POTENTIAL_PREFACTOR`, from ``ase.units``
  CODATA 2014) and divided by ``integrals.sinc``: ``dx·dy·sin(q)/q`` with
  ``q = sqrt((kx dx)² + (ky dy)²)``, the frequency in cycles per pixel (not ``π q``; radial,
  not a product of 1D factors; ``dx·dy`` at ``q = 0``, ``sin(q)/q`` falls to 0.918 at the
  Nyquist corner). Then ``ifft2`` (normalised by ``1/(nx ny)``), real part; the elements'
  arrays are summed.
* Nothing else: no radial cutoff, no band limit or antialiasing aperture in the potential (the
  multislice applies its aperture to the transmission function later), and the ``k = 0`` term
  is kept, so a slice's mean is ``Σ_atoms F(0) / (nx dx · ny dy)``. With
  ``parametrization.sigmas`` set, ``F`` is multiplied by ``exp(-2π² σ² k²)`` (empty by default).
* Units: each slice of ``Potential.build().array`` (shape ``(n_slices, nx, ny)``) is a
  projected potential in V·Å.
* Precision: abTEM defaults to float32 (positions in pixel units, ``F``, FFTs). Even with
  ``abtem.config.set({"precision": "float64"})`` its ``projected_scattering_factor`` uses a
  float32 π, so its ``F`` differs from ``POTENTIAL_PREFACTOR * f_e`` by up to 6e-8 relative,
  and Lobato's real-space ``projected_potential`` returns float32.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike

from heteroagg import _core

__all__ = [
    "MAX_ATOMIC_NUMBER",
    "PARAMETRIZATIONS",
    "POTENTIAL_PREFACTOR",
    "atomic_number",
    "potential",
    "projected_potential",
    "projected_potential_fourier",
    "scattering_factor",
]

#: ``h² / (2π m_e e)`` in V·Å² (CODATA 2014): ``F(k) = POTENTIAL_PREFACTOR * f_e(k)``.
POTENTIAL_PREFACTOR: float = _core.POTENTIAL_PREFACTOR
#: Largest tabulated atomic number (Lr).
MAX_ATOMIC_NUMBER: int = _core.MAX_ATOMIC_NUMBER
#: Names accepted by the ``parametrization`` arguments.
PARAMETRIZATIONS: tuple[str, ...] = ("lobato", "kirkland")


def atomic_number(symbol_or_z: str | int) -> int:
    """Atomic number of an element given by chemical symbol or number.

    Parameters
    ----------
    symbol_or_z : str or int
        Chemical symbol (``"W"``, case-sensitive) or atomic number.

    Returns
    -------
    int
        The atomic number, 1 to :data:`MAX_ATOMIC_NUMBER`.

    Raises
    ------
    ValueError
        For an unknown symbol or an atomic number outside the tables.
    TypeError
        For anything that is neither a string nor an integer.
    """
    if isinstance(symbol_or_z, str):
        return _core.atomic_number(symbol_or_z)
    if isinstance(symbol_or_z, Integral) and not isinstance(symbol_or_z, bool):
        z = int(symbol_or_z)
        _core.element_symbol(z)  # raises ValueError outside the tables
        return z
    raise TypeError(f"expected a chemical symbol or an atomic number, got {symbol_or_z!r}")


def _evaluate(function, symbol_or_z: str | int, x: ArrayLike, parametrization: str):
    values = function(parametrization, atomic_number(symbol_or_z), np.asarray(x, dtype=np.float64))
    return values if values.ndim else float(values)


def scattering_factor(
    symbol_or_z: str | int, k: ArrayLike, parametrization: str = "lobato"
) -> np.ndarray | float:
    """Electron scattering factor ``f_e(k)`` of a neutral atom.

    Parameters
    ----------
    symbol_or_z : str or int
        Chemical symbol or atomic number.
    k : array_like
        Spatial frequency [1/Å], without a factor 2π (``k = 2 sin(θ) / λ``).
    parametrization : {"lobato", "kirkland"}
        The parameter table.

    Returns
    -------
    numpy.ndarray or float
        ``f_e(k)`` [Å], shaped like `k` (a float for a scalar `k`).

    Raises
    ------
    ValueError
        For an unknown element or parametrisation.
    """
    return _evaluate(_core.scattering_factor, symbol_or_z, k, parametrization)


def potential(
    symbol_or_z: str | int, r: ArrayLike, parametrization: str = "lobato"
) -> np.ndarray | float:
    """Electrostatic potential ``V(r)`` of a neutral atom.

    Parameters
    ----------
    symbol_or_z : str or int
        Chemical symbol or atomic number.
    r : array_like
        Distance from the nucleus [Å]; only ``|r|`` matters.
    parametrization : {"lobato", "kirkland"}
        The parameter table.

    Returns
    -------
    numpy.ndarray or float
        ``V(r)`` [V], ``+inf`` at ``r = 0``, shaped like `r`.

    Raises
    ------
    ValueError
        For an unknown element or parametrisation.
    """
    return _evaluate(_core.potential, symbol_or_z, r, parametrization)


def projected_potential(
    symbol_or_z: str | int, r: ArrayLike, parametrization: str = "lobato"
) -> np.ndarray | float:
    """Infinitely projected potential ``V_z(r) = ∫ V(sqrt(r² + z²)) dz`` of a neutral atom.

    Closed forms with the modified Bessel functions K0 and K1.

    Parameters
    ----------
    symbol_or_z : str or int
        Chemical symbol or atomic number.
    r : array_like
        Distance from the atom's column [Å]; only ``|r|`` matters.
    parametrization : {"lobato", "kirkland"}
        The parameter table.

    Returns
    -------
    numpy.ndarray or float
        ``V_z(r)`` [V·Å], ``+inf`` at ``r = 0``, shaped like `r`.

    Raises
    ------
    ValueError
        For an unknown element or parametrisation.
    """
    return _evaluate(_core.projected_potential, symbol_or_z, r, parametrization)


def projected_potential_fourier(
    symbol_or_z: str | int, k: ArrayLike, parametrization: str = "lobato"
) -> np.ndarray | float:
    """2D Fourier transform ``F(k) = POTENTIAL_PREFACTOR * f_e(k)`` of the projected potential.

    ``V_z(r) = ∫ F(|k|) exp(2πi k·r) d²k`` for an atom at the origin: the factor that multiplies
    the Fourier transform of the atoms' delta functions (per unit area) to build a projected
    potential by FFT superposition.

    Parameters
    ----------
    symbol_or_z : str or int
        Chemical symbol or atomic number.
    k : array_like
        Spatial frequency [1/Å], without a factor 2π.
    parametrization : {"lobato", "kirkland"}
        The parameter table.

    Returns
    -------
    numpy.ndarray or float
        ``F(k)`` [V·Å³], shaped like `k`.

    Raises
    ------
    ValueError
        For an unknown element or parametrisation.
    """
    return _evaluate(_core.projected_potential_fourier, symbol_or_z, k, parametrization)
