"""Models: where they come from (embedded, local folder, Hugging Face cache) and the shared manager."""

from .locate import EMBEDDED, ModelNotAvailable, embedded_path, embedded_root, resolve
from .manager import SERVICE_KEY, ModelManager, manager_for

__all__ = ["EMBEDDED", "SERVICE_KEY", "ModelManager", "ModelNotAvailable", "embedded_path", "embedded_root",
           "manager_for", "resolve"]
