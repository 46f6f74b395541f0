"""Local stand-ins for Mastodon, a Bluesky PDS and webhook receivers, on 127.0.0.1.

They follow the documented APIs (paths, fields, status codes, limits) closely enough to catch a
wrong request, and record every request they get. ``script`` makes a route answer with an error, a
Retry-After, "stall": do the work, then answer too late (the client times out after the post exists),
or "lost": answer too late without doing the work (the client times out, nothing was posted).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import regex
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _Quiet(WSGIRequestHandler):
    def log(self, *args, **kwargs):  # keep request lines (with webhook tokens) out of the test logs
        pass


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    json: object = None
    form: dict = field(default_factory=dict)       # name -> list of values
    files: dict = field(default_factory=dict)      # name -> (filename, content_type, bytes)
    t: float = field(default_factory=time.monotonic)


def _json(data, status=200, headers=None):
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers or {})


class FakeServer:
    def __init__(self):
        self.requests: list[Recorded] = []
        self.script: dict[str, list] = {}
        self.stall_s = 1.5
        self.lock = threading.Lock()
        self._srv = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._srv.server_port}"
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._srv.shutdown()

    def calls(self, path_part: str) -> list[Recorded]:
        return [r for r in self.requests if path_part in r.path]

    def _wsgi(self, environ, start_response):
        req = Request(environ)
        body = req.get_data(cache=True)
        rec = Recorded(req.method, req.path, {k: req.args.getlist(k) for k in req.args},
                       {k: v for k, v in req.headers.items()}, body)
        if req.mimetype == "application/json":
            try:
                rec.json = json.loads(body)
            except ValueError:
                rec.json = None
        elif req.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            environ2 = dict(environ)
            import io
            environ2["wsgi.input"] = io.BytesIO(body)
            r2 = Request(environ2)
            rec.form = {k: r2.form.getlist(k) for k in r2.form}
            rec.files = {k: (f.filename, f.mimetype, f.read()) for k, f in r2.files.items()}
        with self.lock:
            self.requests.append(rec)
        route = self.route(rec)
        action = None
        with self.lock:
            queue = self.script.get(route)
            if queue:
                action = queue.pop(0)
        if isinstance(action, int):
            resp = _json({"error": "InternalServerError" if action >= 500 else "RateLimitExceeded",
                          "message": f"scripted {action}"}, action)
        elif isinstance(action, tuple):
            status, headers = action
            resp = _json({"error": "Too many requests"}, status, headers)
        elif action == "lost":  # a proxy held the request, then gave up: the app never saw it
            time.sleep(self.stall_s)
            resp = _json({"error": "Bad Gateway"}, 502)
        else:
            resp = self.handle(route, rec)
            if action == "stall":
                time.sleep(self.stall_s)
        return resp(environ, start_response)

    def route(self, rec: Recorded) -> str:
        return rec.path

    def handle(self, route: str, rec: Recorded) -> Response:
        raise NotImplementedError


# -- Mastodon -------------------------------------------------------------------------------

def _mastodon_len(text: str) -> int:
    text = regex.sub(r"https?://\S+", "x" * 23, text)
    return len(regex.findall(r"\X", text))


def _video_meta(data: bytes) -> dict | None:
    """What Mastodon reports of a video (``meta.original``), read by decoding it; None when it does not decode."""
    import av

    try:
        with av.open(io.BytesIO(data)) as c:
            st = c.streams.video[0]
            frames = sum(1 for _ in c.decode(st))
            rate = float(st.average_rate or 0)
            return {"width": st.codec_context.width, "height": st.codec_context.height, "frame_rate": f"{rate:g}/1",
                    "duration": frames / rate if rate else 0.0, "codec": st.codec_context.name, "frames": frames}
    except Exception:  # noqa: BLE001 - anything that does not decode
        return None


# GET /api/v2/instance configuration of a stock Mastodon 4.x instance
INSTANCE_CONFIG = {
    "statuses": {"max_characters": 500, "max_media_attachments": 4, "characters_reserved_per_url": 23},
    "media_attachments": {
        "supported_mime_types": ["image/jpeg", "image/png", "image/gif", "image/heic", "image/heif", "image/webp",
                                 "image/avif", "video/webm", "video/mp4", "video/quicktime", "video/ogg",
                                 "audio/wave", "audio/wav", "audio/mpeg", "audio/ogg", "audio/mp4"],
        "description_limit": 1500, "image_size_limit": 16777216, "image_matrix_limit": 33177600,
        "video_size_limit": 103809024, "video_frame_rate_limit": 120, "video_matrix_limit": 8294400},
}


class FakeMastodon(FakeServer):
    """Images are processed at once (200) unless ``processing_polls``; videos always go through asynchronous
    processing as on Mastodon: ``POST /api/v2/media`` answers 202 with ``url: null``, ``GET /api/v1/media/:id``
    answers 206 for ``video_polls`` polls, then 200 with the url, or, with ``fail_processing``, 422
    ``Error processing thumbnail for uploaded media`` (Api::V1::MediaController#check_processing).
    ``GET /api/v2/instance`` (public) serves ``instance_config``; ``instance_status`` other than 200 makes
    it fail as on an old or locked-down server."""

    def __init__(self, token: str, processing_polls: int = 1, video_polls: int = 2):
        super().__init__()
        self.token = token
        self.processing_polls = processing_polls
        self.video_polls = video_polls
        self.fail_processing = False
        self.instance_config = json.loads(json.dumps(INSTANCE_CONFIG))
        self.instance_status = 200
        self.media: dict[str, dict] = {}
        self.statuses: list[dict] = []
        self.idempotent: dict[str, dict] = {}  # Idempotency-Key -> the status it made (kept ~1 hour)
        self.account_id = "1"

    def route(self, rec):
        if rec.path == "/api/v2/instance":
            return "instance"
        if rec.path == "/api/v2/media":
            return "media"
        if rec.path.startswith("/api/v1/media/"):
            return "media_get"
        if rec.path == "/api/v1/statuses":
            return "statuses"
        if rec.path == "/api/v1/accounts/verify_credentials":
            return "verify_credentials"
        if rec.path.startswith("/api/v1/accounts/") and rec.path.endswith("/statuses"):
            return "account_statuses"
        return rec.path

    def _entity(self, m: dict, ready: bool) -> dict:
        out = {"id": m["id"], "type": m["type"], "url": f"{self.url}/media/{m['id']}" if ready else None,
               "preview_url": f"{self.url}/media/{m['id']}/small", "description": m["description"], "meta": {}}
        if m.get("meta"):
            out["meta"] = {"original": m["meta"]}
        return out

    def handle(self, route, rec):
        if route == "instance" and rec.method == "GET":  # public: no token needed
            if self.instance_status != 200:
                return _json({"error": "This method requires an authenticated user"}, self.instance_status)
            return _json({"domain": "mastodon.test", "version": "4.3.0", "configuration": self.instance_config})
        if rec.headers.get("Authorization") != f"Bearer {self.token}":
            return _json({"error": "The access token is invalid"}, 401)
        if route == "media" and rec.method == "POST":
            if "file" not in rec.files:
                return _json({"error": "Validation failed: File can't be blank"}, 422)
            name, ctype, data = rec.files["file"]
            desc = (rec.form.get("description") or [""])[0]
            if len(desc) > 1500:
                return _json({"error": "Validation failed: Description is too long (maximum is 1500 characters)"},
                             422)
            video = ctype.startswith("video/")
            meta = None
            if video:
                if len(data) > INSTANCE_CONFIG["media_attachments"]["video_size_limit"]:
                    return _json({"error": "Validation failed: File file size must be less than 99 MB"}, 422)
                meta = _video_meta(data)
                if meta is None:
                    return _json({"error": "Validation failed: File content type is invalid"}, 422)
            elif len(data) > 16 * 1024 * 1024:
                return _json({"error": "Validation failed: File file size must be less than 16 MB"}, 422)
            with self.lock:
                mid = str(100 + len(self.media))
                self.media[mid] = {"id": mid, "type": "video" if video else "image", "description": desc,
                                   "bytes": len(data), "data": data, "content_type": ctype, "meta": meta,
                                   "polls_left": self.video_polls if video else self.processing_polls,
                                   "failed": video and self.fail_processing}
            m = self.media[mid]
            if video or m["polls_left"] > 0:  # videos are always processed in the background
                return _json(self._entity(m, False), 202)
            return _json(self._entity(m, True))
        if route == "media_get" and rec.method == "GET":
            mid = rec.path.rsplit("/", 1)[-1]
            m = self.media.get(mid)
            if m is None:
                return _json({"error": "Record not found"}, 404)
            if m["polls_left"] > 0:
                m["polls_left"] -= 1
                return _json(self._entity(m, False), 206)
            if m["failed"]:
                return _json({"error": "Error processing thumbnail for uploaded media"}, 422)
            return _json(self._entity(m, True))
        if route == "verify_credentials" and rec.method == "GET":
            return _json({"id": self.account_id, "username": "pixel", "acct": "pixel",
                          "statuses_count": len(self.statuses)})
        if route == "account_statuses" and rec.method == "GET":
            if rec.path != f"/api/v1/accounts/{self.account_id}/statuses":
                return _json({"error": "Record not found"}, 404)
            limit = min(40, int((rec.query.get("limit") or ["20"])[0]))  # newest first, at most 40
            with self.lock:
                return _json(list(reversed(self.statuses))[:limit])
        if route == "statuses" and rec.method == "POST":
            key = rec.headers.get("Idempotency-Key")
            with self.lock:
                if key and key in self.idempotent:
                    return _json(self.idempotent[key])
            f = rec.form
            text = (f.get("status") or [""])[0]
            media_ids = f.get("media_ids[]", [])
            if len(media_ids) > 4:
                return _json({"error": "Validation failed: Media attachments You can attach up to 4 images"}, 422)
            if not text and not media_ids:
                return _json({"error": "Validation failed: Text can't be blank"}, 422)
            if _mastodon_len(text) > 500:
                return _json({"error": "Validation failed: Text character limit of 500 exceeded"}, 422)
            vis = (f.get("visibility") or ["public"])[0]
            if vis not in ("public", "unlisted", "private", "direct"):
                return _json({"error": f"Validation failed: Visibility is not included in the list ({vis})"}, 422)
            kinds = [self.media[m]["type"] for m in media_ids if m in self.media]
            if "video" in kinds and len(media_ids) > 1:
                return _json({"error": "Validation failed: Media attachments Cannot attach a video to a post that "
                                       "already contains images"}, 422)
            for mid in media_ids:
                m = self.media.get(mid)
                if m is None:
                    return _json({"error": "Record not found"}, 404)
                if m["polls_left"] > 0 or m["failed"]:
                    return _json({"error": "Cannot attach files that have not finished processing. "
                                           "Try again in a moment!"}, 422)
            with self.lock:
                sid = str(1000 + len(self.statuses))
                status = {"id": sid, "url": f"{self.url}/@pixel/{sid}", "uri": f"{self.url}/users/pixel/statuses/{sid}",
                          "created_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                          .replace("+00:00", "Z"),
                          "content": f"<p>{text}</p>", "visibility": vis,
                          "language": (f.get("language") or [None])[0],
                          "spoiler_text": (f.get("spoiler_text") or [""])[0],
                          "media_attachments": [self._entity(self.media[m], True) for m in media_ids]}
                self.statuses.append(status)
                if key:
                    self.idempotent[key] = status
            return _json(status)
        return _json({"error": "Not found"}, 404)


# -- Bluesky PDS ---------------------------------------------------------------------------

TID = regex.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def _jwt(kind: str, n: int, ttl: float) -> str:
    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{b64({'alg': 'HS256'})}.{b64({'scope': kind, 'n': n, 'exp': int(time.time() + ttl)})}.sig{n}{kind}"


class FakeBluesky(FakeServer):
    BLOB_LIMIT = 1_000_000
    VIDEO_LIMIT = 300_000_000  # app.bsky.embed.video's maxSize

    def __init__(self, handle: str, password: str, did: str = "did:plc:fakefakefakefake"):
        super().__init__()
        self.account, self.password, self.did = handle, password, did
        self.access: dict[str, bool] = {}   # token -> valid
        self.refresh: dict[str, bool] = {}
        self.sessions_created = 0
        self.refreshes = 0
        # createSession is rate limited per account (30 per 5 minutes and 100-300 a day); past the limit
        # the PDS answers 429 RateLimitExceeded with RateLimit-* headers (reset in Unix seconds).
        self.session_limit: int | None = None
        self.session_window_s = 86_400
        self.session_refusals = 0
        self.blobs: dict[str, dict] = {}
        self.records: dict[str, dict] = {}
        self._n = 0

    def expire_access_tokens(self):
        with self.lock:
            for t in self.access:
                self.access[t] = False

    def revoke_refresh_tokens(self):
        with self.lock:
            for t in self.refresh:
                self.refresh[t] = False

    def route(self, rec):
        return rec.path.removeprefix("/xrpc/")

    def _tokens(self):
        self._n += 1
        a, r = _jwt("access", self._n, 7200), _jwt("refresh", self._n, 86400 * 60)
        self.access[a] = True
        self.refresh[r] = True
        return {"accessJwt": a, "refreshJwt": r, "handle": self.account, "did": self.did, "active": True}

    def _authed(self, rec):
        auth = rec.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        if token not in self.access:
            return _json({"error": "InvalidToken", "message": "Token could not be verified"}, 400)
        if not self.access[token]:
            return _json({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        return None

    def handle(self, route, rec):
        if route == "com.atproto.server.createSession":
            body = rec.json or {}
            if body.get("identifier") not in (self.account, self.did) or body.get("password") != self.password:
                return _json({"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, 401)
            with self.lock:
                if self.session_limit is not None and self.sessions_created >= self.session_limit:
                    self.session_refusals += 1
                    reset = int(time.time() + self.session_window_s)
                    return _json({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, 429, {
                        "RateLimit-Limit": str(self.session_limit), "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(reset), "RateLimit-Policy": f"{self.session_limit};w={self.session_window_s}"})
                self.sessions_created += 1
                return _json(self._tokens())
        if route == "com.atproto.server.refreshSession":
            token = rec.headers.get("Authorization", "").removeprefix("Bearer ")
            with self.lock:
                if not self.refresh.get(token):
                    return _json({"error": "ExpiredToken", "message": "Token has expired"}, 400)
                self.refresh[token] = False
                self.refreshes += 1
                return _json(self._tokens())
        if route == "com.atproto.repo.getRecord" and rec.method == "GET":
            rkey = (rec.query.get("rkey") or [""])[0]
            r = self.records.get(rkey)
            if r is None or (rec.query.get("repo") or [""])[0] != self.did:
                return _json({"error": "RecordNotFound", "message": f"Could not locate record: {rkey}"}, 400)
            return _json(r)
        denied = self._authed(rec)
        if denied is not None:
            return denied
        if route == "com.atproto.repo.uploadBlob":
            video = rec.headers.get("Content-Type", "").startswith("video/")
            limit = self.VIDEO_LIMIT if video else self.BLOB_LIMIT
            if len(rec.body) > limit:
                return _json({"error": "BlobTooLarge", "message": f"This file is too large. It is "
                              f"{len(rec.body)} bytes but the maximum size is {limit} bytes."}, 400)
            cid = "bafkrei" + hashlib.sha256(rec.body).hexdigest()[:40]
            mime = rec.headers.get("Content-Type", "")
            blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(rec.body)}
            with self.lock:
                self.blobs[cid] = {"blob": blob, "data": rec.body}
            return _json({"blob": blob})
        if route == "com.atproto.repo.createRecord":
            return self._create(rec.json or {})
        return _json({"error": "MethodNotImplemented", "message": "Method Not Implemented"}, 501)

    def _create(self, body):
        def bad(msg):
            return _json({"error": "InvalidRequest", "message": msg}, 400)
        if body.get("repo") not in (self.did, self.account):
            return bad("Invalid repo")
        if body.get("collection") != "app.bsky.feed.post":
            return bad("Invalid collection")
        rkey = body.get("rkey") or f"3l{len(self.records):011d}"[:13]
        if body.get("rkey") is not None and not TID.match(rkey):
            return bad(f"Invalid record key for app.bsky.feed.post: {rkey}")
        rec = body.get("record") or {}
        if rec.get("$type") != "app.bsky.feed.post" or not isinstance(rec.get("text"), str):
            return bad("Invalid app.bsky.feed.post record: Record/text must be a string")
        if not rec.get("createdAt"):
            return bad('Invalid app.bsky.feed.post record: Record must have the property "createdAt"')
        text = rec["text"]
        if len(regex.findall(r"\X", text)) > 300 or len(text.encode()) > 3000:
            return bad("Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes")
        embed = rec.get("embed")
        if embed is not None and embed.get("$type") == "app.bsky.embed.video":
            video = embed.get("video") or {}
            ref = (video.get("ref") or {}).get("$link")
            if ref not in self.blobs:
                return bad(f"Could not find blob: {ref}")
            if video.get("mimeType") != "video/mp4":
                return bad("Invalid app.bsky.feed.post record: Record/embed/video mimeType must be video/mp4")
            if video.get("size", 0) > self.VIDEO_LIMIT:
                return bad("Invalid app.bsky.feed.post record: Record/embed/video is too large")
            alt = embed.get("alt")
            if alt is not None and (not isinstance(alt, str) or len(regex.findall(r"\X", alt)) > 1000):
                return bad("Invalid app.bsky.feed.post record: Record/embed/alt must not be longer than 1000 graphemes")
            ar = embed.get("aspectRatio")
            if ar is not None and not (isinstance(ar.get("width"), int) and ar["width"] >= 1
                                       and isinstance(ar.get("height"), int) and ar["height"] >= 1):
                return bad("Invalid aspectRatio")
        elif embed is not None:
            if embed.get("$type") != "app.bsky.embed.images":
                return bad("Invalid embed")
            images = embed.get("images") or []
            if len(images) > 4:
                return bad("Invalid app.bsky.feed.post record: Record/embed/images must not have more than 4 elements")
            for img in images:
                if not isinstance(img.get("alt"), str):
                    return bad('Invalid app.bsky.feed.post record: Record/embed/images/0 must have the property "alt"')
                ref = ((img.get("image") or {}).get("ref") or {}).get("$link")
                if ref not in self.blobs:
                    return bad(f"Could not find blob: {ref}")
                ar = img.get("aspectRatio")
                if ar is not None and not (isinstance(ar.get("width"), int) and ar["width"] >= 1
                                           and isinstance(ar.get("height"), int) and ar["height"] >= 1):
                    return bad("Invalid aspectRatio")
        with self.lock:
            if rkey in self.records:
                # What a PDS does today on a duplicate record key (atproto#3718).
                return _json({"error": "InternalServerError", "message": "Internal Server Error"}, 500)
            uri = f"at://{self.did}/app.bsky.feed.post/{rkey}"
            cid = "bafyrei" + hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:40]
            self.records[rkey] = {"uri": uri, "cid": cid, "value": rec}
        return _json({"uri": uri, "cid": cid, "commit": {"cid": "bafyreicommit", "rev": "3l000000000aa"},
                      "validationStatus": "valid"})


# -- webhooks ------------------------------------------------------------------------------

class FakeWebhooks(FakeServer):
    """n8n (/webhook/<path>), Discord (/api/webhooks/<id>/<token>) and Slack (/services/...) receivers."""

    def __init__(self):
        super().__init__()
        self.messages: list[Recorded] = []

    def route(self, rec):
        if rec.path.startswith("/api/webhooks/"):
            return "discord"
        if rec.path.startswith("/services/"):
            return "slack"
        if rec.path.startswith("/webhook/"):
            return "n8n"
        return rec.path

    def handle(self, route, rec):
        if route == "discord":
            if "payload_json" not in rec.form:
                return _json({"message": "Cannot send an empty message", "code": 50006}, 400)
            payload = json.loads(rec.form["payload_json"][0])
            if len(payload.get("content", "")) > 2000:
                return _json({"message": "Invalid Form Body", "code": 50035,
                              "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}}, 400)
            with self.lock:
                self.messages.append(rec)
                mid = str(5000 + len(self.messages))
            if (rec.query.get("wait") or ["false"])[0] != "true":
                return Response(status=204)
            return _json({"id": mid, "channel_id": "42", "content": payload.get("content", ""),
                          "attachments": [{"id": str(i), "filename": f[0]} for i, f in enumerate(rec.files.values())]})
        if route == "slack":
            if not isinstance(rec.json, dict) or not (rec.json.get("text") or rec.json.get("blocks")):
                return Response("no_text", status=400, mimetype="text/plain")
            with self.lock:
                self.messages.append(rec)
            return Response("ok", mimetype="text/plain")
        if route == "n8n":
            with self.lock:
                self.messages.append(rec)
            return _json({"message": "Workflow was started"})
        return _json({"message": "404: Not Found", "code": 0}, 404)
