"""Bluesky (AT Protocol) target.

``com.atproto.server.createSession`` once per (PDS, handle), saved under ``PIXELMILL_HOME/sessions``
and shared by every process there (``BlueskySessions``), refreshed with
``com.atproto.server.refreshSession`` when the access token expires (sessions are limited to about
100 a day); a new login only when the refresh is refused. Then ``com.atproto.repo.uploadBlob`` per
image (or the one MP4 video) and ``com.atproto.repo.createRecord`` of an ``app.bsky.feed.post`` with an
``app.bsky.embed.images`` (or ``app.bsky.embed.video``) embed (alt text, aspectRatio) under a deterministic
record key: before any
repeated createRecord the record is looked up with ``com.atproto.repo.getRecord``, so a post that
was created but not confirmed is found instead of written twice.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests

from .base import AmbiguousDelivery, Delivery, Keys, Limits, Post, PostingError, Target
from .http import Http, mark_sensitive, platform_message
from .preflight import graphemes
from .session_file import SessionFiles

BLOB_LIMIT = 1_000_000
S32 = "234567abcdefghijklmnopqrstuvwxyz"
TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_TAG = re.compile(r"(?:^|\s)(#[^\s#.,;:!?()\[\]{}\"'`]+)")
_LINK = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]]")


# app.bsky.embed.video: one MP4 blob, up to 300,000,000 bytes (the lexicon's maxSize; formerly 100 MB), alt
# text of at most 1,000 graphemes; Bluesky takes videos of up to 10 minutes.
VIDEO_BYTES, VIDEO_SECONDS, VIDEO_ALT = 300_000_000, 600.0, 1000


def make_tid(micros: int, clock_id: int) -> str:
    """A TID: 53 bits of microseconds since the epoch and a 10-bit clock id, base32-sortable.

    pixelmill derives both from (original run, step, target): the run's creation second plus 20 bits
    of a hash as the microseconds, and 10 more bits of the hash as clock id."""
    value = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    out = []
    for _ in range(13):
        out.append(S32[value & 31])
        value >>= 5
    return "".join(reversed(out))


def facets(text: str) -> list[dict]:
    """Link and hashtag facets (UTF-8 byte offsets) so they are clickable in Bluesky."""
    result = []
    for m in _LINK.finditer(text):
        start, end = len(text[:m.start()].encode()), len(text[:m.end()].encode())
        result.append({"index": {"byteStart": start, "byteEnd": end},
                       "features": [{"$type": "app.bsky.richtext.facet#link", "uri": m.group(0)}]})
    for m in _TAG.finditer(text):
        tag = m.group(1)
        if len(tag) > 65 or tag[1:].isdigit():
            continue
        s = m.start(1)
        start, end = len(text[:s].encode()), len(text[:s + len(tag)].encode())
        result.append({"index": {"byteStart": start, "byteEnd": end},
                       "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag[1:]}]})
    return sorted(result, key=lambda f: f["index"]["byteStart"])


def _jwt_exp(token: str) -> float | None:
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(data["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


@dataclass
class Session:
    service: str
    identifier: str
    did: str
    handle: str
    access: str
    refresh: str

    def saved(self) -> dict:
        return {"did": self.did, "handle": self.handle, "accessJwt": self.access, "refreshJwt": self.refresh}


class BlueskySessions:
    """Bluesky sessions, one per (PDS, identifier), shared by threads and, through ``folder``, by processes.

    ``createSession`` is limited per account (30 per 5 minutes, 100-300 a day), so a session is
    created once, saved in ``folder`` (0600 files, see ``session_file``), reused by every process of the
    same ``PIXELMILL_HOME``, refreshed with ``refreshSession`` when the access token expires, and
    created again only when the refresh is refused. Without ``folder`` it lives in this process only.
    """

    def __init__(self, folder: Path | None = None):
        self._sessions: dict[tuple[str, str], Session] = {}
        self._lock = threading.Lock()
        self._files = SessionFiles(folder, "bluesky") if folder is not None else None
        self.created = 0
        self.refreshed = 0

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()

    def get(self, http: Http, service: str, identifier: str, password: Callable[[], str]) -> Session:
        key = (service, identifier)
        with self._lock:
            sess = self._sessions.get(key)
            if sess is not None and not _expiring(sess.access):
                return sess
            with self._shared(service, identifier):
                saved = self._load(service, identifier)
                if saved is not None and (sess is None or saved.access != sess.access):
                    sess = saved  # another process logged in or refreshed meanwhile
                if sess is None:
                    sess = self._store(self._create(http, service, identifier, password))
                elif _expiring(sess.access):
                    sess = self._store(self._refresh_or_create(http, sess, password))
                self._sessions[key] = sess
                return sess

    def renew(self, http: Http, stale: Session, password: Callable[[], str]) -> Session:
        """After an ExpiredToken answer: refresh (or, if the refresh token is dead too, log in again)."""
        key = (stale.service, stale.identifier)
        with self._lock:
            current = self._sessions.get(key)
            if current is not None and current.access != stale.access:
                return current  # another thread renewed it already
            with self._shared(*key):
                saved = self._load(*key)
                if saved is not None and saved.access != stale.access:
                    sess = saved  # another process renewed it already
                else:
                    sess = self._store(self._refresh_or_create(http, saved or stale, password))
                self._sessions[key] = sess
                return sess

    # -- the shared copy ---------------------------------------------------------------

    @contextmanager
    def _shared(self, service: str, identifier: str):
        if self._files is None:
            yield
            return
        with self._files.locked(service, identifier):
            yield

    def _load(self, service: str, identifier: str) -> Session | None:
        if self._files is None:
            return None
        data = self._files.load(service, identifier)
        try:
            sess = Session(service, identifier, data["did"], data["handle"], data["accessJwt"], data["refreshJwt"])
        except (TypeError, KeyError):
            return None
        mark_sensitive(sess.access, sess.refresh)
        return sess

    def _store(self, sess: Session) -> Session:
        if self._files is not None:
            self._files.save(sess.service, sess.identifier, sess.saved())
        return sess

    # -- the XRPC calls ---------------------------------------------------------------------

    def _refresh_or_create(self, http: Http, sess: Session, password) -> Session:
        try:
            resp = http.session.post(f"{sess.service}/xrpc/com.atproto.server.refreshSession",
                                     headers={"Authorization": f"Bearer {sess.refresh}"},
                                     timeout=(http.policy.connect_timeout, http.policy.read_timeout))
        except requests.RequestException as exc:
            raise PostingError(f"{http.label}: could not refresh the session ({type(exc).__name__})",
                               definitive=True) from None
        if resp.status_code == 200:
            data = resp.json()
            mark_sensitive(data.get("accessJwt"), data.get("refreshJwt"))
            self.refreshed += 1
            http.logger.info("%s: session refreshed", http.label)
            return Session(sess.service, sess.identifier, data.get("did", sess.did), data.get("handle", sess.handle),
                           data["accessJwt"], data["refreshJwt"])
        if resp.status_code not in (400, 401):  # a server error or rate limit is no reason to log in again
            raise PostingError(f"{http.label} answered refreshSession with HTTP {resp.status_code}: "
                               f"{platform_message(resp)}", status=resp.status_code)
        http.logger.info("%s: session refresh refused (%s); logging in again", http.label, platform_message(resp))
        return self._create(http, sess.service, sess.identifier, password)

    def _create(self, http: Http, service: str, identifier: str, password) -> Session:
        resp = http.request("POST", f"{service}/xrpc/com.atproto.server.createSession", idempotent=True,
                            json={"identifier": identifier, "password": password()})
        data = resp.json()
        mark_sensitive(data.get("accessJwt"), data.get("refreshJwt"))
        self.created += 1
        http.logger.info("%s: new session for %s", http.label, identifier)
        return Session(service, identifier, data["did"], data.get("handle", identifier), data["accessJwt"],
                       data["refreshJwt"])

def _expiring(token: str) -> bool:
    exp = _jwt_exp(token)
    return exp is not None and exp - time.time() < 60


class BlueskyTarget(Target):
    kind = "bluesky"
    dedupes = True  # deterministic record key + getRecord before any repeat

    def __init__(self, http: Http, sessions: BlueskySessions, service: str, identifier: str,
                 password: Callable[[], str], *, language: str | None = None, web_url: str = "https://bsky.app",
                 created_at: Callable[[], str] | None = None):
        self.http = http
        self.sessions = sessions
        self.service = service.rstrip("/")
        self.identifier = identifier
        self._password = password
        self.language = language
        self.web_url = web_url.rstrip("/")
        self._created_at = created_at or (lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                                          .replace("+00:00", "Z"))

    # A video uses the documented simple method: uploadBlob to the PDS, then an app.bsky.embed.video record
    # (Bluesky's video service processes it once the post exists; the video service route, uploadVideo with
    # a service-auth token, would have it processed first).
    def limits(self) -> Limits:
        return Limits(max_images=4, max_image_bytes=BLOB_LIMIT, media_types=("image/jpeg", "image/png", "image/webp"),
                      max_text=300, count_text=graphemes, text_unit="graphemes", max_text_bytes=3000, max_alt=2000,
                      count_alt=graphemes, video_types=("video/mp4",), max_videos=1, video_with_images=False,
                      max_video_bytes=VIDEO_BYTES, max_video_s=VIDEO_SECONDS, max_video_alt=VIDEO_ALT)

    def identity(self) -> str:
        return f"bluesky:{self.service}:{self.identifier}"

    def record(self, post: Post, blobs: list[dict]) -> dict:
        rec: dict = {"$type": "app.bsky.feed.post", "text": post.text, "createdAt": self._created_at()}
        f = facets(post.text)
        if f:
            rec["facets"] = f
        if self.language:
            rec["langs"] = [self.language]
        if len(post.images) == 1 and post.images[0].is_video:
            video = post.images[0]
            rec["embed"] = {"$type": "app.bsky.embed.video", "video": blobs[0], "alt": video.alt,
                            "aspectRatio": {"width": video.width, "height": video.height}}
        elif post.images:
            rec["embed"] = {"$type": "app.bsky.embed.images", "images": [
                {"image": blob, "alt": img.alt, "aspectRatio": {"width": img.width, "height": img.height}}
                for blob, img in zip(blobs, post.images, strict=True)]}
        return rec

    def describe(self, post: Post, keys: Keys) -> list[dict]:
        auth = {"Authorization": "Bearer ***"}
        reqs = [{"method": "POST", "url": f"{self.service}/xrpc/com.atproto.server.createSession",
                 "json": {"identifier": self.identifier, "password": "***"},
                 "note": "only when this process has no session yet"}]
        blobs = []
        for i, img in enumerate(post.images, 1):
            reqs.append({"method": "POST", "url": f"{self.service}/xrpc/com.atproto.repo.uploadBlob",
                         "headers": {**auth, "Content-Type": img.media_type}, "body": f"{len(img.data)} bytes"})
            blobs.append({"$type": "blob", "ref": {"$link": f"<cid of blob {i}>"}, "mimeType": img.media_type,
                          "size": len(img.data)})
        reqs.append({"method": "POST", "url": f"{self.service}/xrpc/com.atproto.repo.createRecord", "headers": auth,
                     "json": {"repo": "<did of the session>", "collection": "app.bsky.feed.post", "rkey": keys.rkey,
                              "record": self.record(post, blobs)}})
        return reqs

    # -- sending ----------------------------------------------------------------

    def _call(self, method: str, nsid: str, *, idempotent: bool = True, before_retry=None, headers=None,
              **kwargs):
        sess = self.sessions.get(self.http, self.service, self.identifier, self._password)
        for renewed in (False, True):
            try:
                resp = self.http.request(method, f"{self.service}/xrpc/{nsid}", idempotent=idempotent,
                                         headers={**(headers or {}), "Authorization": f"Bearer {sess.access}"},
                                         before_retry=before_retry, **kwargs)
                return resp, sess
            except PostingError as exc:
                expired = exc.status in (400, 401) and ("ExpiredToken" in str(exc) or "InvalidToken" in str(exc))
                if not expired or renewed:
                    raise
                sess = self.sessions.renew(self.http, sess, self._password)
        raise AssertionError("unreachable")

    def _existing(self, did: str, rkey: str, text: str):
        """The post under our record key, if an earlier try created it (com.atproto.repo.getRecord)."""
        try:
            resp = self.http.session.get(f"{self.service}/xrpc/com.atproto.repo.getRecord",
                                         params={"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey},
                                         timeout=(self.http.policy.connect_timeout, self.http.policy.read_timeout))
        except requests.RequestException as exc:
            raise AmbiguousDelivery(f"{self.http.label}: could not check whether record {rkey} already exists "
                                    f"({type(exc).__name__}); not sending again for now") from None
        if resp.status_code != 200:
            return None
        found = (resp.json().get("value") or {}).get("text")
        if found != text:
            raise PostingError(f"{self.http.label}: record {rkey} already exists with other text; "
                               "refusing to treat it as this post")
        self.http.logger.info("%s: record %s already exists; not creating it again", self.http.label, rkey)
        return resp

    def send(self, post: Post, keys: Keys, *, resume: bool) -> Delivery:
        sess = self.sessions.get(self.http, self.service, self.identifier, self._password)
        if resume:
            found = self._existing(sess.did, keys.rkey, post.text)
            if found is not None:
                return self._delivery(found.json(), sess, keys, existing=True)
        blobs = []
        for img in post.images:
            resp, sess = self._call("POST", "com.atproto.repo.uploadBlob", data=img.data,
                                    headers={"Content-Type": img.media_type})
            blob = resp.json().get("blob")
            if not isinstance(blob, dict):
                raise PostingError(f"Bluesky answered uploadBlob without a blob: {resp.text[:200]}")
            blobs.append(blob)
        body = {"repo": sess.did, "collection": "app.bsky.feed.post", "rkey": keys.rkey,
                "record": self.record(post, blobs)}
        found: list = []

        def look_up():  # before a repeated createRecord: did the earlier try create it after all?
            answer = self._existing(sess.did, keys.rkey, post.text)
            if answer is not None:
                found.append(answer)
            return answer

        resp, sess = self._call("POST", "com.atproto.repo.createRecord", json=body, before_retry=look_up)
        return self._delivery(resp.json(), sess, keys, existing=bool(found))

    def _delivery(self, data: dict, sess: Session, keys: Keys, *, existing: bool) -> Delivery:
        uri = data.get("uri") or f"at://{sess.did}/app.bsky.feed.post/{keys.rkey}"
        rkey = uri.rsplit("/", 1)[-1]
        return Delivery(uri, f"{self.web_url}/profile/{sess.handle}/post/{rkey}",
                        {"cid": data.get("cid"), "existing": existing})

