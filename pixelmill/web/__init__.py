"""The web dashboard: runs, workflows, editor, gallery, nodes and health, served by the same Flask app as
the API (at ``/``; the API stays at ``/api/v1``). Server-rendered jinja templates and a little vanilla
JavaScript (EventSource, fetch); no Node toolchain.

It reaches runs and workflows through the server's Service object (the same store, queue, scheduler and
workflow set the API uses) and never imports a node.
"""

from __future__ import annotations

from flask import Flask

from . import fmt
from .blueprint import bp


def init_app(app: Flask) -> None:
    from . import access, calendar, catalog, editor, runs, workflows  # noqa: F401 - their views register on bp

    access.init_app(app)
    app.register_blueprint(bp)
    for name, fn in fmt.FILTERS.items():
        app.jinja_env.filters.setdefault(name, fn)
    app.jinja_env.globals["csrf_token"] = access.csrf_token
    app.jinja_env.globals["logged_in"] = access.logged_in
    app.jinja_env.globals["needs_login"] = lambda: bool(app.extensions["pixelmill"].config.api_token)
