"""The dashboard's Blueprint and the few helpers its views share (the service, HTML errors)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

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


@bp.app_errorhandler(PageError)
def _page_error(exc: PageError):
    return render_template("error.html", title=exc.title, message=exc.message), exc.status
