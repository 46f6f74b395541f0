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

    @property
    def artifacts_root(self) -> Path:
        return self.home / "runs"

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(overrides.pop("home", None) or env.get("PIXELMILL_HOME") or default_home()).resolve()
        db_url = overrides.pop("db_url", None) or env.get("PIXELMILL_DB_URL") or f"sqlite:///{home / 'pixelmill.db'}"
        workers = int(overrides.pop("max_workers", None) or env.get("PIXELMILL_MAX_WORKERS") or 4)
        return cls(home=home, db_url=db_url, max_workers=workers, **overrides)
