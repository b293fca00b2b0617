"""Finding the particles in an image: a network that maps their centres and radii.

The image observer (:mod:`heteroagg.learn.image_observer`) reads the
materials off the image once it knows where the particles are, to a fraction
of a pixel (docs/results.md).  :class:`ParticleDetector` gives it a start: a
small U-Net reads the image and returns, on a grid of half the image's
resolution (cells of 2 by 2 pixels),

- a heat map whose peaks mark the cells that hold a particle's centre,
- the centre's offset within its cell (rows, columns, in cells),
- the natural log of the particle's radius in pixels.

It is trained as a centre-point detector: the target heat map is a Gaussian
around every particle's centre (width a third of its radius, at least 0.6
cells), 1 at the cell that holds it; the loss is the focal loss of the heat
map plus the L1 errors of offset and log radius at those cells
(:func:`detector_loss`).  :func:`decode_detections` takes the peaks above a
threshold.  :func:`~heteroagg.learn.particle_fit.refine_particles` then fits
the detected geometry against the image before the observer reads it.

Positions are in pixels, (row, column), with pixel (i, j) centred at (i, j),
as :func:`~heteroagg.stem.pixel_positions` gives them for a stored item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heteroagg._numbers import is_count
from heteroagg.learn.networks import seeded_weights
from heteroagg.learn.torch_device import torch_device

#: Pixels per cell of the output maps along each axis.
DETECTOR_STRIDE = 2
#: Scale of the input transform sqrt(scale · I): intensities of a few per cent reach ~1.
INPUT_SCALE = 400.0
#: The heat is kept this far from 0 and 1 in the loss.
_HEAT_FLOOR = 1e-4


def _conv_norm_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = _conv_norm_relu(channels, channels)
        self.second = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.second(self.first(x)))


class ParticleDetector(nn.Module):
    """A U-Net from an image to maps of particle centres and radii.

    Parameters
    ----------
    widths
        Channels of the four levels, at 1/2, 1/4, 1/8 and 1/16 of the
        image's resolution.
    seed
        Seed of the initial weights
        (:func:`~heteroagg.learn.networks.seeded_weights`).

    Notes
    -----
    The input is (B, 1, H, W) intensities (fractions of the beam), H and W
    multiples of 16; the output is (B, 4, H/2, W/2): the heat map's logit,
    the row and column offsets of a centre within its cell, and the log
    radius in pixels.
    """

    def __init__(
        self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), *, seed: int = 0
    ) -> None:
        super().__init__()
        if len(widths) != 4 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be four positive channel counts, got {widths!r}")
        w1, w2, w3, w4 = (int(w) for w in widths)
        with seeded_weights(seed):
            self.down1 = nn.Sequential(_conv_norm_relu(1, w1, 2), _Residual(w1))
            self.down2 = nn.Sequential(_conv_norm_relu(w1, w2, 2), _Residual(w2))
            self.down3 = nn.Sequential(_conv_norm_relu(w2, w3, 2), _Residual(w3), _Residual(w3))
            self.down4 = nn.Sequential(_conv_norm_relu(w3, w4, 2), _Residual(w4), _Residual(w4))
            self.up3 = _conv_norm_relu(w4 + w3, w3)
            self.up2 = _conv_norm_relu(w3 + w2, w2)
            self.up1 = nn.Sequential(_conv_norm_relu(w2 + w1, w1), _conv_norm_relu(w1, w1))
            self.head = nn.Conv2d(w1, 4, 1)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[0] = -4.0  # few cells hold a centre

    def forward(self, intensity: torch.Tensor) -> torch.Tensor:
        x = torch.sqrt(torch.clamp(intensity, min=0.0) * INPUT_SCALE)
        x1 = self.down1(x)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        x4 = self.down4(x3)
        y = self.up3(_join(x4, x3))
        y = self.up2(_join(y, x2))
        y = self.up1(_join(y, x1))
        return self.head(y)


def _join(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.interpolate(coarse, size=fine.shape[-2:], mode="nearest"), fine], 1)


def turn_positions(
    positions: np.ndarray, quarter_turns: int, flip: bool, shape: tuple[int, int]
) -> np.ndarray:
    """Positions in an image turned as ``np.rot90(np.fliplr(image) if flip else image, k)``.

    Parameters
    ----------
    positions
        (N, 2) (row, column) in pixels.
    quarter_turns
        k, the number of counter-clockwise quarter turns.
    flip
        Mirror left-right before turning.
    shape
        (H, W) of the image before it is turned.

    Returns
    -------
    numpy.ndarray
        (N, 2) (row, column) in the turned image.
    """
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError("positions must be (N, 2)")
    rows, cols = pos[:, 0].copy(), pos[:, 1].copy()
    height, width = shape
    if flip:
        cols = width - 1 - cols
    for _ in range(int(quarter_turns) % 4):
        rows, cols = width - 1 - cols, rows
        height, width = width, height
    return np.stack([rows, cols], axis=1)


@dataclass(frozen=True)
class DetectorTargets:
    """What :class:`ParticleDetector` should output for a batch.

    Attributes
    ----------
    heat
        (B, h, w) target heat maps in [0, 1]; 1 at the cells holding a centre.
    regression
        (B, 3, h, w) row and column offsets (cells) and log radius (pixels),
        set at the cells holding a centre.
    mask
        (B, h, w) 1 at the cells holding a centre, else 0.
    """

    heat: torch.Tensor
    regression: torch.Tensor
    mask: torch.Tensor


def detector_targets(
    positions: list[np.ndarray], radii: list[np.ndarray], shape: tuple[int, int]
) -> DetectorTargets:
    """The target maps of a batch of images.

    Parameters
    ----------
    positions
        Per image, (N, 2) (row, column) of the particle centres in pixels.
    radii
        Per image, (N,) radii in pixels (> 0).
    shape
        (H, W) of the images, multiples of :data:`DETECTOR_STRIDE`.

    Returns
    -------
    DetectorTargets
        Centres outside the field are left out.  Where two centres fall in
        one cell, the later particle's offset and radius are kept.
    """
    height, width = shape
    if height % DETECTOR_STRIDE or width % DETECTOR_STRIDE or len(positions) != len(radii):
        raise ValueError("shape must be a multiple of the stride, one radii array per image")
    h, w = height // DETECTOR_STRIDE, width // DETECTOR_STRIDE
    batch = len(positions)
    heat = np.zeros((batch, h, w), np.float32)
    regression = np.zeros((batch, 3, h, w), np.float32)
    mask = np.zeros((batch, h, w), np.float32)
    for b, (pos, rad) in enumerate(zip(positions, radii, strict=True)):
        pos, rad = np.asarray(pos, float).reshape(-1, 2), np.asarray(rad, float)
        if rad.shape != (pos.shape[0],) or not np.all(rad > 0):
            raise ValueError("each image needs one positive radius per position")
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(rad))):
            raise ValueError("positions and radii must be finite")
        cell_rows = (pos[:, 0] + 0.5) / DETECTOR_STRIDE - 0.5
        cell_cols = (pos[:, 1] + 0.5) / DETECTOR_STRIDE - 0.5
        for y, x, r in zip(cell_rows, cell_cols, rad, strict=True):
            iy, ix = round(y), round(x)
            if not (0 <= iy < h and 0 <= ix < w):
                continue
            sigma = max(0.6, r / DETECTOR_STRIDE / 3.0)
            reach = math.ceil(3.0 * sigma)
            y0, y1 = max(0, iy - reach), min(h, iy + reach + 1)
            x0, x1 = max(0, ix - reach), min(w, ix + reach + 1)
            gy = np.arange(y0, y1)[:, None] - y
            gx = np.arange(x0, x1)[None, :] - x
            bump = np.exp(-(gy**2 + gx**2) / (2.0 * sigma * sigma))
            np.maximum(heat[b, y0:y1, x0:x1], bump, out=heat[b, y0:y1, x0:x1])
            heat[b, iy, ix] = 1.0
            regression[b, :, iy, ix] = (y - iy, x - ix, math.log(r))
            mask[b, iy, ix] = 1.0
    return DetectorTargets(
        torch.from_numpy(heat), torch.from_numpy(regression), torch.from_numpy(mask)
    )


def detector_loss(
    maps: torch.Tensor, targets: DetectorTargets
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Focal loss of the heat map plus L1 of offsets and log radii, per centre.

    The heat is clipped to [1e-4, 1 - 1e-4] inside the logarithms, so that a
    confident mistake costs at most ln(10⁴) per cell.

    Parameters
    ----------
    maps
        (B, 4, h, w) the detector's output.
    targets
        :func:`detector_targets` of the batch.

    Returns
    -------
    tuple
        (total, focal part, regression part); the parts are detached.
    """
    p = torch.sigmoid(maps[:, 0].float()).clamp(_HEAT_FLOOR, 1.0 - _HEAT_FLOOR)
    at_centre = targets.heat >= 1.0
    positive = -((1.0 - p) ** 2) * torch.log(p) * at_centre
    negative = -((1.0 - targets.heat) ** 4) * p**2 * torch.log(1.0 - p) * (~at_centre)
    count = at_centre.sum().clamp(min=1)
    focal = (positive.sum() + negative.sum()) / count
    error = torch.abs(maps[:, 1:].float() - targets.regression) * targets.mask[:, None]
    regression = error.sum() / count
    return focal + regression, focal.detach(), regression.detach()


