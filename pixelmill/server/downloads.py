"""Sending an artifact through the artifact store (never a path built from the request): the store opens
it, the response streams it with its length, an ETag and byte ranges (a video player seeks with them)."""

from __future__ import annotations

from flask import request, send_file


def send_artifact(artifacts, run_id: str, name: str, mimetype: str, *, size: int | None = None,
                  inline_name: bool = False):
    """The response for one artifact; ``FileNotFoundError`` when the store has none of that name.

    ``size`` (from the store's listing) saves a second look-up."""
    if size is None:
        size = artifacts.size(run_id, name)
        if size is None:
            raise FileNotFoundError(name)
    fh = artifacts.open(run_id, name)
    resp = send_file(fh, mimetype=mimetype, as_attachment=False, download_name=name, conditional=False,
                     etag=False)
    resp.content_length = size
    resp.set_etag(f"{run_id}-{name}-{size}")
    if inline_name:
        resp.headers["Content-Disposition"] = f'inline; filename="{name}"'
    return resp.make_conditional(request.environ, accept_ranges=True, complete_length=size)
