"""Server settings, read from the environment (secrets such as the API token never reach the run store)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

MIB = 1024 * 1024


class ConfigError(ValueError):
    pass


def _int(env, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(env, name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, not {value:g}")
    return value


def _bool(env, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ServerConfig:
    """Everything the service reads at start. ``from_env`` documents the variable behind each field."""

    workflows_dir: Path | None = None          # PIXELMILL_WORKFLOWS
    api_token: str | None = field(default=None, repr=False)  # PIXELMILL_API_TOKEN (bearer auth on /api/v1)
    max_body: int = 16 * MIB                   # PIXELMILL_MAX_BODY (bytes, like n8n's 16 MB default)
    workers: int = 4                           # PIXELMILL_WORKERS (runs executed at once)
    max_queue: int = 10_000                    # PIXELMILL_MAX_QUEUE (queued runs before webhooks answer 503)
    http_threads: int = 16                     # PIXELMILL_HTTP_THREADS (waitress threads)
    public_url: str | None = None              # PIXELMILL_PUBLIC_URL (base of URLs in callbacks)
    callback_attempts: int = 0                 # PIXELMILL_CALLBACK_ATTEMPTS (0 = no limit but the window)
    callback_backoff: float = 1.0              # PIXELMILL_CALLBACK_BACKOFF (seconds, doubled per attempt, jittered)
    callback_window: float = 3600.0            # PIXELMILL_CALLBACK_WINDOW (seconds after the first failure to retry)
    callback_max_delay: float = 300.0          # PIXELMILL_CALLBACK_MAX_DELAY (cap of one backoff, seconds)
    signed_url_ttl: float = 86400.0            # PIXELMILL_SIGNED_URL_TTL (seconds a signed artifact URL works)
    callback_timeout: float = 10.0             # PIXELMILL_CALLBACK_TIMEOUT (seconds per POST)
    sse_heartbeat: float = 15.0                # PIXELMILL_SSE_HEARTBEAT (seconds)
    scheduler: bool = True                     # PIXELMILL_SCHEDULER (0 disables schedules in this process)
    misfire_grace: float = 30.0                # PIXELMILL_MISFIRE_GRACE (seconds late a 'skip' slot may still run)
    sweep_interval: float = 10.0               # PIXELMILL_SWEEP_INTERVAL (seconds between queue sweeps)
    shutdown_grace: float = 10.0               # PIXELMILL_SHUTDOWN_GRACE (seconds running runs get on SIGTERM)
    watch_interval: float = 2.0                # PIXELMILL_WATCH_INTERVAL (seconds between folder checks; 0 = off)
    watch_debounce: float = 1.0                # PIXELMILL_WATCH_DEBOUNCE (quiet seconds before a reload)
    retention_days: float = 14.0               # PIXELMILL_RETENTION_DAYS (finished runs older are deleted; 0 = keep)
    retention_max_runs: int = 10_000           # PIXELMILL_RETENTION_MAX_RUNS (newest finished runs kept; 0 = all)
    retention_interval: float = 3600.0         # PIXELMILL_RETENTION_INTERVAL (seconds between retention passes)
    executor: str = "local"                    # PIXELMILL_EXECUTOR (local: this process's pool; celery: workers)
    worker_stale_after: float = 15.0           # PIXELMILL_WORKER_STALE_AFTER (seconds without heartbeat = dead)
    model_queues: bool = False                 # PIXELMILL_MODEL_QUEUES (celery: GPU runs to a queue per model)

    @classmethod
    def from_env(cls, environ=None, **overrides) -> ServerConfig:
        env = os.environ if environ is None else environ
        wf = env.get("PIXELMILL_WORKFLOWS")
        values = dict(
            workflows_dir=Path(wf) if wf else None,
            api_token=env.get("PIXELMILL_API_TOKEN") or None,
            max_body=_int(env, "PIXELMILL_MAX_BODY", 16 * MIB, 1),
            workers=_int(env, "PIXELMILL_WORKERS", _int(env, "PIXELMILL_MAX_WORKERS", 4, 1), 1),
            max_queue=_int(env, "PIXELMILL_MAX_QUEUE", 10_000, 1),
            http_threads=_int(env, "PIXELMILL_HTTP_THREADS", 16, 1),
            public_url=(env.get("PIXELMILL_PUBLIC_URL") or "").rstrip("/") or None,
            callback_attempts=_int(env, "PIXELMILL_CALLBACK_ATTEMPTS", 0, 0),
            callback_backoff=_float(env, "PIXELMILL_CALLBACK_BACKOFF", 1.0),
            callback_window=_float(env, "PIXELMILL_CALLBACK_WINDOW", 3600.0, 0.0),
            callback_max_delay=_float(env, "PIXELMILL_CALLBACK_MAX_DELAY", 300.0, 0.01),
            signed_url_ttl=_float(env, "PIXELMILL_SIGNED_URL_TTL", 86400.0, 1.0),
            callback_timeout=_float(env, "PIXELMILL_CALLBACK_TIMEOUT", 10.0, 0.1),
            sse_heartbeat=_float(env, "PIXELMILL_SSE_HEARTBEAT", 15.0, 0.05),
            scheduler=_bool(env, "PIXELMILL_SCHEDULER", True),
            misfire_grace=_float(env, "PIXELMILL_MISFIRE_GRACE", 30.0, 0.0),
            sweep_interval=_float(env, "PIXELMILL_SWEEP_INTERVAL", 10.0, 0.1),
            shutdown_grace=_float(env, "PIXELMILL_SHUTDOWN_GRACE", 10.0, 0.0),
            watch_interval=_float(env, "PIXELMILL_WATCH_INTERVAL", 2.0, 0.0),
            watch_debounce=_float(env, "PIXELMILL_WATCH_DEBOUNCE", 1.0, 0.0),
            retention_days=_float(env, "PIXELMILL_RETENTION_DAYS", 14.0, 0.0),
            retention_max_runs=_int(env, "PIXELMILL_RETENTION_MAX_RUNS", 10_000, 0),
            retention_interval=_float(env, "PIXELMILL_RETENTION_INTERVAL", 3600.0, 1.0),
            executor=(env.get("PIXELMILL_EXECUTOR") or "local").strip().lower(),
            worker_stale_after=_float(env, "PIXELMILL_WORKER_STALE_AFTER", 15.0, 0.5),
            model_queues=_bool(env, "PIXELMILL_MODEL_QUEUES", False),
        )
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise ConfigError(f"unknown server setting '{key}'")
            if value is not None:
                values[key] = value
        if values["executor"] not in ("local", "celery"):
            raise ConfigError(f"PIXELMILL_EXECUTOR must be local or celery, not {values['executor']!r}")
        return cls(**values)
