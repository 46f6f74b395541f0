"""The dashboard's Blueprint and the few helpers its views share (the service, HTML errors)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")  # the app keeps /static

EXTENSION = "pixelmill"  # the key the server's app factory stores its Service under


def service():
    """The server's Service object (the same one the API uses): runtime, workflows, queue, scheduler."""
    return current_app.extensions[EXTENSION]


class PageError(Exception):
    """Raised by a view to answer with the HTML error page (never a traceback)."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@bp.errorhandler(PageError)  # found before the Exception handler below: same blueprint, nearer in the MRO
def _page_error(exc: PageError):
    return render_template("error.html", title=exc.title, message=exc.message), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return render_template("error.html", title=exc.name, message=exc.description or exc.name), exc.code or 500


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    """A dashboard page that fails says so in HTML; the traceback goes to the log, never to the browser."""
    log.exception("dashboard error on %s %s", request.method, request.path)
    return render_template("error.html", title="Something went wrong",
                           message=f"The server failed on {request.path} ({type(exc).__name__}); the server log "
                                   "has the details."), 500
