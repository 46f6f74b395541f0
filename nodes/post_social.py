"""The ``post_social`` node: post text, images or a video to Mastodon, Bluesky, a webhook (n8n, Discord,
Slack) or a local outbox folder, exactly once, after pre-flight checks against the platform's limits."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pixelmill.labels.inspect import InspectError, labelled_ai
from pixelmill.node import ArtifactRef, Cancelled, Model, Node
from pixelmill.posting import preflight
from pixelmill.posting.base import Keys, Post, PostImage, PostingError, Target
from pixelmill.posting.bluesky import BlueskySessions, BlueskyTarget, make_tid
from pixelmill.posting.http import Http, RetryPolicy
from pixelmill.posting.ledger import SENDING, SENT, Ledger, ledger_key
from pixelmill.posting.mastodon import MastodonTarget
from pixelmill.posting.outbox import OutboxTarget
from pixelmill.posting.webhook import WebhookTarget

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SESSIONS_SERVICE = "posting.bluesky_sessions"
DEFAULT_DISCLOSURE = "#AIgenerated"
# How long an unconfirmed post blocks other runs from posting the same content (Mastodon keeps
# idempotency keys about this long; after it, a lost post would have shown up for anyone checking).
UNCONFIRMED_WINDOW = timedelta(hours=1)


class PostSocialConfig(Model):
    target: Literal["outbox", "mastodon", "bluesky", "webhook"] = Field(
        "outbox", description="where to post; the outbox works offline")
    dry_run: bool = Field(False, description="check everything and return the requests without sending")
    allow_truncate: bool = Field(False, description="cut text/alt text that is too long, with an ellipsis")
    disclosure: str | Literal[False] | None = Field(
        None, description="added to the text on its own line, e.g. 'Image generated with AI'; unset: "
        f"'{DEFAULT_DISCLOSURE}' when an image's labels say AI-generated; false: none")
    alt_suffix: str = Field("(AI-generated image)", description="appended to every alt text ('' for none)")
    video_alt_suffix: str = Field("(AI-generated video)", description="appended to a video's alt text ('' for none)")
    max_video_seconds: float | None = Field(None, gt=0, description=(
        "longest video to post, on top of the target's own limits (Mastodon has no length limit)"))
    require_alt_text: bool = Field(True, description="fail when an image has no alt text")
    language: str | None = Field(None, description="ISO 639 language of the post, e.g. 'en'")
    # Mastodon
    instance: str | None = Field(None, description="Mastodon: instance URL, e.g. https://mastodon.social")
    token_secret: str | None = Field(None, description="Mastodon: name of the secret holding the access token")
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    spoiler_text: str | None = Field(None, description="Mastodon: content warning")
    sensitive: bool = False
    max_chars: int = Field(500, ge=1, description="Mastodon: the instance's status length limit")
    media_timeout: float = Field(60.0, gt=0, description="Mastodon: longest wait for media processing (s)")
    poll_interval: float = Field(1.0, gt=0, description="Mastodon: seconds between media status polls")
    # Bluesky
    service: str = Field("https://bsky.social", description="Bluesky: PDS URL")
    handle: str | None = Field(None, description="Bluesky: handle or DID to log in with")
    password_secret: str | None = Field(None, description="Bluesky: name of the secret holding an app password")
    web_url: str = Field("https://bsky.app", description="Bluesky: web app base for the post URL")
    # Webhook
    url: str | None = Field(None, description="webhook: URL (use url_secret when the URL holds a token)")
    url_secret: str | None = Field(None, description="webhook: name of the secret holding the URL")
    flavour: Literal["n8n", "discord", "slack", "generic"] = "generic"
    body: dict[str, Any] | None = Field(None, description="webhook: body template; strings are jinja2 over text, "
                                        "caption, labels, run_id, workflow, step_id, images, idempotency_key")
    image_mode: Literal["base64", "url", "multipart", "none"] = Field(
        "base64", description="webhook (n8n/generic): how images travel")
    image_base_url: str | None = Field(None, description="public URL of artifacts, with {run_id} and {name}")
    auth_header: str | None = Field(None, description="webhook: header carrying auth_secret, e.g. X-Token")
    auth_secret: str | None = Field(None, description="webhook: name of the secret sent in auth_header")
    receiver_dedupes: bool = Field(False, description="webhook: the receiver drops repeats by Idempotency-Key")
    resend_unconfirmed: bool = Field(False, description="send although an earlier attempt's outcome is unknown "
                                     "(the target cannot drop duplicates, or another run's identical post is "
                                     "unconfirmed)")
    # Outbox
    folder: str | None = Field(None, description="outbox folder (relative: under PIXELMILL_HOME); "
                               "default PIXELMILL_HOME/outbox")
    # HTTP
    timeout: float = Field(30.0, gt=0, description="seconds to wait for an answer")
    connect_timeout: float = Field(10.0, gt=0)
    retries: int = Field(3, ge=0, le=10, description="retries of one request on 429/5xx")
    retry_backoff: float = Field(1.0, ge=0, description="seconds before the first retry, doubled each time")
    max_retry_wait: float = Field(60.0, ge=0, description="longest Retry-After honoured; above it the step fails")

    @field_validator("token_secret", "password_secret", "url_secret", "auth_secret")
    @classmethod
    def _env_name(cls, value):
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"'{value}' is not a secret name: give the NAME of an environment variable "
                             "(e.g. MASTODON_TOKEN), never the secret itself")
        return value

    @field_validator("instance", "service", "url", "web_url")
    @classmethod
    def _http_url(cls, value):
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"'{value}' is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _target_options(self):
        t = self.target
        if t == "mastodon" and (not self.instance or not self.token_secret):
            raise ValueError("target 'mastodon' needs 'instance' and 'token_secret'")
        if t == "bluesky" and (not self.handle or not self.password_secret):
            raise ValueError("target 'bluesky' needs 'handle' and 'password_secret' (an app password)")
        if t == "webhook" and bool(self.url) == bool(self.url_secret):
            raise ValueError("target 'webhook' needs exactly one of 'url' or 'url_secret'")
        if bool(self.auth_header) != bool(self.auth_secret):
            raise ValueError("'auth_header' and 'auth_secret' go together")
        return self


class PostSocialInputs(Model):
    text: str = Field("", description="the post's text")
    images: list[ArtifactRef] = Field(default_factory=list, description="images to attach (the labelled ones)")
    image: ArtifactRef | None = Field(None, description="one image (added after 'images')")
    video: ArtifactRef | None = Field(None, description=(
        "a video to attach (an H.264 MP4 from make_video, best the label_ai step's); alt text like an image's"))
    alt_text: str | list[str] | None = Field(None, description="alt text: one for all images or one each; "
                                             "default: the caption")
    caption: str | None = Field(None, description="the image caption (default alt text)")
    labels: Any = Field(None, description="AI labels to pass along in webhook and outbox payloads")


class PostSocialOutputs(Model):
    target: str
    destination: str
    state: Literal["sent", "dry_run"]
    deduplicated: bool = False
    remote_id: str | None = None
    url: str | None = None
    text: str = ""
    images: int = 0
    videos: int = 0
    warnings: list[str] = Field(default_factory=list)
    disclosure: str | None = Field(None, description="the disclosure line added to the text")
    unlabelled_images: list[str] = Field(default_factory=list, description="images that carry no AI label "
                                         "(they did not go through label_ai)")
    request: list[dict] | None = None


class PostSocialNode(Node):
    """Post text and images or a video (alt text from the caption, AI disclosure) to Mastodon, Bluesky,
    a webhook (n8n, Discord, Slack) or a local outbox folder. Pre-flight checks against the platform's limits run
    before any request; a ledger in the run store makes retries and re-runs post exactly once."""

    type = "post_social"
    version = "1"
    Config = PostSocialConfig
    Inputs = PostSocialInputs
    Outputs = PostSocialOutputs
    uses_gpu = False
    deterministic = False

    def run(self, inputs: PostSocialInputs, ctx) -> PostSocialOutputs:
        cfg = self.config
        store = ctx.service("store")
        origin, origin_created = _origin(store, ctx.run_id)
        target = self._target(ctx)
        post, labelled = self._post(inputs, ctx)
        limits = target.limits()
        if cfg.max_video_seconds is not None:
            limits = replace(limits, max_video_s=min(cfg.max_video_seconds, limits.max_video_s or float("inf")))
        limits, limit_notes = target.limits_for(post, limits)
        for note in limit_notes:
            ctx.logger.warning("post_social: %s", note)
        disclosure = _disclosure(cfg.disclosure, any(labelled.values()))
        unlabelled = [name for name, ai in labelled.items() if not ai]
        prepared, notes = preflight.check(post, limits, target=_label(cfg), allow_truncate=cfg.allow_truncate,
                                          disclosure=disclosure, require_alt=cfg.require_alt_text)
        notes = [*limit_notes, *notes]
        for note in notes:
            ctx.logger.info("post_social pre-flight: %s", note)
        if unlabelled:
            warning = (f"{len(unlabelled)} of {len(labelled)} images carry no AI label ({', '.join(unlabelled)}): "
                       "they did not go through label_ai; pass the label_ai step's image so the label travels "
                       "with the file")
            ctx.logger.warning("post_social: %s", warning)
            ctx.progress(0, None, f"warning: {warning}")  # a step event for the run history and live views
            notes = [*notes, warning]
        identity = target.identity()
        content = _content_hash(prepared)
        seed = hashlib.sha256(f"{origin}\x1f{ctx.step_id}\x1f{identity}".encode()).hexdigest()
        keys = Keys(idempotency_key=f"pixelmill-{seed[:32]}",
                    rkey=make_tid(_micros(origin_created) // 1_000_000 * 1_000_000 + int(seed[4:9], 16) % 1_000_000,
                                  int(seed[:3], 16)), slot=seed[:16])
        ledger = Ledger(store)
        key = ledger_key(ctx.workflow, origin, ctx.step_id, identity, content)
        n_videos = sum(1 for m in prepared.images if m.is_video)
        base = dict(target=cfg.target, destination=identity, text=prepared.text,
                    images=len(prepared.images) - n_videos, videos=n_videos,
                    warnings=notes, disclosure=disclosure, unlabelled_images=unlabelled)
        if cfg.dry_run:
            done = ledger.get(key)
            return PostSocialOutputs(state="dry_run", request=target.describe(prepared, keys),
                                     deduplicated=bool(done and done.state == SENT),
                                     remote_id=done.remote_id if done else None, url=done.url if done else None,
                                     **base)
        done = ledger.get(key)
        if done is not None and done.state == SENT:
            ctx.logger.info("post_social: already posted to %s as %s; not posting again", identity, done.remote_id)
            return PostSocialOutputs(state="sent", deduplicated=True, remote_id=done.remote_id, url=done.url, **base)
        other = ledger.others_sent(ctx.workflow, origin, ctx.step_id, identity, content)
        if other:
            o = other[0]
            raise PostingError(
                f"step '{ctx.step_id}' of run {origin} already posted different content to {identity} "
                f"({o['state']}, remote id {o['remote_id'] or 'unknown'}); refusing to post a second time")
        if not cfg.resend_unconfirmed:
            pending = ledger.unconfirmed_elsewhere(ctx.workflow, origin, ctx.step_id, identity, content,
                                                   since=_utcnow() - UNCONFIRMED_WINDOW)
            if pending:
                p = pending[0]
                minutes = (_utcnow() - p["updated_at"]).total_seconds() / 60
                exc = PostingError(
                    f"run {p['last_run_id']} tried to post the same content to {_label(cfg)} {minutes:.0f} minutes "
                    "ago and the delivery was not confirmed, so the post may already exist; this run does not "
                    f"post it a second time. Finish that run safely with `pixelmill retry {p['last_run_id']}` "
                    f"(or POST /api/v1/runs/{p['last_run_id']}/retry), or set config 'resend_unconfirmed: true' "
                    "to post anyway", definitive=True)
                exc.retryable = False
                raise exc
        entry = ledger.begin(key=key, workflow=ctx.workflow, run_id=origin, step_id=ctx.step_id, target=identity,
                             content_hash=content, last_run_id=ctx.run_id, idempotency_key=keys.idempotency_key)
        if entry.state == SENT:  # another attempt finished it meanwhile
            return PostSocialOutputs(state="sent", deduplicated=True, remote_id=entry.remote_id, url=entry.url,
                                     **base)
        resume = entry.previous_state == SENDING
        age = (_utcnow() - entry.last_attempt_at).total_seconds() if entry.last_attempt_at else 0.0
        if (resume and target.dedupe_window_s is not None and age > target.dedupe_window_s
                and not cfg.resend_unconfirmed):
            raise PostingError(
                f"an earlier attempt to post to {_label(cfg)} ended without an answer {age / 60:.0f} minutes ago, "
                "longer than the platform remembers its idempotency key, so the post may already be there and "
                "would not be recognised; it is not sent again. Check the account; to send anyway set config "
                "'resend_unconfirmed: true'", definitive=False)
        if resume and not target.dedupes and not cfg.resend_unconfirmed:
            raise PostingError(
                f"an earlier attempt to post to {_label(cfg)} ended without an answer, so the post may already be "
                "there; this target cannot drop a duplicate, so it is not sent again. Check the destination; to "
                "send anyway set config 'resend_unconfirmed: true' (or 'receiver_dedupes: true' when the "
                "receiver honours Idempotency-Key)", definitive=False)
        if resume:
            ctx.logger.info("post_social: resuming an unconfirmed post to %s with the same key", identity)
        try:
            delivery = target.send(prepared, keys, resume=resume)
        except PostingError as exc:
            # A refusal means this attempt posted nothing; after an unconfirmed attempt the row stays
            # 'sending', because that earlier attempt may still have posted.
            if exc.definitive and not resume:
                ledger.mark_failed(entry.id, str(exc))
                raise
            exc.args = (f"{exc}. {_may_exist(cfg, target, ctx.run_id)}",)
            raise
        except Cancelled as exc:
            exc.args = (f"{exc}. {_may_exist(cfg, target, ctx.run_id)}",)
            raise
        except Exception as exc:  # noqa: BLE001 - an unexpected failure mid-send leaves the outcome unknown
            raise PostingError(f"{type(exc).__name__} while posting to {_label(cfg)}: {exc}. "
                               f"{_may_exist(cfg, target, ctx.run_id)}", definitive=False) from exc
        try:
            ledger.mark_sent(entry.id, delivery.remote_id, delivery.url, delivery.detail)
        except Exception as exc:  # noqa: BLE001 - the post exists; say so and how to finish safely
            raise PostingError(f"posted to {_label(cfg)} ({delivery.url or delivery.remote_id}) but could not record "
                               f"it ({type(exc).__name__}: {exc}). {_may_exist(cfg, target, ctx.run_id)}",
                               definitive=False) from exc
        ctx.logger.info("post_social: posted to %s: %s", _label(cfg), delivery.url or delivery.remote_id)
        return PostSocialOutputs(state="sent", deduplicated=bool(delivery.detail.get("existing")),
                                 remote_id=delivery.remote_id, url=delivery.url, **base)

    # -- helpers ---------------------------------------------------------------------

    def _post(self, inputs: PostSocialInputs, ctx) -> tuple[Post, dict[str, bool]]:
        """The post, and for each image (by artifact name) whether its labels say AI-generated."""
        cfg = self.config
        refs = list(inputs.images) + ([inputs.image] if inputs.image else []) + ([inputs.video] if inputs.video else [])
        alts = inputs.alt_text
        if isinstance(alts, list) and len(alts) != len(refs):
            raise ValueError(f"input 'alt_text' has {len(alts)} entries for {len(refs)} images: give one each, "
                             "or one string for all")
        images, ref_dicts, labelled = [], [], {}
        for i, ref in enumerate(refs):
            path = ctx.artifact_path(ref)
            if not path.is_file():
                raise ValueError(f"image {i + 1}: artifact '{ref.name}' of run {ref.run_id} is not on disk ({path})")
            data = path.read_bytes()
            labelled[ref.name] = _labelled_ai(path)
            video = preflight.is_video(data)
            duration = None
            if video:
                media_type, width, height, duration = preflight.read_video(path, ref.name)
            else:
                media_type, width, height = preflight.read_image(data, ref.name)
            alt = alts[i] if isinstance(alts, list) else (alts if alts is not None else (inputs.caption or ""))
            suffix = cfg.video_alt_suffix if video else cfg.alt_suffix
            images.append(PostImage(data, media_type, width, height,
                                    preflight.alt_with_suffix(alt, suffix) if alt.strip() else "",
                                    Path(ref.name).name, duration_s=duration, path=path if video else None))
            url = cfg.image_base_url.format(run_id=ref.run_id, name=ref.name) if cfg.image_base_url else None
            ref_dicts.append({"run_id": ref.run_id, "name": ref.name, "url": url})
        return Post(text=inputs.text, images=images, caption=inputs.caption, labels=inputs.labels,
                    run_id=ctx.run_id, workflow=ctx.workflow, step_id=ctx.step_id,
                    artifact_names=[r.name for r in refs], image_refs=ref_dicts), labelled

    def _target(self, ctx) -> Target:
        cfg = self.config
        if cfg.target == "outbox":
            settings = ctx.service("settings")
            folder = Path(cfg.folder).expanduser() if cfg.folder else Path("outbox")
            if not folder.is_absolute():
                folder = Path(settings.home) / folder
            return OutboxTarget(folder)
        wait = _waiter(ctx)
        http = Http(_label(cfg), RetryPolicy(attempts=cfg.retries + 1, backoff=cfg.retry_backoff,
                                             max_retry_after=cfg.max_retry_wait, connect_timeout=cfg.connect_timeout,
                                             read_timeout=_within_step(cfg.timeout, ctx)), wait=wait, logger=ctx.logger)
        if cfg.target == "mastodon":
            token = ctx.secrets.get(cfg.token_secret)  # fails early, naming the variable, when unset
            return MastodonTarget(http, cfg.instance, lambda: token, visibility=cfg.visibility,
                                  language=cfg.language, spoiler_text=cfg.spoiler_text, sensitive=cfg.sensitive,
                                  max_chars=cfg.max_chars, media_timeout=cfg.media_timeout,
                                  poll_interval=cfg.poll_interval, wait=wait)
        if cfg.target == "bluesky":
            password = ctx.secrets.get(cfg.password_secret)
            home = Path(ctx.service("settings").home)
            sessions = ctx.service(SESSIONS_SERVICE, lambda: BlueskySessions(home / "sessions"))
            return BlueskyTarget(http, sessions, cfg.service, cfg.handle, lambda: password, language=cfg.language,
                                 web_url=cfg.web_url)
        url = ctx.secrets.get(cfg.url_secret) if cfg.url_secret else cfg.url
        headers = {cfg.auth_header: ctx.secrets.get(cfg.auth_secret)} if cfg.auth_header else {}
        return WebhookTarget(http, url, flavour=cfg.flavour, body=cfg.body, image_mode=cfg.image_mode,
                             headers=headers, dedupes=cfg.receiver_dedupes, url_is_secret=bool(cfg.url_secret))


def _label(cfg: PostSocialConfig) -> str:
    if cfg.target == "mastodon":
        return "Mastodon"
    if cfg.target == "bluesky":
        return "Bluesky"
    if cfg.target == "webhook":
        return {"n8n": "n8n webhook", "discord": "Discord webhook", "slack": "Slack webhook"}.get(
            cfg.flavour, "webhook")
    return "outbox"


def _disclosure(configured: str | Literal[False] | None, ai_labelled: bool) -> str | None:
    """The disclosure line: the configured one, none when switched off, else the default for AI images."""
    if configured is False or (isinstance(configured, str) and not configured.strip()):
        return None
    if configured is not None:
        return configured
    return DEFAULT_DISCLOSURE if ai_labelled else None


def _labelled_ai(path: Path) -> bool:
    """Whether the file's own labels (XMP source type, C2PA, watermark) say AI made it."""
    try:
        return labelled_ai(path)
    except InspectError:
        return False


