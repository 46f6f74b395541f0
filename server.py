"""WSGI entry point: ``waitress-serve --call server:create_app`` or ``pixelmill serve``.

Configuration comes from the environment (PIXELMILL_WORKFLOWS, PIXELMILL_API_TOKEN, PIXELMILL_MAX_BODY, ...;
see docs/server.md). ``app`` is built on first access, not on import.
"""

from pixelmill.server import create_app

__all__ = ["create_app", "app"]


def __getattr__(name):
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
