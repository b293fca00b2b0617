"""Fast HAADF-STEM images of aggregates from multislice-calibrated LUTs.

The image of an aggregate is formed in the C++ core (``render.hpp``):

1. the aggregate is turned by a rotation (given, or uniformly random from
   the seed) and projected along the beam;
2. at every pixel centre the beam's path through each material is measured
   (points inside several spheres count once, for the lowest-indexed one);
3. each material's path goes through its LUT, and materials add in the
   optical density ``-ln(1 - I)``; with ``orientation_spread`` every particle
   first gets its own log-normal brightness with the LUT's orientation spread;
4. an amorphous-carbon support film adds its optical density, with the
   column-to-column mass fluctuation of random atoms;
5. the result is convolved with the probe intensity, computed from the
   probe's optics and source size and binned onto the pixels;
6. scan lines are jittered, shot noise is drawn for the dose (Poisson), and
   the detector applies gain, black level and read noise.

With ``device="cuda"`` the same steps run as CUDA kernels (``cuda/src/render.cu``)
for many aggregates per launch, drawing the same random streams; images can be
written straight into a CuPy array or a torch tensor on the device.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from heteroagg import _core
from heteroagg._device import resolve_device
from heteroagg._numbers import is_count, is_real
from heteroagg._rotation import check_rotation
from heteroagg.materials import MATERIAL_NAMES, TIO2, WO3
from heteroagg.rng import check_uint64
from heteroagg.stem.lut import HaadfLUT, default_lut
from heteroagg.stem.probe import Probe
from heteroagg.structures import AMORPHOUS_CARBON_DENSITY

if TYPE_CHECKING:
    from heteroagg.aggregate import Aggregate

#: Fraction of the probe intensity the blur kernel keeps (then renormalised).
PROBE_FRACTION = 0.995

#: Finest pixel (nm): a hundredth of an ångström, far below any scan.
MIN_PIXEL_SIZE = 1e-3

#: Most electrons a pixel's mean count may reach (its count is a 64-bit integer).
MAX_PIXEL_ELECTRONS = 1e18
#: Fewest electrons per pixel of a dose that draws shot noise: fewer underflow to 0.
MIN_PIXEL_ELECTRONS = 1e-300
#: Atoms per nm³ of the amorphous-carbon support film (its mass density over carbon's).
SUPPORT_ATOMS_PER_NM3 = AMORPHOUS_CARBON_DENSITY / 12.011 * 6.02214076e23 * 1e-21

#: Largest detector gain, black level, read noise and scan jitter: images stay within float32.
MAX_DETECTOR_VALUE = 1e30

#: Finest sampling (Å) of the probe before it is binned onto pixels.
PROBE_SAMPLING = 0.1
#: Times the probe kernel's window doubles when the probe does not fit in it, while its
#: fine grid stays within PROBE_MAX_POINTS per side.
PROBE_WINDOW_GROWTHS = 4
PROBE_MAX_POINTS = 8192
#: Highest dose (e/Å²) the renderer draws shot noise for; far above any real one (a
#: pixel's count, dose times pixel area, is bounded by MAX_PIXEL_ELECTRONS as well).
MAX_DOSE = 1e12

#: Optics that must agree between the LUTs of one image.
_OPTICS_KEYS = ("energy_eV", "semiangle_mrad", "detector", "defocus_A", "cs_A", "aberrations")


class FieldOfViewWarning(UserWarning):
    """An aggregate reaches beyond the rendered field of view."""


@dataclass(frozen=True, eq=False)
class Rendering:
    """An image with its label maps (see :func:`render_haadf` ``labels=True``).

    Attributes
    ----------
    image
        (H, W) float32, the final image (fractions of the incident beam with
        the default detector settings).
    clean
        (H, W) float32, the intensity before probe blur and noise.
    thickness
        (2, H, W) float32, the beam's path (nm) through TiO2 and WO3.
    material
        (H, W) int8, the material the beam crosses most of at each pixel,
        summed over its particles (the largest of ``thickness``; 0 TiO2,
        1 WO3), -1 where the beam misses every particle.
    particle
        (H, W) int32, the index of the particle with the longest path, or -1.
    rotation
        (3, 3) rotation applied to the aggregate before projection.
    center
        (x, y) nm, the point of the rotated aggregate at the image centre.
    pixel_size
        nm.
    clipped
        True when some particle reaches beyond the field of view.
    """

    image: np.ndarray
    clean: np.ndarray
    thickness: np.ndarray
    material: np.ndarray
    particle: np.ndarray
    rotation: np.ndarray
    center: tuple[float, float]
    pixel_size: float
    clipped: bool


def _cached_kernel(probe: Probe, pixel_size: float, fraction: float) -> np.ndarray:
    key = (
        probe.energy, probe.semiangle, probe.defocus, probe.cs,
        tuple(sorted(probe.aberrations.items())), probe.source_size,
    )  # fmt: skip
    return _kernel_by_key(key, float(pixel_size), fraction)


@lru_cache(maxsize=32)
def _kernel_by_key(key: tuple, pixel_size: float, fraction: float) -> np.ndarray:
    energy, semiangle, defocus, cs, aberrations, source_size = key
    probe = Probe(energy, semiangle, defocus, cs, dict(aberrations), source_size)
    kernel = probe_kernel(probe, pixel_size, fraction=fraction)
    kernel.setflags(write=False)
    return kernel


def probe_kernel(
    probe: Probe, pixel_size: float, *, fraction: float = PROBE_FRACTION
) -> np.ndarray:
    """The probe intensity binned onto image pixels: the blur of the renderer.

    The probe wave function is computed from its optics on a fine grid,
    squared, blurred by the Gaussian source (``probe.source_size``) and
    integrated over square pixels of ``pixel_size`` centred on the probe.
    The smallest square of pixels that holds ``fraction`` of the intensity is
    kept and normalised to sum 1, so uniform regions keep their intensity.

    Parameters
    ----------
    probe
        The probe (Å, eV, mrad).
    pixel_size
        Image pixel size (nm).
    fraction
        Share of the intensity to keep, in (0, 1].

    Returns
    -------
    numpy.ndarray
        (2 r + 1, 2 r + 1) float32, centred on the probe.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    pixel = pixel_size * 10.0  # Å
    sub = max(1, math.ceil(pixel / PROBE_SAMPLING))
    sub += (sub + 1) % 2  # odd: bins are symmetric about the probe centre
    # how far rays at the aperture's edge stray: each aberration C_nm displaces them by
    # at most C_nm alpha^n (1 + m / (n + 1)); the window holds four times that
    alpha = probe.semiangle * 1e-3
    stray = sum(abs(c) * alpha**n * (1 + m / (n + 1)) for n, m, c, _ in probe.polar_coefficients())
    spread = 4.0 * stray + 6.0 * probe.source_size
    if pixel >= 48.0 + spread:
        # the probe as modelled (48 Å and its spread) lies within one pixel; the fine
        # grid would only grow with the square of the pixel to say so
        return np.ones((1, 1), np.float32)
    pixels = 2 * math.ceil(max(48.0 + spread, 4 * pixel) / pixel / 2) + 1  # odd
    for growth in range(PROBE_WINDOW_GROWTHS + 1):
        n = pixels * sub
        if (growth and n > PROBE_MAX_POINTS) or n * n > 2**31:  # 2**31: the core's largest grid
            break
        binned = _binned_probe(probe, pixel, sub, pixels)
        c = pixels // 2
        for r in range(c + 1):
            block = binned[c - r : c + r + 1, c - r : c + r + 1]
            if block.sum() >= fraction * (1 - 1e-12):
                break
        # a probe that needs its whole window may have wrapped its tails in: a wider one
        if r < c or fraction == 1.0:
            return (block / block.sum()).astype(np.float32)
        pixels = 2 * pixels + 1
    raise ValueError(
        f"the probe spreads beyond {pixels // 2} pixels of {pixel_size:g} nm: its aberrations "
        "are too large for the renderer's blur"
    )


def _binned_probe(probe: Probe, pixel: float, sub: int, pixels: int) -> np.ndarray:
    """(pixels, pixels) probe intensity over pixels of ``pixel`` Å, summing to 1, centred."""
    n = pixels * sub
    d = pixel / sub
    psi = np.fft.ifft2(probe.reciprocal((n, n), (d, d)))
    # The intensity is band-limited (twice the aperture), so its integral over a
    # pixel is exact in Fourier space: the box of one pixel multiplies the
    # spectrum by sinc(k p), and the result read at the pixel centres is the
    # pixel's mean.  (Summing the fine points instead is the midpoint rule,
    # 1.4 % high at the centre pixel of 0.05 nm pixels.)  The Gaussian source
    # blurs in the same step.
    k = np.fft.fftfreq(n, d)
    box = np.sinc(k * pixel)
    spectrum = np.fft.fft2(np.abs(psi) ** 2) * box[:, None] * box[None, :]
    if probe.source_size > 0:
        spectrum *= np.exp(
            -2 * (math.pi * probe.source_size) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2)
        )
    intensity = np.fft.ifft2(spectrum).real
    # centre the probe on the middle fine point, then read every pixel's centre
    intensity = np.roll(intensity, (n // 2, n // 2), axis=(0, 1))
    binned = intensity[sub // 2 :: sub, sub // 2 :: sub].copy()
    return binned / binned.sum()


def _table(lut: HaadfLUT) -> tuple[float, np.ndarray, np.ndarray]:
    """(step, D, spread) on a uniform grid for the core."""
    t = lut.thickness
    steps = np.diff(t)
    if np.allclose(steps, steps[0], rtol=1e-9, atol=0):
        return float(steps[0]), np.ascontiguousarray(lut.density), np.ascontiguousarray(lut.std)
    grid = np.linspace(0.0, lut.thickness_max, 8193)
    return (
        float(grid[1]),
        -np.log1p(-lut(grid)),
        np.interp(grid, t, lut.std),
    )


def _optics(lut: HaadfLUT) -> dict[str, Any]:
    return {key: lut.inputs.get(key) for key in _OPTICS_KEYS}


def lut_probe(lut: HaadfLUT) -> Probe:
    """The probe a LUT was calibrated with (no source size)."""
    inputs = lut.inputs
    try:
        return Probe(
            energy=inputs["energy_eV"],
            semiangle=inputs["semiangle_mrad"],
            defocus=inputs.get("defocus_A", 0.0),
            cs=inputs.get("cs_A", 0.0),
            aberrations=dict(inputs.get("aberrations", {})),
        )
    except KeyError as err:
        raise ValueError(f"the {lut.material} LUT does not record its optics ({err})") from None


def check_image_frame(pixel_size: Any, shape: Any) -> tuple[float, tuple[int, int]]:
    """A valid pixel size (nm) and image shape (H, W), or ``ValueError``; an int shape is square."""
    if not is_real(pixel_size):
        raise ValueError(f"pixel_size must be a number of nm, got {pixel_size!r}")
    if not (math.isfinite(pixel_size) and MIN_PIXEL_SIZE <= pixel_size):
        raise ValueError(
            f"pixel_size must be finite and at least {MIN_PIXEL_SIZE:g} nm, got {pixel_size!r}"
        )
    shape = (shape, shape) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if len(shape) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in shape
    ):
        raise ValueError(f"shape must be a positive int or a pair (H, W), got {shape!r}")
    return float(pixel_size), (int(shape[0]), int(shape[1]))


class HaadfRenderer:
    """A prepared renderer: LUT tables, probe kernel and image settings.

    Build it once and call it for many aggregates; :func:`render_haadf` is
    the one-shot form and documents the parameters.

    Examples
    --------
    >>> renderer = HaadfRenderer(pixel_size=0.4, shape=(256, 256), dose=5e3)
    >>> image = renderer(agg, seed=1)                      # doctest: +SKIP
    >>> images = renderer.batch(aggs, seeds=range(64))    # doctest: +SKIP

    On a GPU, a batch can be written into a device array without a copy:

    >>> gpu = HaadfRenderer(pixel_size=1.0, shape=256, device="cuda")    # doctest: +SKIP
    >>> out = torch.empty((64, 256, 256), device="cuda")                # doctest: +SKIP
    >>> gpu.batch(aggs, seeds=range(64), out=out)                        # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        pixel_size: float,
        shape: tuple[int, int] | int,
        luts: Mapping[str | int, HaadfLUT] | None = None,
        dose: float | None = None,
        probe: Probe | str | None = "lut",
        orientation_spread: bool = True,
        support: float | None = None,
        support_lut: HaadfLUT | None = None,
        scan_jitter: float = 0.0,
        gain: float = 1.0,
        black_level: float = 0.0,
        read_noise: float = 0.0,
        extrapolate: bool = False,
        probe_fraction: float = PROBE_FRACTION,
        device: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        pixel_size, shape = check_image_frame(pixel_size, shape)
        if dose is not None and not (is_real(dose) and 0 <= dose <= MAX_DOSE):
            raise ValueError(
                f"dose must be None or a number in [0, {MAX_DOSE:g}] e/Å², got {dose!r}"
            )
        if dose is not None and dose * (10.0 * pixel_size) ** 2 > MAX_PIXEL_ELECTRONS:
            raise ValueError(
                f"a dose of {dose:g} e/Å² on pixels of {pixel_size:g} nm gives "
                f"{dose * (10.0 * pixel_size) ** 2:.3g} electrons per pixel, beyond the "
                f"{MAX_PIXEL_ELECTRONS:g} a pixel's count holds"
            )
        if dose and not dose * (10.0 * pixel_size) ** 2 >= MIN_PIXEL_ELECTRONS:
            raise ValueError(
                f"a dose of {dose:g} e/Å² on pixels of {pixel_size:g} nm gives a pixel "
                f"fewer than {MIN_PIXEL_ELECTRONS:g} electrons; give 0 or None for no shot noise"
            )
        # beyond these the image's float32 values would overflow
        for name, value, low in (("scan_jitter", scan_jitter, 0.0), ("read_noise", read_noise, 0.0),
                                 ("gain", gain, -MAX_DETECTOR_VALUE),
                                 ("black_level", black_level, -MAX_DETECTOR_VALUE)):  # fmt: skip
            if not (is_real(value) and low <= value <= MAX_DETECTOR_VALUE):
                raise ValueError(
                    f"{name} must be a number in [{low:g}, {MAX_DETECTOR_VALUE:g}], got {value!r}"
                )
        if support is not None and not (
            is_real(support) and math.isfinite(support) and support >= 0
        ):
            raise ValueError(f"support must be None or a film thickness >= 0 nm, got {support!r}")
        film_atoms = (support or 0.0) * pixel_size**2 * SUPPORT_ATOMS_PER_NM3
        if film_atoms > MAX_PIXEL_ELECTRONS:  # counts beyond it overflow their integers
            raise ValueError(
                f"a {support:g} nm film on pixels of {pixel_size:g} nm puts {film_atoms:.3g} "
                f"atoms in a pixel's column, beyond the {MAX_PIXEL_ELECTRONS:g} a count holds"
            )

        self.luts = self._material_luts(luts)
        reference = _optics(self.luts[0])
        if _optics(self.luts[1]) != reference:
            raise ValueError(
                "the TiO2 and WO3 LUTs were calibrated with different optics or detectors: "
                f"{reference} vs {_optics(self.luts[1])}"
            )
        support_table = None
        if support:
            lut = support_lut if support_lut is not None else default_lut("C")
            if lut.material in MATERIAL_NAMES:
                raise ValueError(f"support_lut holds the {lut.material} LUT, not a film's")
            if _optics(lut) != reference:
                raise ValueError(
                    "the support LUT was calibrated with other optics than the particles'"
                )
            support_table = _table(lut)
        if isinstance(probe, str):
            if probe != "lut":
                raise ValueError(f"probe must be a Probe, 'lut' or None, got {probe!r}")
            probe = lut_probe(self.luts[0])
        kernel = None
        if probe is not None:
            if not isinstance(probe, Probe):
                raise ValueError(
                    f"probe must be a Probe, 'lut' or None, got {type(probe).__name__}"
                )
            kernel = _cached_kernel(probe, pixel_size, probe_fraction)
        self.pixel_size = float(pixel_size)
        self.shape = (int(shape[0]), int(shape[1]))
        self.probe = probe
        self.kernel = kernel
        settings = dict(
            ny=self.shape[0],
            nx=self.shape[1],
            pixel_nm=self.pixel_size,
            tables=[_table(lut) for lut in self.luts],
            extrapolate=bool(extrapolate),
            orientation_spread=bool(orientation_spread),
            support_nm=float(support or 0.0),
            support=support_table,
            support_atoms_per_nm3=SUPPORT_ATOMS_PER_NM3,
            kernel=kernel,
            scan_jitter_px=float(scan_jitter),
            dose=float(dose or 0.0),
            gain=float(gain),
            black_level=float(black_level),
            read_noise=float(read_noise),
        )
        self._settings = _core.RenderSettings(**settings)
        self._cuda_settings = None
        if self.device == "cuda":
            from heteroagg import _cuda  # type: ignore[attr-defined]

            self._cuda_settings = _cuda.RenderSettings(**settings)

    @staticmethod
    def _material_luts(luts: Mapping[str | int, HaadfLUT] | None) -> list[HaadfLUT]:
        if luts is None:
            return [default_lut("TiO2"), default_lut("WO3")]
        if not isinstance(luts, Mapping):
            raise ValueError("luts must map 'TiO2' and 'WO3' to HaadfLUT objects, or be None")
        from heteroagg.materials import material_code

        found: dict[int, HaadfLUT] = {}
        for key, lut in luts.items():
            if not isinstance(lut, HaadfLUT):
                raise ValueError(f"luts[{key!r}] must be a HaadfLUT, got {type(lut).__name__}")
            code = material_code(key)
            if lut.material in (*MATERIAL_NAMES, "C") and lut.material != MATERIAL_NAMES[code]:
                raise ValueError(
                    f"luts[{key!r}] holds the {lut.material} LUT; give each material its own"
                )
            found[code] = lut
        missing = [MATERIAL_NAMES[c] for c in (TIO2, WO3) if c not in found]
        if missing:
            raise ValueError(f"luts has no LUT for {missing}; give both 'TiO2' and 'WO3'")
        return [found[TIO2], found[WO3]]

    def _arrays(self, agg: Aggregate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from heteroagg.aggregate import Aggregate

        if not isinstance(agg, Aggregate):
            raise ValueError(f"agg must be an Aggregate, got {type(agg).__name__}")
        return agg.centers, agg.radii, agg.materials

    def __call__(
        self,
        agg: Aggregate,
        seed: int = 0,
        *,
        rotation: np.ndarray | None = None,
        center: tuple[float, float] | None = None,
        labels: bool = False,
    ) -> np.ndarray | Rendering:
        """Render one aggregate; see :func:`render_haadf`."""
        seed = check_uint64("seed", seed)
        if rotation is not None:
            rotation = check_rotation(rotation)
        if center is not None:
            cx, cy = (float(v) for v in center)
            if not (math.isfinite(cx) and math.isfinite(cy)):
                raise ValueError(f"center must be finite (nm), got {center!r}")
            center = (cx, cy)
        if self.device == "cuda" and not labels:
            images, _, clipped = self._cuda_batch(
                [self._arrays(agg)],
                [seed],
                0,
                0,
                None if rotation is None else rotation[None],
                None if center is None else np.array([center], dtype=float),
            )
            if clipped[0]:
                self._warn_clipped()
            return images[0]
        try:
            out = _core.render_haadf(
                *self._arrays(agg), rotation, center, seed, self._settings, bool(labels)
            )
        except ValueError as err:
            raise ValueError(str(err)) from None
        if out["clipped"]:
            self._warn_clipped()
        if not labels:
            return out["image"]
        return Rendering(
            image=out["image"],
            clean=out["clean"],
            thickness=out["thickness"],
            material=out["material"],
            particle=out["particle"],
            rotation=out["rotation"],
            center=out["center"],
            pixel_size=self.pixel_size,
            clipped=bool(out["clipped"]),
        )

    def _warn_clipped(self) -> None:
        # point at the caller's line, through render_haadf or called directly
        frame, level = sys._getframe(0), 1
        while frame is not None and frame.f_code.co_filename == __file__:
            frame, level = frame.f_back, level + 1
        warnings.warn(
            f"the aggregate reaches beyond the {self.shape[1]} x {self.shape[0]} pixel field "
            f"of view ({self.shape[1] * self.pixel_size:g} x "
            f"{self.shape[0] * self.pixel_size:g} nm); part of it is cut off",
            FieldOfViewWarning,
            stacklevel=level,
        )

    def batch(
        self,
        aggs: Sequence[Aggregate],
        seeds: Sequence[int],
        *,
        threads: int = 0,
        out: Any = None,
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        """Render many aggregates with the GIL released.

        On the CPU the images are drawn on C++ threads, and image ``i`` is
        ``self(aggs[i], seeds[i])`` bit for bit, whatever the thread count.
        With ``device="cuda"`` the whole batch is drawn by CUDA kernels; the
        images then agree with the CPU's to single-precision rounding (and
        shot-noise counts to within one electron where the GPU's and the
        host's math libraries round differently).  Rotations are drawn from
        the seeds.

        Parameters
        ----------
        aggs, seeds
            The aggregates and one seed in [0, 2**64) each.
        threads
            CPU threads (0: all cores); on CUDA they project the aggregates.
        out
            Where to write the images, (B, H, W) float32: a numpy array
            (written in place where it is C-contiguous, else through a
            copy), or with ``device="cuda"`` also any C-contiguous array in
            device memory that exposes ``__cuda_array_interface__`` (a CuPy
            array, a torch CUDA tensor), written in place without a copy.
            None: a new numpy array.

        Returns
        -------
        images, rotations, clipped
            ``out`` (or a new (B, H, W) float32 array), (B, 3, 3) and (B,)
            bool: which aggregates reach beyond the field of view.  Unlike a
            single call, a batch does not warn about them; its caller decides
            (dataset generation records them per item).

        Raises
        ------
        ValueError
            For bad input, or an ``out`` of the wrong shape, type or memory.
        """
        seeds = [check_uint64("seed", s) for s in seeds]
        if len(seeds) != len(aggs):
            raise ValueError(f"got {len(aggs)} aggregates but {len(seeds)} seeds")
        if not is_count(threads) or threads < 0:
            raise ValueError(f"threads must be an int >= 0, got {threads!r}")
        threads = min(int(threads), max(len(aggs), 1))  # no more threads than images
        arrays = [self._arrays(agg) for agg in aggs]
        shape = (len(aggs), *self.shape)
        if self.device == "cuda" and hasattr(out, "__cuda_array_interface__"):
            address = _device_address(out, shape)
            _, rotations, clipped = self._cuda_batch(arrays, seeds, threads, address)
            return out, rotations, clipped
        host = None if out is None else _host_out(out, shape)
        # a C-contiguous float32 out is written in place; a strided one through a copy
        direct = host if host is not None and host.flags.c_contiguous else None
        if self.device == "cuda":
            images, rotations, clipped = self._cuda_batch(
                arrays, seeds, threads, 0, host_out=direct
            )
        else:
            try:
                images, rotations, clipped = _core.render_haadf_batch(
                    arrays, seeds, self._settings, threads, direct
                )
            except ValueError as err:
                raise ValueError(str(err)) from None
        if host is None:
            return images, rotations, clipped
        if direct is None:
            host[...] = images
        return out, rotations, clipped

    def _cuda_batch(
        self,
        arrays: list,
        seeds: list[int],
        threads: int,
        address: int,
        rotations: np.ndarray | None = None,
        centers: np.ndarray | None = None,
        host_out: np.ndarray | None = None,
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        from heteroagg import _cuda  # type: ignore[attr-defined]

        try:
            return _cuda.render_haadf_batch(
                arrays, seeds, self._cuda_settings, threads, address, rotations, centers, host_out
            )
        except ValueError as err:
            raise ValueError(str(err)) from None


def _device_address(out: Any, shape: tuple[int, ...]) -> int:
    """Address of a (B, H, W) float32 C-contiguous array with ``__cuda_array_interface__``."""
    interface = out.__cuda_array_interface__
    if tuple(interface["shape"]) != shape:
        raise ValueError(f"out has shape {tuple(interface['shape'])}, expected {shape}")
    if np.dtype(interface["typestr"]) != np.float32:
        raise ValueError(f"out must hold float32, got {np.dtype(interface['typestr'])}")
    strides = interface.get("strides")
    if strides is not None and tuple(strides) != (shape[1] * shape[2] * 4, shape[2] * 4, 4):
        raise ValueError("out must be C-contiguous")
    address, read_only = interface["data"]
    if read_only:
        raise ValueError("out is read-only")
    return int(address)


def _host_out(out: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` as a writable numpy array of the batch's shape."""
    if hasattr(out, "__cuda_array_interface__"):
        raise ValueError("out is a device array; build the renderer with device='cuda'")
    host = np.asarray(out)
    if host.shape != shape or host.dtype != np.float32:
        raise ValueError(
            f"out must be a float32 array of shape {shape}, got {host.dtype} {host.shape}"
        )
    if not host.flags.writeable:
        raise ValueError("out is read-only")
    return host


def render_haadf(
    agg: Aggregate,
    *,
    pixel_size: float,
    shape: tuple[int, int] | int,
    luts: Mapping[str | int, HaadfLUT] | None = None,
    rotation: np.ndarray | None = None,
    seed: int = 0,
    dose: float | None = None,
    probe: Probe | str | None = "lut",
    center: tuple[float, float] | None = None,
    orientation_spread: bool = True,
    support: float | None = None,
    scan_jitter: float = 0.0,
    gain: float = 1.0,
    black_level: float = 0.0,
    read_noise: float = 0.0,
    extrapolate: bool = False,
    labels: bool = False,
    device: str = "auto",
) -> np.ndarray | Rendering:
    """Render a HAADF-STEM image of an aggregate from thickness LUTs.

    A sphere of diameter d renders at its centre, before blur and noise and
    without ``orientation_spread``, as ``luts[material](d)``.

    Parameters
    ----------
    agg
        The aggregate (nm).
    pixel_size
        Pixel size (nm).
    shape
        Image shape (H, W), or one int for a square.
    luts
        ``{"TiO2": HaadfLUT, "WO3": HaadfLUT}``; None takes
        :func:`~heteroagg.stem.default_lut`.  Both must share their optics.
    rotation
        3x3 rotation applied to the aggregate before projecting along z;
        None draws a uniformly random rotation from ``seed``.
    seed
        Integer in [0, 2**64): the image is a pure function of the aggregate,
        the seed and the settings.
    dose
        Electron dose (e/Å²) for Poisson shot noise; None or 0: no shot noise.
    probe
        The probe whose intensity blurs the image: ``"lut"`` (the LUTs'
        optics), a :class:`~heteroagg.stem.Probe` (e.g. with a source size),
        or None for no blur.
    center
        (x, y) nm of the rotated aggregate at the image centre; default: the
        middle of its projected bounding box.
    orientation_spread
        Give each particle its own brightness, log-normal with the LUT's
        orientation mean and spread at the particle's diameter.
    support
        Thickness (nm) of an amorphous-carbon support film (default LUT "C"),
        or None.
    scan_jitter
        RMS horizontal displacement of each scan line (pixels).
    gain, black_level, read_noise
        Detector response: ``black_level + gain * signal`` plus Gaussian read
        noise of RMS ``read_noise`` (output units).
    extrapolate
        Continue LUTs beyond their thickest entry instead of raising.
    labels
        Return a :class:`Rendering` with the label maps instead of the image.
        Like ``clean``, the maps are the ideal projection: neither the probe
        blur nor ``scan_jitter`` moves them.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; an explicit
        ``"cuda"`` without a usable GPU raises ``RuntimeError``.  Label maps
        are drawn on the CPU.

    Returns
    -------
    numpy.ndarray or Rendering
        (H, W) float32 fractions of the incident beam (with the default
        detector settings), or a :class:`Rendering`.

    Raises
    ------
    ValueError
        For bad input, including a negative dose and, without
        ``extrapolate``, a beam path longer than a LUT.

    Warns
    -----
    FieldOfViewWarning
        When the aggregate reaches beyond the field of view (``clipped`` in
        the :class:`Rendering`).
    """
    renderer = HaadfRenderer(
        pixel_size=pixel_size, shape=shape, luts=luts, dose=dose, probe=probe,
        orientation_spread=orientation_spread, support=support, scan_jitter=scan_jitter,
        gain=gain, black_level=black_level, read_noise=read_noise, extrapolate=extrapolate,
        device=device,
    )  # fmt: skip
    return renderer(agg, seed, rotation=rotation, center=center, labels=labels)
