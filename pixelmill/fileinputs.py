"""Image and file inputs: uploads, base64 data URLs and http(s) URLs, checked and stored as run artifacts.

A value for an input of ``type: image`` or ``type: file`` may be

- an ``Upload`` (a multipart file part, from the webhook or the API),
- a ``data:`` URL (``data:image/png;base64,...``) in JSON,
- an ``http(s)://`` URL, fetched here: the host is resolved and every address checked, so loopback,
  private, link-local and other non-public ranges are refused unless ``PIXELMILL_ALLOW_PRIVATE_URLS=1``
  (the connection then goes to the checked address, and each redirect is checked the same way).

Every value is limited in size (``PIXELMILL_MAX_INPUT_BYTES``, 16 MiB by default). An image is sniffed
by its content (Pillow opens and verifies it; the declared type is ignored), and refused when it has
more than ``PIXELMILL_MAX_INPUT_PIXELS`` pixels (Pillow's decompression-bomb guard, ~89 MP by default).
The file is written to the run's artifact folder as ``input-<name>.<ext>`` and the input's value becomes
an artifact reference, so steps use it like any other image.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import ipaddress
import os
import re
import socket
import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

from PIL import Image, UnidentifiedImageError

from .artifacts import ArtifactStore, FolderArtifacts

MIB = 1024 * 1024
IMAGE_TYPES = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp"),
               "GIF": ("image/gif", "gif"), "BMP": ("image/bmp", "bmp"), "TIFF": ("image/tiff", "tif")}
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,", re.I)


class FileInputRefused(ValueError):
    """A file or image input that cannot be accepted; ``status`` is the HTTP status a server should use."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """A file part of a multipart request."""

    data: bytes
    filename: str = ""
    declared_type: str = ""


@dataclass
class FileLimits:
    max_bytes: int = 16 * MIB
    max_pixels: int = field(default_factory=lambda: int(Image.MAX_IMAGE_PIXELS or 89_478_485))
    allow_private: bool = False
    timeout_s: float = 10.0
    max_redirects: int = 3

    @classmethod
    def from_env(cls, environ=None) -> FileLimits:
        env = os.environ if environ is None else environ
        limits = cls()
        limits.max_bytes = int(env.get("PIXELMILL_MAX_INPUT_BYTES") or limits.max_bytes)
        limits.max_pixels = int(env.get("PIXELMILL_MAX_INPUT_PIXELS") or limits.max_pixels)
        limits.allow_private = env.get("PIXELMILL_ALLOW_PRIVATE_URLS", "").lower() in ("1", "true", "yes")
        return limits


@dataclass
class RunFiles:
    """Where a run's input files go: its artifacts (an ``ArtifactStore``, or a folder path for one)."""

    artifacts: ArtifactStore | Path
    run_id: str
    limits: FileLimits = field(default_factory=FileLimits.from_env)
    written: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.artifacts, ArtifactStore):
            self.artifacts = FolderArtifacts(self.artifacts)

    def save(self, name: str, data: bytes, media_type: str, ext: str) -> dict:
        stored = f"input-{name}.{ext}"
        self.artifacts.put(self.run_id, stored, data)
        self.written.append(stored)
        return {"kind": "artifact", "run_id": self.run_id, "name": stored, "media_type": media_type}

    def discard(self) -> None:
        for stored in self.written:
            self.artifacts.delete(self.run_id, stored)
        self.written.clear()


def for_trigger(specs: dict, values: dict) -> dict:
    """``values`` as a stored trigger keeps them: a data: URL of a file input is replaced by a short note."""
    out = dict(values)
    for name, value in values.items():
        spec = specs.get(name)
        if spec is not None and spec.type in ("image", "file") and isinstance(value, str) \
                and value[:5].lower() == "data:":
            out[name] = f"{value[:value.find(',') + 1 or 40][:80]}... ({len(value):,} characters, not kept here)"
    return out


def accept(name: str, kind: str, value, files: RunFiles) -> dict:
    """Read, check and store one ``image``/``file`` input; returns its artifact reference."""
    if isinstance(value, dict) and value.get("kind") == "artifact" and {"run_id", "name"} <= value.keys():
        return _existing(name, value, files)
    if isinstance(value, Upload):
        data, declared = value.data, value.declared_type
    elif isinstance(value, str) and value.lower().startswith("data:"):
        data, declared = _data_url(name, value, files.limits)
    elif isinstance(value, str) and value.lower().startswith(("http://", "https://")):
        data, declared = fetch(value, files.limits, what=f"input '{name}'")
    else:
        raise FileInputRefused(f"input '{name}' must be a file upload (multipart), a data: URL or an http(s) URL")
    if len(data) > files.limits.max_bytes:
        raise FileInputRefused(f"input '{name}' has {len(data):,} bytes, more than the limit of "
                               f"{files.limits.max_bytes:,} (PIXELMILL_MAX_INPUT_BYTES)", 413)
    if kind == "image":
        media_type, ext = sniff_image(name, data, files.limits.max_pixels)
    else:
        media_type, ext = _file_type(value, declared)
    return files.save(name, data, media_type, ext)


