"""Artifacts in a folder, one sub-folder per run: local disk for one machine, a shared mount (NFS or
similar) that every process of a cluster points at."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from .base import ArtifactInfo, ArtifactStore, check_name


class FolderArtifacts(ArtifactStore):
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, run_id: str) -> Path:
        return self.root / check_name(run_id, "run id")

    def path(self, run_id: str, name: str) -> Path:
        return self._dir(run_id) / check_name(name)

    def put(self, run_id: str, name: str, data) -> ArtifactInfo:
        dest = self.path(run_id, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._write(dest, data)
        return ArtifactInfo(name, dest.stat().st_size)

    def open(self, run_id: str, name: str) -> BinaryIO:
        path = self.path(run_id, name)
        if not path.is_file():
            raise FileNotFoundError(f"run {run_id} has no artifact {name!r}")
        return open(path, "rb")

    def exists(self, run_id: str, name: str) -> bool:
        return self.path(run_id, name).is_file()

    def list(self, run_id: str) -> list[ArtifactInfo]:
        try:
            entries = sorted(os.scandir(self._dir(run_id)), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [ArtifactInfo(e.name, e.stat().st_size) for e in entries
                if e.is_file() and not e.name.startswith(".")]

    def delete(self, run_id: str, name: str | None = None) -> None:
        if name is None:
            shutil.rmtree(self._dir(run_id), ignore_errors=True)
        else:
            self.path(run_id, name).unlink(missing_ok=True)

    def url(self, run_id: str, name: str) -> str:
        return self.path(run_id, name).resolve().as_uri()

    def reserve(self, run_id: str, name: str) -> tuple[str, Path]:
        folder = self._dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        stem, dot, ext = check_name(name).partition(".")
        candidate, n = name, 1
        while (folder / candidate).exists():
            n += 1
            candidate = f"{stem}-{n}{dot}{ext}"
        return candidate, folder / candidate

    def copy(self, src_run: str, name: str, dest_run: str) -> None:
        """A hard link where the file system allows it (no second copy of the bytes), else a copy."""
        src, dest = self.path(src_run, name), self.path(dest_run, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            return
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)


def from_setting(value: str | None, default_root: Path) -> ArtifactStore:
    """The store ``PIXELMILL_ARTIFACTS`` names: a folder path or a ``file://`` URL (default: ``default_root``)."""
    if not value:
        return FolderArtifacts(default_root)
    if value.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return FolderArtifacts(Path(unquote(urlparse(value).path)))
    if "://" in value:
        raise ValueError(f"PIXELMILL_ARTIFACTS={value!r}: only a folder path or a file:// URL is supported "
                         "(point every process at the same shared folder)")
    return FolderArtifacts(Path(value).expanduser())
