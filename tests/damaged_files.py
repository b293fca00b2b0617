"""Files damaged the way a bad disk or an interrupted copy damages them."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path


def flip_member_bytes(path: Path, member: str) -> None:
    """Invert the first bytes of one member's compressed data in a zip (``.npz``) file."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{member}.npy")
    data = bytearray(path.read_bytes())
    # local file header: 30 bytes, then the name and the extra field
    name_length, extra_length = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_length + extra_length
    for k in range(start, min(start + 8, start + info.compress_size)):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