def decode_detections(
    maps: torch.Tensor, *, threshold: float = 0.15, max_particles: int = 1000
) -> np.ndarray:
    """The particles in one image's output maps.

    Parameters
    ----------
    maps
        (4, h, w) the detector's output for one image.
    threshold
        Least heat (probability) of a peak, in (0, 1).  The default did best
        on validation images (docs/results.md), by a little.
    max_particles
        Most particles kept, the hottest first.

    Returns
    -------
    numpy.ndarray
        (K, 4): row and column of the centre (pixels), radius (pixels) and
        heat of each peak (a cell hotter than its eight neighbours, ties
        kept), hottest first.
    """
    if maps.ndim != 3 or maps.shape[0] != 4:
        raise ValueError("maps must be (4, h, w)")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    if not is_count(max_particles) or max_particles < 0:
        raise ValueError(f"max_particles must be an integer >= 0, got {max_particles!r}")
    heat = torch.sigmoid(maps[0].float())
    local_max = F.max_pool2d(heat[None, None], 3, 1, 1)[0, 0]
    iy, ix = torch.nonzero((heat == local_max) & (heat > threshold), as_tuple=True)
    dy, dx, ln_r = (maps[k, iy, ix].float() for k in (1, 2, 3))
    rows = (iy.float() + dy + 0.5) * DETECTOR_STRIDE - 0.5
    cols = (ix.float() + dx + 0.5) * DETECTOR_STRIDE - 0.5
    found = torch.stack([rows, cols, torch.exp(ln_r), heat[iy, ix]], 1)
    found = found[torch.argsort(found[:, 3], descending=True)[:max_particles]]
    return found.detach().cpu().numpy().astype(float)


def detect_particles(
    detector: ParticleDetector,
    image: np.ndarray,
    *,
    threshold: float = 0.15,
    device: str = "auto",
) -> np.ndarray:
    """Run a trained detector on one image and decode its peaks.

    Parameters
    ----------
    detector
        A trained :class:`ParticleDetector` (it is put in eval mode).
    image
        (H, W) intensities (fractions of the beam), H and W multiples of 16.
    threshold
        Least heat of a peak, as :func:`decode_detections`.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    numpy.ndarray
        (K, 4) row, column, radius (pixels) and heat, as :func:`decode_detections`.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.shape[0] % 16 or img.shape[1] % 16:
        raise ValueError(f"image must be 2-D with sides that are multiples of 16, got {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image must be finite")
    dev = torch_device(device)
    detector = detector.to(dev).eval()
    with torch.no_grad():
        maps = detector(torch.from_numpy(img)[None, None].to(dev))[0]
    return decode_detections(maps, threshold=threshold)
