"""Writers of minimal Gatan DigitalMicrograph and Velox EMD files, for the reader tests.

Both follow the published layouts of those formats, written here byte by byte
so that the readers are checked against files heteroagg did not make through
the library that reads them.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from pathlib import Path

import h5py
import numpy as np

# numpy dtype -> (DigitalMicrograph image DataType, tag element encoding)
_DM_TYPES = {
    np.dtype(np.int16): (1, 2),
    np.dtype(np.float32): (2, 6),
    np.dtype(np.uint8): (6, 10),
    np.dtype(np.int32): (7, 3),
    np.dtype(np.uint16): (10, 4),
    np.dtype(np.uint32): (11, 5),
    np.dtype(np.float64): (12, 7),
}


class _Tags:
    """Tag encoder of one DM version: headers big-endian, values little-endian."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.count = ">q" if version == 4 else ">l"

    def _n(self, value: int) -> bytes:
        return struct.pack(self.count, value)

    def _name(self, tag_id: int, name: str) -> bytes:
        encoded = name.encode("latin-1")
        return struct.pack(">bH", tag_id, len(encoded)) + encoded

    def group(self, name: str, tags: list[bytes]) -> bytes:
        content = self._n(len(tags)) + b"".join(tags)
        size = self._n(len(content) + 2) if self.version == 4 else b""
        return self._name(20, name) + b"\x00\x00" + size + content

    def data(self, name: str, info: list[int], payload: bytes) -> bytes:
        body = b"%%%%" + self._n(len(info)) + b"".join(self._n(i) for i in info) + payload
        size = struct.pack(">q", len(body)) if self.version == 4 else b""
        return self._name(21, name) + size + body

    def long(self, name: str, value: int) -> bytes:
        return self.data(name, [3], struct.pack("<l", value))

    def float(self, name: str, value: float) -> bytes:
        return self.data(name, [6], struct.pack("<f", value))

    def text(self, name: str, value: str) -> bytes:
        chars = b"".join(struct.pack("<H", ord(c)) for c in value)
        return self.data(name, [20, 4, len(value)], chars)

    def array(self, name: str, values: np.ndarray) -> bytes:
        encoding = _DM_TYPES[values.dtype][1]
        raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
        return self.data(name, [20, encoding, values.size], raw)


def _dm_image(tags: _Tags, image: np.ndarray, title: str, scales, units) -> bytes:
    """One ImageList entry; ``scales`` and ``units`` per array axis, last axis first in DM."""
    dims = image.shape[::-1]  # DM lists X, Y(, Z)
    calibrations = [
        tags.group("", [tags.float("Origin", 0.0), tags.float("Scale", s), tags.text("Units", u)])
        for s, u in zip(scales[::-1], units[::-1], strict=True)
    ]
    brightness = [tags.float("Origin", 0.0), tags.float("Scale", 1.0), tags.text("Units", "")]
    image_data = [
        tags.group(
            "Calibrations",
            [tags.group("Brightness", brightness), tags.group("Dimension", calibrations)],
        ),
        tags.array("Data", image.ravel()),
        tags.long("DataType", _DM_TYPES[image.dtype][0]),
        tags.group("Dimensions", [tags.long("", d) for d in dims]),
        tags.long("PixelDepth", image.dtype.itemsize),
    ]
    parts = [
        tags.group("ImageData", image_data),
        tags.group("ImageTags", []),
        tags.text("Name", title),
    ]
    return tags.group("", parts)


def write_dm(
    path: Path,
    image: np.ndarray,
    scales: tuple[float, ...],
    units: tuple[str, ...],
    version: int = 4,
    title: str = "HAADF",
) -> None:
    """A DM3/DM4 file holding a thumbnail and ``image`` (2D or a 3D stack).

    ``scales`` and ``units`` give each array axis's calibration, in array order.
    """
    tags = _Tags(version)
    thumbnail = np.full((8, 8), 255, dtype=np.uint8)
    image_list = [
        _dm_image(tags, thumbnail, "thumbnail", (1.0, 1.0), ("", "")),
        _dm_image(tags, image, title, scales, units),
    ]
    root = [
        tags.group("ImageList", image_list),
        tags.group("Thumbnails", [tags.group("", [tags.long("ImageIndex", 0)])]),
    ]
    body = b"\x00\x00" + tags._n(len(root)) + b"".join(root)
    size = struct.pack(">q" if version == 4 else ">l", len(body))
    Path(path).write_bytes(struct.pack(">l", version) + size + struct.pack(">l", 1) + body)


def write_velox(path: Path, frames: dict[str, np.ndarray], pixel_m: float) -> None:
    """A Velox EMD file with one image per detector, each stored (y, x, frame)."""
    detectors = {f"Detector-{k}": {"DetectorName": name} for k, name in enumerate(frames)}
    with h5py.File(path, "w") as f:
        version = json.dumps({"format": "Velox", "version": "11"}).encode()
        f.create_dataset("Version", data=np.array([version]))
        for k, data in enumerate(frames.values()):
            group = f.create_group(f"Data/Image/{uuid.UUID(int=k + 1).hex}")
            group.create_dataset("Data", data=data)
            metadata = {
                "BinaryResult": {
                    "PixelSize": {"width": repr(pixel_m), "height": repr(pixel_m)},
                    "PixelUnitX": "m",
                    "PixelUnitY": "m",
                    "DetectorIndex": str(k),
                },
                "Detectors": detectors,
                "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
                "Scan": {"FrameTime": "2.0"},
            }
            raw = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
            group.create_dataset("Metadata", data=raw[:, None])


def write_tiff(path: Path, image: np.ndarray) -> None:
    """A baseline little-endian TIFF of one uncompressed strip, its SampleFormat the
    image's kind (1 unsigned, 2 signed, 3 float), as the TIFF 6.0 specification lays it out."""
    image = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<"))
    height, width = image.shape
    pixels = image.tobytes()
    sample_format = {"u": 1, "i": 2, "f": 3}[image.dtype.kind]
    entries = [  # (tag, type SHORT = 3 or LONG = 4, value), in increasing tag order
        (256, 4, width), (257, 4, height), (258, 3, 8 * image.dtype.itemsize), (259, 3, 1),
        (262, 3, 1), (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(pixels)),
        (339, 3, sample_format),
    ]  # fmt: skip
    directory = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        directory += struct.pack("<HHI", tag, kind, 1) + packed
    directory += struct.pack("<I", 0)  # no further image
    header = b"II*\x00" + struct.pack("<I", 8 + len(pixels))
    Path(path).write_bytes(header + pixels + directory)


def write_png_16(path: Path, image: np.ndarray) -> None:
    """A 16-bit PNG of one grey (H, W), grey-and-alpha (H, W, 2) or RGB (H, W, 3) image,
    as the PNG specification lays it out: big-endian samples, filter byte 0 per row."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2}[channels]  # grey, grey and alpha, RGB
    height, width = image.shape[:2]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in image)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip
