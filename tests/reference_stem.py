"""Plain numpy multislice and potentials, written from the textbook formulas
independently of the C++ core, as references for its tests.

Arrays are (y, x); reciprocal grids follow numpy.fft.fftfreq.
"""

from __future__ import annotations

import numpy as np

H = 6.62607004e-34
E = 1.6021766208e-19
ME = 9.10938356e-31
C = 299792458.0


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength in Å."""
    p = np.sqrt(2 * ME * E * energy * (1 + E * energy / (2 * ME * C**2)))
    return H / p * 1e10


def sigma(energy: float) -> float:
    """Interaction constant 2 pi m e lambda / h^2 in 1/(V Å)."""
    m = ME * (1 + E * energy / (ME * C**2))
    return 2 * np.pi * m * E * wavelength(energy) * 1e-10 / H**2 * 1e-10


def frequencies(gpts, sampling):
    ky = np.fft.fftfreq(gpts[0], sampling[0])
    kx = np.fft.fftfreq(gpts[1], sampling[1])
    return ky[:, None], kx[None, :]


def band_limit(gpts, sampling):
    """2/3 of the Nyquist frequency of the coarser axis, cosine taper 0.01 / d."""
    ky, kx = frequencies(gpts, sampling)
    k = np.sqrt(kx**2 + ky**2)
    d = max(sampling)
    cutoff, taper = (2 / 3) / d / 2, 0.01 / d
    out = np.where(
        k > cutoff - taper, 0.5 * (1 + np.cos(np.pi * (k - cutoff + taper) / taper)), 1.0
    )
    return np.where(k > cutoff, 0.0, out)


def probe(gpts, sampling, energy, semiangle, position, defocus=0.0, cs=0.0):
    """Soft-edged aperture probe in reciprocal space, sum |psi_k|^2 = 1."""
    lam = wavelength(energy)
    ky, kx = frequencies(gpts, sampling)
    alpha = lam * np.sqrt(kx**2 + ky**2)
    phi = np.arctan2(ky, kx)
    step = np.sqrt(
        (np.cos(phi) * lam / (gpts[1] * sampling[1])) ** 2
        + (np.sin(phi) * lam / (gpts[0] * sampling[0])) ** 2
    )
    step[0, 0] = 1.0
    aperture = np.clip((semiangle * 1e-3 - alpha) / step + 0.5, 0, 1)
    aperture[0, 0] = 1.0
    chi = 2 * np.pi / lam * (-defocus * alpha**2 / 2 + cs * alpha**4 / 4)
    x, y = position
    psi = aperture * np.exp(-1j * chi) * np.exp(-2j * np.pi * (kx * x + ky * y))
    return psi / np.sqrt(np.sum(np.abs(psi) ** 2))


def multislice_intensity(potentials, thickness, sampling, energy, semiangle, weight, position):
    """Detected fraction after every slice: transmit, propagate, read |psi_k|^2."""
    gpts = potentials.shape[1:]
    lam = wavelength(energy)
    ky, kx = frequencies(gpts, sampling)
    a = band_limit(gpts, sampling)
    alpha = lam * np.sqrt(kx**2 + ky**2) * 1e3
    w = weight(alpha)
    psi = np.fft.ifft2(probe(gpts, sampling, energy, semiangle, position))
    out = []
    for v, dz in zip(potentials, thickness, strict=True):
        t = np.fft.ifft2(np.fft.fft2(np.exp(1j * sigma(energy) * v)) * a)
        psi_k = np.fft.fft2(psi * t) * np.exp(-1j * np.pi * lam * dz * (kx**2 + ky**2)) * a
        out.append(float(np.sum(w * np.abs(psi_k) ** 2)))
        psi = np.fft.ifft2(psi_k)
    return np.array(out)


def projected_potential(positions, numbers, gpts, sampling, form_factor):
    """Bilinear deltas per element, FFT, times F(k^2) / (sinc * pixel area), inverse FFT.

    ``form_factor(z, k2)`` is the 2D Fourier transform of the element's
    projected potential; the sinc is abTEM's pixel correction sin(q)/q with
    q = |k d| in cycles per pixel.
    """
    ky, kx = frequencies(gpts, sampling)
    k2 = kx**2 + ky**2
    q = np.sqrt((kx * sampling[1]) ** 2 + (ky * sampling[0]) ** 2)
    q[0, 0] = 1.0
    sinc = np.sin(q) / q
    sinc[0, 0] = 1.0
    total = np.zeros(gpts, dtype=complex)
    for z in np.unique(numbers):
        deltas = np.zeros(gpts)
        for x, y in positions[numbers == z][:, :2]:
            px, py = x / sampling[1], y / sampling[0]
            fx, fy = np.floor(px), np.floor(py)
            tx, ty = px - fx, py - fy
            ix, iy = int(fx) % gpts[1], int(fy) % gpts[0]
            jx, jy = (ix + 1) % gpts[1], (iy + 1) % gpts[0]
            deltas[iy, ix] += (1 - tx) * (1 - ty)
            deltas[iy, jx] += tx * (1 - ty)
            deltas[jy, ix] += (1 - tx) * ty
            deltas[jy, jx] += tx * ty
        total += np.fft.fft2(deltas) * form_factor(z, k2) / (sinc * sampling[0] * sampling[1])
    return np.fft.ifft2(total).real
