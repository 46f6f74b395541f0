"""Multipart file parts (n8n's binary data) as inputs, for the webhook and the API alike."""

from __future__ import annotations

from flask import request

from ..fileinputs import Upload


def is_multipart() -> bool:
    return (request.mimetype or "").lower() == "multipart/form-data"


def uploads(declared) -> dict:
    """Multipart file parts for declared inputs, as ``Upload`` values."""
    if not is_multipart():
        return {}
    return {k: Upload(f.read(), f.filename or "", (f.mimetype or "").lower())
            for k, f in request.files.items() if k in declared}


def upload_summary() -> dict:
    """What the stored trigger keeps of the file parts (never their bytes)."""
    return {k: {"filename": f.filename or "", "content_type": f.mimetype or ""} for k, f in request.files.items()}