def _existing(name: str, ref: dict, files: RunFiles) -> dict:
    """An artifact reference (a retried run's stored input): only one of this run's own files or a stored one."""
    try:
        found = files.artifacts.exists(str(ref["run_id"]), str(ref["name"]))
    except ValueError:  # not a plain name
        found = False
    if not found:
        raise FileInputRefused(f"input '{name}': artifact {ref.get('name')!r} of run {ref.get('run_id')} "
                               f"does not exist")
    return {"kind": "artifact", "run_id": ref["run_id"], "name": ref["name"],
            "media_type": ref.get("media_type", "application/octet-stream")}


def _data_url(name: str, value: str, limits: FileLimits) -> tuple[bytes, str]:
    m = _DATA_URL.match(value)
    if not m:
        raise FileInputRefused(f"input '{name}': not a valid data: URL (expected 'data:<type>;base64,<data>')")
    payload = value[m.end():]
    if len(payload) > limits.max_bytes * 4 // 3 + 4:
        raise FileInputRefused(f"input '{name}' is larger than the limit of {limits.max_bytes:,} bytes "
                               f"(PIXELMILL_MAX_INPUT_BYTES)", 413)
    try:
        data = base64.b64decode(payload, validate=True) if m.group(3) else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise FileInputRefused(f"input '{name}': the data: URL is not valid base64") from None
    return data, (m.group(1) or "").lower()


def sniff_image(name: str, data: bytes, max_pixels: int) -> tuple[str, str]:
    """(media type, extension) from the content; refuses non-images, broken ones and decompression bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (w, h) = img.format, img.size
                if w * h > max_pixels:
                    raise FileInputRefused(
                        f"input '{name}' is a {w}x{h} image ({w * h:,} pixels), more than the limit of "
                        f"{max_pixels:,} (a possible decompression bomb; PIXELMILL_MAX_INPUT_PIXELS)", 413)
                img.verify()
    except FileInputRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FileInputRefused(f"input '{name}' was refused as a possible decompression bomb: {exc}", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FileInputRefused(f"input '{name}' is not a readable image ({type(exc).__name__}: {exc}); send a "
                               f"PNG, JPEG, WebP, GIF, BMP or TIFF file") from None
    if fmt not in IMAGE_TYPES:
        raise FileInputRefused(f"input '{name}' is a {fmt} image; send a PNG, JPEG, WebP, GIF, BMP or TIFF file")
    return IMAGE_TYPES[fmt]


def _file_type(value, declared: str) -> tuple[str, str]:
    filename = value.filename if isinstance(value, Upload) else ""
    ext = Path(filename).suffix.lstrip(".").lower()
    ext = ext if re.fullmatch(r"[a-z0-9]{1,8}", ext or "") else "bin"
    media = declared if re.fullmatch(r"[\w.+-]+/[\w.+-]+", declared or "") else "application/octet-stream"
    return media, ext


# -- fetching with a guard against server-side request forgery ---------------------------------------


def public_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not (addr.is_multicast or addr.is_reserved or addr.is_loopback
                                   or addr.is_link_local or addr.is_private or addr.is_unspecified)


def _resolve(host: str, port: int, limits: FileLimits, what: str) -> str:
    """Resolve ``host`` and check every address it has; returns one to connect to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FileInputRefused(f"{what}: cannot resolve host {host!r}: {exc.strerror or exc}") from None
    addresses = sorted({info[4][0] for info in infos})
    if not limits.allow_private:
        bad = [a for a in addresses if not public_address(a)]
        if bad:
            raise FileInputRefused(
                f"{what}: host {host!r} resolves to a non-public address ({', '.join(bad)}); URLs to loopback, "
                f"private and link-local addresses are refused (set PIXELMILL_ALLOW_PRIVATE_URLS=1 to allow them)",
                400)
    return addresses[0]


class _Pinned(http.client.HTTPConnection):
    def __init__(self, host, port, ip, timeout):
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self):
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host, port, ip, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self):
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch(url: str, limits: FileLimits, what: str = "URL") -> tuple[bytes, str]:
    """GET ``url`` (following a few redirects, each checked); returns (body, declared content type)."""
    for _ in range(limits.max_redirects + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FileInputRefused(f"{what}: only http(s) URLs can be fetched, not {url[:100]!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = _resolve(parts.hostname, port, limits, what)
        conn = (_PinnedTLS if parts.scheme == "https" else _Pinned)(parts.hostname, port, ip, limits.timeout_s)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers={"User-Agent": "pixelmill", "Accept": "*/*"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location"))
                continue
            if resp.status != 200:
                raise FileInputRefused(f"{what}: {parts.hostname} answered HTTP {resp.status}")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > limits.max_bytes:
                raise FileInputRefused(f"{what}: the file has {int(length):,} bytes, more than the limit of "
                                       f"{limits.max_bytes:,} (PIXELMILL_MAX_INPUT_BYTES)", 413)
            data = resp.read(limits.max_bytes + 1)
            if len(data) > limits.max_bytes:
                raise FileInputRefused(f"{what}: the file is larger than the limit of {limits.max_bytes:,} bytes "
                                       f"(PIXELMILL_MAX_INPUT_BYTES)", 413)
            return data, (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        except (OSError, http.client.HTTPException) as exc:
            raise FileInputRefused(f"{what}: fetching {parts.hostname} failed: {exc}") from None
        finally:
            conn.close()
    raise FileInputRefused(f"{what}: more than {limits.max_redirects} redirects")
