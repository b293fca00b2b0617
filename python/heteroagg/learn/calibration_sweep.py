"""How much an error in the images' intensity calibration costs the estimates.

Real images become fractions of the beam through two detector values, the
black level and the full beam (:func:`heteroagg.deploy.read_images`).  If the
full-beam value is off by a factor, every image is scaled by its inverse; if
the black level is off, every pixel is shifted by the difference.  A real
detector also reads noise in vacuum, where a simulation reads exactly 0.  The
sweep applies such errors to the test images and reports the R² that is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from heteroagg.deploy.images import black_from_border, border_level
from heteroagg.learn.ceiling import r2
from heteroagg.rng import derive_seed

#: Factors on the images: the full-beam value taken 1/s times its true value.
CALIBRATION_SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)
#: Shifts of every pixel, in fractions of the beam: the black level off by -δ.
#: The median particle pixel of a rendered aggregate is about 0.005.
CALIBRATION_OFFSETS = (-1e-3, -2.5e-4, -1e-4, -5e-5, 0.0, 5e-5, 1e-4, 2.5e-4, 1e-3)
#: Standard deviations of Gaussian read noise added to every pixel, in fractions of the beam.
CALIBRATION_READ_NOISE = (5e-5, 1e-4, 2e-4, 5e-4)
#: Test images the sweep uses, at most (the first ones).
CALIBRATION_IMAGES = 500


def calibration_sweep(
    predict_normalized: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    true_norm: np.ndarray,
    parameters: Sequence[str],
    reference: np.ndarray,
    scales: Sequence[float] = CALIBRATION_SCALES,
    offsets: Sequence[float] = CALIBRATION_OFFSETS,
    read_noise: Sequence[float] = CALIBRATION_READ_NOISE,
    seed: int = 0,
    vacuum_level: float = 0.0,
) -> dict[str, Any]:
    """R² of each parameter with the images scaled, and with them shifted.

    Parameters
    ----------
    predict_normalized
        Images (B, H, W) -> normalised θ̂ (B, P).
    images
        The test images, fractions of the beam.
    true_norm
        (B, P) their true normalised θ.
    parameters
        The P names.
    reference
        (B, P) the predictions on the images as they are (used for the scale
        1 and the shift 0, so they are not computed again).
    scales, offsets, read_noise
        The errors to apply.
    seed
        Seed of the read-noise draws (one generator per level).
    vacuum_level
        The fraction of the beam the field around the particles reads in the
        images (a support film's level, or 0): the black level taken from a
        border is what it reads beyond that
        (:func:`heteroagg.deploy.images.black_from_border`).

    Returns
    -------
    dict
        ``images`` (how many), ``scales`` and ``offsets``, and ``scale_r2``
        and ``offset_r2``: per parameter, the R² at each scale or offset;
        ``border_r2``: per parameter, the R² with each image's black level
        taken from its border (:func:`heteroagg.deploy.images.border_level`),
        which is the same for every offset, and ``border_nonzero``: how many
        images' borders give a black level other than 0 (read other than
        ``vacuum_level``); ``read_noise`` and ``read_noise_r2``:
        per parameter, the R² at each read-noise level.
    """
    if not len(images) == len(true_norm) == len(reference) > 1:
        raise ValueError(
            f"need as many truths and reference predictions as images (> 1), got "
            f"{len(images)}, {len(true_norm)} and {len(reference)}"
        )

    def r2_at(change: Callable[[np.ndarray], np.ndarray], identity: bool) -> dict[str, float]:
        predicted = reference if identity else predict_normalized(change(images))
        return {name: r2(true_norm[:, k], predicted[:, k]) for k, name in enumerate(parameters)}

    by_scale = [r2_at(lambda x, s=s: x * np.float32(s), s == 1.0) for s in scales]
    by_offset = [r2_at(lambda x, d=d: x + np.float32(d), d == 0.0) for d in offsets]
    # the median of the border moves with any shift: removing it undoes every δ alike
    black = black_from_border(border_level(images), vacuum_level)[:, None, None]
    by_border = r2_at(lambda x: ((x - black) / (1.0 - black)).astype(np.float32), False)

    def noisy(x: np.ndarray, k: int) -> np.ndarray:
        draw = np.random.default_rng(derive_seed(seed, k)).standard_normal(x.shape)
        return x + (read_noise[k] * draw).astype(np.float32)

    by_noise = [
        r2_at(lambda x, k=k: noisy(x, k), read_noise[k] == 0.0) for k in range(len(read_noise))
    ]
    return {
        "images": len(images),
        "scales": list(scales),
        "offsets": list(offsets),
        "scale_r2": {name: [r[name] for r in by_scale] for name in parameters},
        "offset_r2": {name: [r[name] for r in by_offset] for name in parameters},
        "border_r2": by_border,
        "border_nonzero": int(np.count_nonzero(black)),
        "read_noise": list(read_noise),
        "read_noise_r2": {name: [r[name] for r in by_noise] for name in parameters},
    }
