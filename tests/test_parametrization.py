"""Atomic potential parametrisations: analytic checks, and abTEM 1.0.11 where installed."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, special

from heteroagg.stem import parametrization as hp

BOHR = 0.52917721067  # Å, CODATA 2014
HARTREE = 27.21138602  # eV, CODATA 2014
PARAMETRIZATIONS = ("lobato", "kirkland")
ELEMENTS = ("H", "O", "Si", "Ti", "Cu", "W", "Au", "U")


def test_prefactor_is_h2_over_2pi_me_e():
    # h²/(2π m_e e) = 2π ħ²/(m_e e) = 2π a0² E_h / e.
    assert hp.POTENTIAL_PREFACTOR == pytest.approx(2 * math.pi * BOHR**2 * HARTREE, rel=1e-9)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_fourier_transform_is_prefactor_times_scattering_factor(parametrization):
    k = np.linspace(0.0, 20.0, 101)
    np.testing.assert_allclose(
        hp.projected_potential_fourier("W", k, parametrization),
        hp.POTENTIAL_PREFACTOR * hp.scattering_factor("W", k, parametrization),
        rtol=1e-15,
    )


def test_shapes_scalars_and_element_names():
    r = np.linspace(0.1, 2.0, 12).reshape(3, 4)
    assert hp.potential("Ti", r).shape == (3, 4)
    assert isinstance(hp.projected_potential(22, 0.5), float)
    assert hp.projected_potential(np.int64(22), 0.5) == hp.projected_potential("Ti", 0.5)
    assert hp.atomic_number("Lr") == hp.MAX_ATOMIC_NUMBER == 103
    assert hp.scattering_factor("W", [0.5], parametrization="Kirkland")[0] == pytest.approx(
        hp.scattering_factor("W", 0.5, parametrization="kirkland")
    )
    assert np.isinf(hp.potential("O", 0.0)) and np.isinf(hp.projected_potential("O", 0.0))
    assert hp.potential("O", -0.7) == hp.potential("O", 0.7)


@pytest.mark.parametrize(
    ("element", "parametrization", "error"),
    [
        ("Xx", "lobato", ValueError),
        ("w", "lobato", ValueError),
        (0, "lobato", ValueError),
        (104, "kirkland", ValueError),
        ("W", "peng", ValueError),
        (True, "lobato", TypeError),
        (22.0, "lobato", TypeError),
    ],
)
def test_clear_errors(element, parametrization, error):
    with pytest.raises(error):
        hp.scattering_factor(element, 1.0, parametrization)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_hydrogen_atom(parametrization):
    # Exact 1s results: f_e(k) = a0 (2 + x) / (2 (1 + x)²), x = (π a0 k)², and
    # V(r) = (e / 4πε0) (1/r + 1/a0) exp(-2r/a0), e / 4πε0 = E_h a0 / e.
    tol = 0.01 if parametrization == "lobato" else 0.03
    k = np.linspace(0.0, 6.0, 61)
    x = (math.pi * BOHR * k) ** 2
    np.testing.assert_allclose(
        hp.scattering_factor("H", k, parametrization),
        0.5 * BOHR * (2 + x) / (1 + x) ** 2,
        rtol=tol,
    )
    r = np.linspace(0.05, 2.0, 40)
    exact = HARTREE * BOHR * (1 / r + 1 / BOHR) * np.exp(-2 * r / BOHR)
    np.testing.assert_allclose(hp.potential("H", r, parametrization), exact, rtol=3 * tol)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize(
    ("element", "f0", "rtol"),
    [
        ("H", BOHR, 0.002),  # exact: a0
        ("He", 2 * 1.18482 * BOHR / 3, 0.003),  # Z <r²> / (3 a0), Hartree-Fock <r²>
        ("C", 2.5068, 0.003),  # Doyle & Turner, Acta Cryst. A 24 (1968) 390
        ("O", 1.9824, 0.03),  # idem; the Lobato fit sits 2.4 % above
    ],
)
def test_forward_scattering_factor(element, f0, rtol, parametrization):
    assert hp.scattering_factor(element, 0.0, parametrization) == pytest.approx(f0, rel=rtol)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_mott_bethe_limit(parametrization):
    # f_e(k) -> Z / (2π² a0 k²) once the X-ray form factor has died away.  The
    # Lobato fits are built to obey it; Kirkland's, fitted up to 12/Å only, are
    # within 9 % (Ac) and 1.5 % for O, Ti and W.
    k, tol = (1000.0, 1e-5) if parametrization == "lobato" else (100.0, 0.1)
    for z in range(1, hp.MAX_ATOMIC_NUMBER + 1):
        expected = z / (2 * math.pi**2 * BOHR * k**2)
        assert hp.scattering_factor(z, k, parametrization) == pytest.approx(expected, rel=tol)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("element", ELEMENTS)
def test_projected_potential_is_integral_along_z(element, parametrization):
    for r in (0.02, 0.3, 1.0, 2.5):
        value, _ = integrate.quad(
            lambda z, r=r: hp.potential(element, math.hypot(r, z), parametrization),
            0.0,
            np.inf,
            epsabs=0.0,
            epsrel=1e-11,
            limit=500,
        )
        assert hp.projected_potential(element, r, parametrization) == pytest.approx(
            2 * value, rel=1e-8
        )
    # far from the atom both vanish, up to infinity
    for far in (1e3, math.inf, -math.inf):
        assert hp.projected_potential(element, far, parametrization) == 0.0
        assert hp.potential(element, far, parametrization) == 0.0


def _hankel_transform(function, r: float, kmax: float = 1000.0) -> float:
    """2π ∫ F(k) J0(2πkr) k dk, the radial form of ∫ F(|k|) exp(2πi k·r) d²k.

    The slowly decaying tail s / (k² + 1) of F, s = lim k² F(k), is transformed
    analytically (to 2π s K0(2πr)); what is left decays as 1/k⁴.
    """
    s = function(1e5) * 1e10

    def remainder(k):
        return (function(k) - s / (k * k + 1.0)) * special.j0(2 * math.pi * k * r) * k

    with warnings.catch_warnings():  # roundoff warnings near the requested 1e-12
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        value, _ = integrate.quad(remainder, 0.0, kmax, epsabs=0.0, epsrel=1e-12, limit=20000)
    return 2 * math.pi * (value + s * special.k0(2 * math.pi * r))


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("element", ("O", "Ti", "W"))
def test_fourier_transform_of_projected_potential(element, parametrization):
    for r in (0.2, 0.5, 1.0, 2.0):
        value = _hankel_transform(
            lambda k: hp.projected_potential_fourier(element, k, parametrization), r
        )
        assert value == pytest.approx(hp.projected_potential(element, r, parametrization), rel=1e-7)


# ---------------------------------------------------------------------------
# abTEM 1.0.11
# ---------------------------------------------------------------------------


@pytest.fixture
def abtem64():
    abtem = pytest.importorskip("abtem")
    with abtem.config.set({"precision": "float64"}):
        yield abtem


def _abtem_parametrization(parametrization):
    from abtem.parametrizations import KirklandParametrization, LobatoParametrization

    return {"lobato": LobatoParametrization, "kirkland": KirklandParametrization}[parametrization]()


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("element", ("H", "He", "C", "O", "Si", "Ti", "Cu", "W", "Au", "U"))
def test_radial_functions_match_abtem(abtem64, element, parametrization):
    reference = _abtem_parametrization(parametrization)
    k = np.linspace(0.0, 15.0, 301)
    r = np.linspace(0.005, 6.0, 300)
    # abTEM's functions of k take k² (1/Å², no 2π); its projected_potential of
    # Lobato returns float32, and its projected scattering factors use a
    # float32 π: hence 1e-6 rather than 1e-12.
    pairs = [
        (
            reference.scattering_factor(element)(k**2),
            hp.scattering_factor(element, k, parametrization),
        ),
        (reference.potential(element)(r), hp.potential(element, r, parametrization)),
        (
            reference.projected_potential(element)(r),
            hp.projected_potential(element, r, parametrization),
        ),
        (
            reference.projected_scattering_factor(element)(k**2),
            hp.projected_potential_fourier(element, k, parametrization),
        ),
    ]
    for theirs, ours in pairs:
        theirs = np.asarray(theirs, dtype=np.float64)
        finite = theirs != 0.0
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-6, atol=0.0)


def _bilinear_deltas(positions, gpts, sampling):
    """abTEM's superpose_deltas: weights of the four pixels around each position."""
    array = np.zeros(gpts)
    for x, y in positions:
        px, py = x / sampling[0], y / sampling[1]
        i, j = math.floor(px), math.floor(py)
        fx, fy = px - i, py - j
        for di, dj, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                          (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):  # fmt: skip
            array[(i + di) % gpts[0], (j + dj) % gpts[1]] += w
    return array


