"""Settings from the environment (secrets never live here: nodes read them through ``secrets``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pixelmill"


@dataclass
class Settings:
    home: Path
    db_url: str
    max_workers: int = 4
    artifacts: str = ""  # PIXELMILL_ARTIFACTS: the artifact folder (a path or file:// URL); default HOME/runs

    @property
    def artifacts_root(self) -> Path:
        if not self.artifacts:
            return self.home / "runs"
        if self.artifacts.startswith("file://"):
            from urllib.parse import unquote, urlparse

            return Path(unquote(urlparse(self.artifacts).path))
        return Path(self.artifacts).expanduser()

    def artifact_store(self):
        from .artifacts import from_setting

        return from_setting(self.artifacts, self.home / "runs")

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(overrides.pop("home", None) or env.get("PIXELMILL_HOME") or default_home()).resolve()
        db_url = overrides.pop("db_url", None) or env.get("PIXELMILL_DB_URL") or f"sqlite:///{home / 'pixelmill.db'}"
        workers = int(overrides.pop("max_workers", None) or env.get("PIXELMILL_MAX_WORKERS") or 4)
        artifacts = overrides.pop("artifacts", None) or env.get("PIXELMILL_ARTIFACTS") or ""
        return cls(home=home, db_url=db_url, max_workers=workers, artifacts=artifacts, **overrides)
