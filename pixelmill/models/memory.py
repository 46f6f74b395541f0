"""A model's memory before it loads: the tensor sizes its safetensors headers declare, at the load dtype."""

from __future__ import annotations

import json
import struct
from pathlib import Path

_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
          "F8_E4M3": 1, "F8_E5M2": 1}
_FLOAT = {"F64", "F32", "F16", "BF16"}


def header(path: Path) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON): no tensor is read."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(n))


def _files(folder: Path, variant: str | None) -> list[Path]:
    """The weight files a load would read: per folder the variant's files when present, else the plain ones."""
    by_dir: dict[Path, list[Path]] = {}
    for p in folder.rglob("*.safetensors"):
        by_dir.setdefault(p.parent, []).append(p)
    chosen = []
    for files in by_dir.values():
        tagged = [p for p in files if variant and f".{variant}." in p.name]
        plain = [p for p in files if not any(len(part) < 8 and part in ("fp16", "bf16", "fp32", "ema", "non_ema")
                                             for part in p.name.split(".")[1:-1])]
        chosen += tagged or plain or files
    return chosen


def estimate_folder_bytes(source: str, element_size: int | None = None, variant: str | None = None) -> int | None:
    """Bytes the weights of a model folder take once loaded with floats of ``element_size`` bytes (None: as
    stored); None when the folder has no safetensors files (or is a hub id not on disk)."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    files = _files(folder, variant)
    if not files:
        return None
    total = 0
    for path in files:
        try:
            head = header(path)
        except (OSError, ValueError, struct.error):
            total += path.stat().st_size
            continue
        for name, info in head.items():
            if name == "__metadata__":
                continue
            numel = 1
            for d in info.get("shape", []):
                numel *= int(d)
            dtype = info.get("dtype", "F32")
            size = element_size if element_size and dtype in _FLOAT else _BYTES.get(dtype, 4)
            total += numel * size
    return total