def _abtem_window(gpts, sampling):
    """abTEM's sinc(): sin(q)/q · dx·dy, q = |(kx dx, ky dy)| in cycles per pixel, q = 0 -> 1."""
    kx = np.fft.fftfreq(gpts[0], sampling[0]) * sampling[0]
    ky = np.fft.fftfreq(gpts[1], sampling[1]) * sampling[1]
    q = np.hypot(kx[:, None], ky[None])
    window = np.ones(gpts)
    np.divide(np.sin(q), q, out=window, where=q > 0)
    return window * sampling[0] * sampling[1]


def _fft_projected_potential(symbols, positions, gpts, sampling, parametrization):
    kx = np.fft.fftfreq(gpts[0], sampling[0])
    ky = np.fft.fftfreq(gpts[1], sampling[1])
    k = np.hypot(kx[:, None], ky[None])
    total = np.zeros(gpts)
    for symbol in set(symbols):
        chosen = [p for s, p in zip(symbols, positions, strict=True) if s == symbol]
        deltas = np.fft.fft2(_bilinear_deltas(chosen, gpts, sampling))
        f = hp.projected_potential_fourier(symbol, k, parametrization)
        total += np.fft.ifft2(deltas * f / _abtem_window(gpts, sampling)).real
    return total


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_infinite_projection_matches_abtem_grid(abtem64, parametrization):
    ase = pytest.importorskip("ase")
    cell = (12.0, 10.0, 4.0)
    gpts = (240, 200)
    sampling = (cell[0] / gpts[0], cell[1] / gpts[1])
    symbols = ["W", "O", "Ti"]
    positions = [(5.337, 4.121, 2.0), (9.02, 1.3, 1.0), (0.0, 9.99, 3.5)]
    atoms = ase.Atoms(symbols, positions=positions, cell=cell)
    potential = abtem64.Potential(
        atoms,
        gpts=gpts,
        projection="infinite",
        slice_thickness=cell[2],
        parametrization=parametrization,
    )
    theirs = potential.build(lazy=False).array[0]
    ours = _fft_projected_potential(
        symbols, [p[:2] for p in positions], gpts, sampling, parametrization
    )
    # The remaining ~5e-8 is abTEM's float32 π in its projected scattering factors.
    assert np.abs(ours - theirs).max() < 1e-6 * np.abs(theirs).max()


def test_fft_projected_potential_approaches_analytic():
    # Band limit, not the parametrisation, sets this difference: it falls as
    # the sampling squared (2 % at 0.05 Å, 0.55 % at 0.025 Å, 0.14 % at 0.0125 Å).
    cell, n = 12.0, 480
    sampling = cell / n
    position = (6.0, 5.0)
    grid = _fft_projected_potential(["W"], [position], (n, n), (sampling, sampling), "lobato")
    x = np.arange(n) * sampling
    r = np.hypot(x[:, None] - position[0], x[None] - position[1])
    exact = hp.projected_potential("W", r)
    near = (r > 0.3) & (r < 1.5)
    assert np.max(np.abs(grid - exact)[near] / exact[near]) < 0.006
