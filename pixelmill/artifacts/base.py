"""The artifact-store interface. Artifacts are addressed by (run id, file name); both are plain names,
checked here once, so no implementation ever builds a location from unchecked input."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_NAME = 255  # bytes in a file name on common file systems


class BadArtifactName(ValueError):
    """A run id or artifact name that is not a plain name (a path, empty, too long, a NUL)."""


def check_name(value: str, what: str = "artifact name") -> str:
    if (not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value
            or "\x00" in value or len(value.encode("utf-8", "surrogatepass")) > MAX_NAME):
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        raise BadArtifactName(f"{what} {shown!r} is not a plain file name")
    return value


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    size: int


class ArtifactStore(ABC):
    """Files of runs. Every method takes a run id and (but ``list``/``delete``) a file name."""

    @abstractmethod
    def put(self, run_id: str, name: str, data: bytes | BinaryIO | Path) -> ArtifactInfo:
        """Store ``data`` (bytes, a readable binary file, or a local file to copy) as ``name``, replacing
        an artifact of that name."""

    @abstractmethod
    def open(self, run_id: str, name: str) -> BinaryIO:
        """The artifact for reading; ``FileNotFoundError`` when there is none."""

    @abstractmethod
    def exists(self, run_id: str, name: str) -> bool:
        ...

    @abstractmethod
    def list(self, run_id: str) -> list[ArtifactInfo]:
        """The run's artifacts, by name."""

    @abstractmethod
    def delete(self, run_id: str, name: str | None = None) -> None:
        """Delete one artifact, or (``name`` None) all of a run's; missing ones are no error."""

    @abstractmethod
    def url(self, run_id: str, name: str) -> str:
        """Where the artifact lies, as a URL of this backend (``file://`` for a folder). Clients get the
        API's download URL, never this one."""

    @abstractmethod
    def reserve(self, run_id: str, name: str) -> tuple[str, Path]:
        """A name not used yet in the run (``name``, else ``stem-2.ext``, ...) and the file to write it to."""

    @abstractmethod
    def path(self, run_id: str, name: str) -> Path:
        """A local file holding the artifact, for libraries that read paths (it may not exist)."""

    def copy(self, src_run: str, name: str, dest_run: str) -> None:
        """Give ``dest_run`` its own copy of ``src_run``'s artifact (it outlives the source run)."""
        with self.open(src_run, name) as fh:
            self.put(dest_run, name, fh)

    def size(self, run_id: str, name: str) -> int | None:
        for info in self.list(run_id):
            if info.name == name:
                return info.size
        return None

    def read_bytes(self, run_id: str, name: str) -> bytes:
        with self.open(run_id, name) as fh:
            return fh.read()

    @staticmethod
    def _write(dest: Path, data: bytes | BinaryIO | Path) -> None:
        tmp = dest.with_name(f".{dest.name}.part")
        if isinstance(data, (bytes, bytearray, memoryview)):
            tmp.write_bytes(data)
        elif isinstance(data, Path):
            shutil.copyfile(data, tmp)
        else:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(data, out)
        tmp.replace(dest)  # readers never see half a file
