"""A lean runtime for exported models: numpy and onnxruntime only.

This module imports neither torch nor the compiled core, so acquisition
software can embed it with two dependencies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Name of the exported graph's input.
INPUT_NAME = "images"
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass
class Estimate(Mapping):
    """θ̂ for a batch of images; a mapping from ModelParams field names to (B,) arrays.

    Attributes
    ----------
    params
        Field name -> (B,) values in physical units (fixed fields included).
    low, high
        The one-sigma band in physical units, or None for a model without
        uncertainty (fixed fields: their value).
    normalized, normalized_std
        (B, P) the varied parameters in the normalised [0, 1] space and
        their predictive standard deviation (None without uncertainty).
    descriptors, descriptors_std
        Directly regressed descriptors (empty without descriptor heads).
    """

    params: dict[str, np.ndarray]
    low: dict[str, np.ndarray] | None
    high: dict[str, np.ndarray] | None
    normalized: np.ndarray
    normalized_std: np.ndarray | None
    descriptors: dict[str, np.ndarray] = field(default_factory=dict)
    descriptors_std: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)


#: Relative difference below which an image's pixel size is taken as the model's: its
#: pixels then drift by less than 0.13 pixels from the centre of a 256-pixel field, and
#: the image is cropped or padded as it is instead of being interpolated.
SAME_PIXEL_TOLERANCE = 1e-3


def vacuum_level(imaging: Mapping[str, Any]) -> float:
    """The fraction of the beam that the field around the particles reads in a model's
    training images: 0 in vacuum, the mean level of its amorphous-carbon support film
    (``imaging["support"]`` nm thick, the shipped carbon LUT) with one.

    Parameters
    ----------
    imaging
        The ``imaging`` table of a model's metadata (a dataset's
        :class:`~heteroagg.data.config.ImagingConfig` as a mapping).
    """
    support = float(imaging.get("support") or 0.0)
    if not support:
        return 0.0
    from heteroagg.stem.lut import default_lut  # numpy only

    return float(default_lut("C")(support, extrapolate=True))


def single_channel(raw: np.ndarray, what: str = "images") -> np.ndarray:
    """Pixels with channels last reduced to one value each.

    No image is 4 pixels wide or less, so a last axis that short holds
    channels: a single channel is taken as it is, an alpha channel (the last
    of 2 or 4) is dropped, and colour channels that agree everywhere (a grey
    image stored as colour) are read as that grey; other colour is refused.

    Parameters
    ----------
    raw
        (H, W), (B, H, W), or either with channels last.
    what
        How an error names the images (a file, say).
    """
    if raw.ndim < 3 or raw.shape[-1] > 4:
        return raw
    if raw.shape[-1] == 1:
        return raw[..., 0]
    colour = raw[..., :-1] if raw.shape[-1] in (2, 4) else raw
    if not np.all(colour == colour[..., :1]):
        raise ValueError(f"{what} is a colour image; HAADF images have one channel")
    return colour[..., 0]


def fractions_of_beam(images: Any) -> np.ndarray:
    """(B, H, W) float32 images, checked to be fractions of the incident beam.

    Parameters
    ----------
    images
        (H, W) or (B, H, W) floats in units of the full beam, finite and at
        most 1: detector counts must be divided by the full beam's value
        first (:func:`heteroagg.deploy.read_images` does).  Channels last
        are reduced to one (:func:`single_channel`).
    """
    raw = np.asarray(images)
    if raw.dtype.kind != "f":
        raise ValueError(
            f"images must be floats, fractions of the incident beam, got {raw.dtype}; "
            "divide detector counts by the full beam's value first "
            "(heteroagg.deploy.read_images does, given intensity_scale)"
        )
    x = single_channel(raw).astype(np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(
            f"expected one or more images of shape (H, W) or (B, H, W), got {np.shape(images)}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or infinite values")
    if x.max() > 1.0:
        raise ValueError(
            f"images hold values up to {x.max():.4g}, which cannot be fractions of the "
            "incident beam; divide them by the full beam's value first"
        )
    return x


def _fit(image: np.ndarray, shape: tuple[int, int], fill: float) -> np.ndarray:
    """``image`` cropped about its centre, or padded with ``fill`` (the field around the
    particles) to ``shape``, by whole pixels (the lower side takes the odd pixel of an
    odd difference)."""
    out = np.full(shape, fill, dtype=np.float32)
    source, target = [], []
    for n_in, n_out in zip(image.shape, shape, strict=True):
        n = min(n_in, n_out)
        start_in, start_out = (n_in - n) // 2, (n_out - n) // 2
        source.append(slice(start_in, start_in + n))
        target.append(slice(start_out, start_out + n))
    out[tuple(target)] = image[tuple(source)]
    return out


def _area_weights(n_in: int, n_out: int, factor: float) -> np.ndarray:
    """(n_out, n_in) share of each output pixel's footprint that each input pixel covers.

    Output pixel j, ``1 / factor`` input pixels wide, is centred on the image
    centre as in :func:`_resample`; what of it lies beyond the image's field
    counts as vacuum.
    """
    centre = (np.arange(n_out) - (n_out - 1) / 2.0) / factor + (n_in - 1) / 2.0
    low, high = centre - 0.5 / factor, centre + 0.5 / factor
    edges = np.arange(n_in) - 0.5
    overlap = np.minimum(high[:, None], edges[None, :] + 1.0) - np.maximum(
        low[:, None], edges[None, :]
    )
    return np.clip(overlap, 0.0, None) * factor


def _resample(image: np.ndarray, factor: float, shape: tuple[int, int], fill: float) -> np.ndarray:
    """Resampling by ``factor`` (output pixels per input pixel), centred crop or padding
    with ``fill`` to ``shape``; intensities per pixel are kept (fractions of the beam).

    Coarser output pixels (``factor < 1``) are the mean of the image over their
    footprint, so that every electron counts and the noise falls as it would
    in a scan at that pixel.  Finer ones are bilinear: a sample inside the
    image's field (within half a pixel of its outer pixel centres) takes the
    nearest edge values there; one outside it is ``fill``.
    """
    if factor < 1.0:
        rows = _area_weights(image.shape[0], shape[0], factor)
        columns = _area_weights(image.shape[1], shape[1], factor)
        outside = 1.0 - rows.sum(axis=1)[:, None] * columns.sum(axis=1)[None, :]
        out = rows @ image.astype(np.float64) @ columns.T + fill * outside
        return out.astype(np.float32)
    out = np.empty(shape, dtype=np.float32)
    centre_in = (np.asarray(image.shape) - 1) / 2.0
    centre_out = (np.asarray(shape) - 1) / 2.0
    coords = [(np.arange(shape[a]) - centre_out[a]) / factor + centre_in[a] for a in (0, 1)]
    inside = [(c >= -0.5) & (c <= image.shape[a] - 0.5) for a, c in enumerate(coords)]
    cy, cx = (np.clip(c, 0, image.shape[a] - 1) for a, c in enumerate(coords))
    y0, x0 = np.floor(cy).astype(int), np.floor(cx).astype(int)
    y1, x1 = np.minimum(y0 + 1, image.shape[0] - 1), np.minimum(x0 + 1, image.shape[1] - 1)
    wy, wx = (cy - y0)[:, None], (cx - x0)[None, :]
    value = (
        image[np.ix_(y0, x0)] * (1 - wy) * (1 - wx)
        + image[np.ix_(y1, x0)] * wy * (1 - wx)
        + image[np.ix_(y0, x1)] * (1 - wy) * wx
        + image[np.ix_(y1, x1)] * wy * wx
    )
    out[:] = np.where(inside[0][:, None] & inside[1][None, :], value, fill)
    return out


class Predictor:
    """θ̂ from HAADF-STEM images with an exported heteroagg model.

    Parameters
    ----------
    path
        An ``.onnx`` file written by :func:`heteroagg.deploy.export_onnx`
        (or ``heteroagg export-onnx``).
    providers
        ``"auto"`` (CUDA when onnxruntime offers it, else the CPU), ``"cpu"``
        or ``"cuda"`` (raises when onnxruntime has no CUDA provider).
    threads
        Intra-op threads of the CPU provider (None: onnxruntime's default).

    Attributes
    ----------
    parameters
        Varied parameters, in the model's output order.
    fixed_parameters
        Fields the training prior held fixed, with their values.
    units
        Unit of every ModelParams field.
    descriptors
        Descriptors the model regresses directly.
    input_shape, pixel_size_nm
        The image size and pixel the model was trained on.
    symmetrized
        Whether the graph averages over the image's quarter turns and mirrors.
    metadata
        Every metadata entry, decoded.
    provider
        The execution provider onnxruntime actually uses.
    """

    def __init__(self, path: str | Path, providers: str = "auto", threads: int | None = None):
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path} does not exist")
        if providers not in ("auto", "cpu", "cuda"):
            raise ValueError(f"providers must be 'auto', 'cpu' or 'cuda', got {providers!r}")
        available = onnxruntime.get_available_providers()
        if providers == "cuda" and _PROVIDERS["cuda"] not in available:
            raise RuntimeError(
                "providers='cuda' was requested but onnxruntime offers no CUDA provider "
                f"(available: {available}); install onnxruntime-gpu (pip install 'heteroagg[gpu]')"
            )
        chosen = [_PROVIDERS["cpu"]]
        if providers == "cuda" or (providers == "auto" and _PROVIDERS["cuda"] in available):
            chosen = [_PROVIDERS["cuda"], _PROVIDERS["cpu"]]
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=chosen
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path} is not a loadable ONNX model: {err}") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        if "parameters" not in raw:
            raise ValueError(f"{self.path} is not a heteroagg model (no parameter metadata)")
        self.metadata: dict[str, Any] = {k: json.loads(v) for k, v in raw.items()}
        self.parameters: tuple[str, ...] = tuple(self.metadata["parameters"])
        self.fixed_parameters: dict[str, float] = dict(self.metadata["fixed_parameters"])
        self.units: dict[str, str] = dict(self.metadata["units"])
        self.descriptors: tuple[str, ...] = tuple(self.metadata["descriptors"])
        self.input_shape: tuple[int, int] = tuple(self.metadata["input_shape"])
        self.pixel_size_nm = float(self.metadata["pixel_size_nm"])
        self.has_uncertainty = bool(self.metadata["uncertainty"])
        self.symmetrized = bool(self.metadata.get("symmetrized", False))
        #: Fraction of the beam the field around the particles read in training (a
        #: support film's level, or 0): what padding fills in, and what the border
        #: should read (``read_images(vacuum_level=...)``).
        self.vacuum_level: float = vacuum_level(self.metadata.get("imaging") or {})
        self._outputs: list[str] = list(self.metadata["outputs"])
        if providers == "cuda" and self.provider != _PROVIDERS["cuda"]:
            raise RuntimeError(f"onnxruntime fell back to {self.provider} instead of CUDA")

    @property
    def provider(self) -> str:
        """The execution provider in use (onnxruntime falls back to the CPU silently)."""
        return self.session.get_providers()[0]

    def prepare(
        self, images: Any, pixel_size_nm: float | None = None, resample: bool = False
    ) -> np.ndarray:
        """Check (and, when asked, resample) images into a (B, H, W) float32 batch.

        Parameters
        ----------
        images
            (H, W) or (B, H, W), fractions of the incident beam.
        pixel_size_nm
            The images' pixel size; None takes the model's.
        resample
            Resample to the model's pixel size (the mean over each model pixel
            of a finer image, bilinear for a coarser one) and crop or pad
            (with :attr:`vacuum_level`) to its input shape; otherwise a
            different shape or pixel size raises.  A pixel size within
            :data:`SAME_PIXEL_TOLERANCE` of the model's is taken as it; the
            image is then cropped or padded by whole pixels, and where its size
            differs from the model's by an odd number the odd pixel goes to
            one side, so that a flipped image lands one pixel off (the
            symmetrized graph's invariance holds exactly for even differences).
        """
        x = fractions_of_beam(images)
        pixel = self.pixel_size_nm if pixel_size_nm is None else float(pixel_size_nm)
        if not (math.isfinite(pixel) and pixel > 0):
            raise ValueError(f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}")
        same_pixel = abs(pixel - self.pixel_size_nm) <= SAME_PIXEL_TOLERANCE * self.pixel_size_nm
        if same_pixel and x.shape[1:] == self.input_shape:
            return np.ascontiguousarray(x)
        if not resample:
            raise ValueError(
                f"the model takes {self.input_shape[0]} x {self.input_shape[1]} images at "
                f"{self.pixel_size_nm:g} nm per pixel; got {x.shape[1]} x {x.shape[2]} at "
                f"{pixel:g} nm. Pass resample=True (--resample) to resample and crop or pad"
            )
        fill = self.vacuum_level
        if same_pixel:
            return np.stack([_fit(image, self.input_shape, fill) for image in x])
        factor = pixel / self.pixel_size_nm
        return np.stack([_resample(image, factor, self.input_shape, fill) for image in x])

    def predict(
        self,
        images: Any,
        pixel_size_nm: float | None = None,
        resample: bool = False,
        batch_size: int = 64,
    ) -> Estimate:
        """θ̂ (and its one-sigma band, if the model has one) for images.

        Parameters
        ----------
        images
            (H, W) or (B, H, W) in fractions of the incident beam, as
            :func:`heteroagg.data.open_dataset` returns them.
        pixel_size_nm, resample
            See :meth:`prepare`.
        batch_size
            Images per call of the network.

        Returns
        -------
        Estimate
        """
        x = self.prepare(images, pixel_size_nm, resample)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        parts = [
            self.session.run(None, {INPUT_NAME: x[i : i + batch_size]})
            for i in range(0, len(x), batch_size)
        ]
        out = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self._outputs)}
        return self._estimate(out, len(x))

    def _estimate(self, out: dict[str, np.ndarray], n: int) -> Estimate:
        def fields(varied: np.ndarray) -> dict[str, np.ndarray]:
            values = {name: varied[:, k].astype(float) for k, name in enumerate(self.parameters)}
            for name, value in self.fixed_parameters.items():
                values[name] = np.full(n, value, dtype=float)
            return values

        low = high = None
        if self.has_uncertainty:
            low, high = fields(out["theta_low"]), fields(out["theta_high"])
        descriptors, descriptors_std = {}, {}
        if self.descriptors:
            descriptors = {d: out["descriptors"][:, k] for k, d in enumerate(self.descriptors)}
            if self.has_uncertainty:
                descriptors_std = {
                    d: out["descriptors_std"][:, k] for k, d in enumerate(self.descriptors)
                }
        return Estimate(
            fields(out["theta"]),
            low,
            high,
            out["theta_normalized"],
            out.get("theta_normalized_std"),
            descriptors,
            descriptors_std,
        )
