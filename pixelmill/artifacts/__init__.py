"""Where runs' files (artifacts) live, behind one small interface.

``ArtifactStore`` is what the engine, nodes (through their context), the API and retention use: ``put``,
``open``, ``exists``, ``list``, ``delete``, ``url``, plus ``reserve`` (a fresh name and a file to write,
for libraries that write to paths) and ``path`` (a local file to read). ``FolderArtifacts`` keeps one
folder per run under a root: the default (``$PIXELMILL_HOME/runs``), and the shared-folder setup of a
cluster when every process points at the same path (``PIXELMILL_ARTIFACTS``).
"""

from .base import ArtifactInfo, ArtifactStore, BadArtifactName, check_name
from .folder import FolderArtifacts, from_setting

__all__ = ["ArtifactInfo", "ArtifactStore", "BadArtifactName", "FolderArtifacts", "check_name", "from_setting"]