def _may_exist(cfg: PostSocialConfig, target: Target, run_id: str) -> str:
    """What an unconfirmed delivery means and how to finish it without posting twice."""
    text = f"The post may already exist on {_label(cfg)}. "
    if not target.dedupes and not cfg.resend_unconfirmed:
        return text + ("Check the destination before anything else: a retry will not send it again unless "
                       "config 'resend_unconfirmed: true' is set.")
    how = {"mastodon": "sends it with the same Idempotency-Key (Mastodon returns the post it already made)",
           "bluesky": "looks the post up under the same record key first",
           "outbox": "finds the post's folder"}.get(cfg.target, "sends it with the same Idempotency-Key")
    return text + (f"Retry safely with `pixelmill retry {run_id}` (or POST /api/v1/runs/{run_id}/retry): the "
                   f"retry reuses this run's posting ledger and {how}, so it does not post twice.")


def _origin(store, run_id: str) -> tuple[str, str | None]:
    """The run a chain of re-runs (``retry_of``) started from, and its creation time."""
    run = store.get_run(run_id)
    if run is None:
        return run_id, None
    seen = {run_id}
    while run.get("retry_of") and run["retry_of"] not in seen:
        parent = store.get_run(run["retry_of"])
        if parent is None:
            break
        seen.add(parent["id"])
        run = parent
    return run["id"], run.get("created_at")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _micros(created: str | None) -> int:
    if not created:
        return int(time.time() * 1_000_000)
    when = datetime.fromisoformat(created)
    return int(when.timestamp() * 1_000_000)


def _content_hash(post: Post) -> str:
    h = hashlib.sha256()
    h.update(post.text.encode("utf-8"))
    for img in post.images:
        h.update(b"\x1e" + hashlib.sha256(img.data).digest() + img.alt.encode("utf-8") + img.media_type.encode())
    return h.hexdigest()


def _within_step(seconds: float, ctx) -> float:
    """An HTTP timeout no longer than what is left of the step's own timeout."""
    left = ctx.time_left()
    return seconds if left is None else max(0.5, min(seconds, left))


def _waiter(ctx):
    """Sleep up to ``seconds``; True as soon as the step or run is cancelled."""
    def wait(seconds: float) -> bool:
        end = time.monotonic() + seconds
        while True:
            if ctx.cancelled:
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            ctx.cancel_event.wait(min(left, 0.1))
    return wait
