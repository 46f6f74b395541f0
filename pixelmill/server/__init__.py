"""The pixelmill service: webhooks (n8n conventions), REST API with OpenAPI, schedules, a durable run queue
and live progress, in one process under waitress."""

from .app import create_app
from .config import ServerConfig

__all__ = ["create_app", "ServerConfig"]
