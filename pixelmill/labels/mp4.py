"""XMP in MP4 files: a top-level ``uuid`` box (XMP Specification Part 3, "MPEG-4": UUID
``BE7ACFCB-97A9-42E8-9C71-999491E3AFAC``) holding the packet.

The box is appended after the last top-level box, so no chunk offset in ``moov`` moves and the video
plays exactly as before. A C2PA manifest is signed after it (C2PA puts its own ``uuid`` box in and hashes
the rest, XMP box included).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


def is_mp4(path: str | Path) -> bool:
    """True when the file starts with an ISO BMFF ``ftyp`` box (MP4, MOV, M4V)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] == b"ftyp"


def top_level_boxes(path: str | Path) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, header length, total size) of each top-level box; ValueError on a broken box."""
    path = Path(path)
    end = path.stat().st_size
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= end:
            fh.seek(offset)
            size, kind = struct.unpack(">I4s", fh.read(8))
            header = 8
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0]
                header = 16
            elif size == 0:
                size = end - offset
            if size < header or offset + size > end:
                raise ValueError(f"{path.name}: broken MP4 box {kind!r} at offset {offset}")
            yield kind, offset, header, size
            offset += size


def read_xmp(path: str | Path) -> bytes | None:
    """The XMP packet of the first top-level XMP ``uuid`` box, or None."""
    with open(path, "rb") as fh:
        for kind, offset, header, size in top_level_boxes(path):
            if kind != b"uuid" or size < header + 16:
                continue
            fh.seek(offset + header)
            if fh.read(16) == XMP_UUID:
                return fh.read(size - header - 16)
    return None


def append_xmp(path: str | Path, packet: bytes) -> None:
    """Append an XMP ``uuid`` box to the file. Refuses a file that already has one (a reader would take
    the first): label the encoder's output, not a labelled file."""
    if read_xmp(path) is not None:
        raise ValueError(f"{Path(path).name} already has an XMP box")
    box = struct.pack(">I4s", 8 + 16 + len(packet), b"uuid") + XMP_UUID + packet
    with open(path, "ab") as fh:
        fh.write(box)
