"""The Flask app factory: one ``Service`` per app, each subsystem attached with its ``init_app``."""

from __future__ import annotations

import logging

from flask import Flask

from .. import web
from ..registry import Registry
from ..runtime import Runtime
from ..settings import Settings
from . import api, calendar_api, http, metrics, openapi, sse, subscriptions, webhooks, workers_api
from .config import ServerConfig
from .context import EXTENSION
from .service import Service

log = logging.getLogger(__name__)


def create_app(config: ServerConfig | None = None, *, runtime: Runtime | None = None,
               registry: Registry | None = None, settings: Settings | None = None, start: bool = True) -> Flask:
    """Build the app. ``start=False`` leaves the workers and the scheduler stopped (call
    ``app.extensions['pixelmill'].start()`` later)."""
    config = config or ServerConfig.from_env()
    if runtime is None:
        settings = settings or Settings.from_env()
        if config.workers > settings.max_workers:
            settings.max_workers = config.workers
        runtime = Runtime.create(settings, registry=registry)
    app = Flask("pixelmill")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.json.sort_keys = False
    service = Service(config, runtime)
    app.extensions[EXTENSION] = service
    http.init_app(app)
    webhooks.init_app(app)
    api.init_app(app)
    subscriptions.init_app(app)
    sse.init_app(app)
    workers_api.init_app(app)
    openapi.init_app(app)
    calendar_api.init_app(app)
    metrics.init_app(app)
    web.init_app(app)  # the dashboard at /
    if start:
        service.start()
    return app
