"""Read every AI label back from a file: XMP source type, parameters, watermark, C2PA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from . import c2pa as c2pa_mod
from . import mp4 as mp4_mod
from . import watermark as wm
from . import watermark_v1 as wm1
from .wmkeys import NamedKey, home_from_env, verification_keys
from .xmp import AI_SOURCE_TYPES, parse_xmp, raw_xmp

MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp"}


class InspectError(ValueError):
    """The file cannot be read as an image (the message names it)."""


def _watermark(image: Image.Image, keys: list[NamedKey]) -> dict[str, Any]:
    """Version 2 marks under each key, then a version 1 mark (public key)."""
    try:
        det = wm.detect(image, [k.key for k in keys])
    except wm.WatermarkError as exc:
        return {"checked": False, "reason": str(exc)}
    if det.found:
        named = next(k for k in keys if k.key_id == det.key_id)
        return {"checked": True, "found": True, "version": 2, "payload": det.text, "key": named.source,
                "key_id": named.key_id, "forgeable": named.forgeable,
                "verified": "unkeyed, forgeable" if named.forgeable else f"keyed ({named.source} key {named.key_id})",
                "z": round(det.z, 1), "flipped": det.flipped, "confidence": round(det.confidence, 3),
                "keys_tried": [k.source for k in keys]}
    try:
        old = wm1.decode(image)
    except wm1.WatermarkError:
        old = None
    if old is not None and old.crc_ok:
        return {"checked": True, "found": True, "version": 1, "payload": old.text, "key": "v1 public",
                "key_id": None, "forgeable": True, "verified": "unkeyed, forgeable (version 1 mark)",
                "confidence": round(old.confidence, 3), "keys_tried": [k.source for k in keys] + ["v1 public"]}
    return {"checked": True, "found": False, "payload": None, "z": round(det.z, 1),
            "keys_tried": [k.source for k in keys] + ["v1 public"]}


def inspect_file(path: str | Path, *, watermark_keys: list[NamedKey] | None = None,
                 trust_anchors_pem: bytes | None = None, check_c2pa: bool = True) -> dict[str, Any]:
    """A JSON-ready report. ``labelled_ai`` is True when any machine-readable signal says AI made it:
    an AI digital source type in XMP, a C2PA manifest whose created action says so (and whose signature is
    not invalid), or a watermark whose CRC checks. ``watermark_keys``: keys to try (default: those
    ``pixelmill inspect`` tries: $PIXELMILL_WATERMARK_KEY, the key stored under PIXELMILL_HOME, the demo
    key); the report names the one that verified and calls a demo-key or version 1 mark "unkeyed, forgeable"."""
    path = Path(path)
    if not path.is_file():
        raise InspectError(f"{path}: no such file")
    if mp4_mod.is_mp4(path):
        return _inspect_mp4(path, trust_anchors_pem=trust_anchors_pem, check_c2pa=check_c2pa)
    keys = watermark_keys or verification_keys(home_from_env())
    try:
        with Image.open(path) as image:
            image.load()
            fmt = image.format
            size = image.size
            xmp_packet = raw_xmp(image)
            text_chunks = {k: v for k, v in image.info.items()
                           if isinstance(v, str) and k != "XML:com.adobe.xmp"} if fmt == "PNG" else {}
            watermark = _watermark(image, keys)
    except (UnidentifiedImageError, OSError) as exc:
        raise InspectError(f"{path}: not a readable image ({exc})") from None

    report: dict[str, Any] = {"file": str(path), "format": fmt, "width": size[0], "height": size[1]}
    xmp_info = _xmp_info(xmp_packet)
    report["xmp"] = xmp_info
    source_type = xmp_info.get("source_type")
    report["source_type"] = source_type
    report["parameters"] = {"text": text_chunks.get("parameters"), "xmp": xmp_info.get("params") or {}}
    report["watermark"] = watermark
    if check_c2pa:
        mime = MIMES.get(fmt or "")
        if mime is None:
            report["c2pa"] = {"present": False, "error": f"C2PA reading not supported for {fmt}"}
        else:
            report["c2pa"] = c2pa_mod.read(path, mime, trust_anchors_pem=trust_anchors_pem).as_dict()
    else:
        report["c2pa"] = {"present": False, "error": "not checked"}
    return _verdict(report)


def _xmp_info(packet: bytes | None) -> dict[str, Any]:
    """What an XMP packet says (``parse_xmp``), with ``present``, or the parse error under ``error``."""
    info: dict[str, Any] = {"present": packet is not None}
    if packet is not None:
        try:
            info.update(parse_xmp(packet))
        except (ValueError, SyntaxError) as exc:
            info["error"] = f"XMP does not parse: {exc}"
    return info


def labelled_ai(path: str | Path) -> bool:
    """``inspect_file(path)["labelled_ai"]``, cheaper when the file's XMP already gives an AI source type:
    any one signal is enough, so the watermark search and the C2PA check are then skipped."""
    path = Path(path)
    if path.is_file() and not mp4_mod.is_mp4(path):
        try:
            with Image.open(path) as image:
                image.load()
                packet = raw_xmp(image)
            if _xmp_info(packet).get("source_type") in AI_SOURCE_TYPES:
                return True
        except (UnidentifiedImageError, OSError):
            pass  # the full inspection reports what is wrong with the file
    return bool(inspect_file(path)["labelled_ai"])


def _verdict(report: dict[str, Any]) -> dict[str, Any]:
    source_type = report["source_type"]
    signals = []
    if source_type in AI_SOURCE_TYPES:
        signals.append("xmp")
    c2 = report["c2pa"]
    if c2.get("present") and c2.get("source_type") in AI_SOURCE_TYPES and c2.get("validation_state") != "Invalid":
        signals.append("c2pa")
    if report["watermark"].get("found"):
        signals.append("watermark")
    report["signals"] = signals
    report["labelled_ai"] = bool(signals)
    return report


def _inspect_mp4(path: Path, *, trust_anchors_pem: bytes | None, check_c2pa: bool) -> dict[str, Any]:
    """An MP4: XMP from its uuid box, MP4 tags, C2PA for video/mp4 (the badge is in the pixels; no watermark)."""
    try:
        packet = mp4_mod.read_xmp(path)
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            size = (stream.codec_context.width, stream.codec_context.height)
            tags = dict(container.metadata)
    except Exception as exc:  # noqa: BLE001 - a broken box or a decoder error: not a readable video
        raise InspectError(f"{path}: not a readable MP4 video ({exc})") from None
    report: dict[str, Any] = {"file": str(path), "format": "MP4", "width": size[0], "height": size[1],
                              "mp4_tags": tags}
    xmp_info = _xmp_info(packet)
    report["xmp"] = xmp_info
    report["source_type"] = xmp_info.get("source_type")
    report["parameters"] = {"text": None, "xmp": xmp_info.get("params") or {}}
    report["watermark"] = {"checked": False, "reason": "videos carry no invisible watermark"}
    report["c2pa"] = (c2pa_mod.read(path, "video/mp4", trust_anchors_pem=trust_anchors_pem).as_dict()
                      if check_c2pa else {"present": False, "error": "not checked"})
    return _verdict(report)


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines."""
    lines = [f"{report['file']}: {report['format']} {report['width']}x{report['height']}"]
    verdict = "LABELLED as AI-generated" if report["labelled_ai"] else "NOT labelled as AI-generated"
    lines.append(f"  verdict:      {verdict}" + (f" (by {', '.join(report['signals'])})" if report["signals"] else ""))
    x = report["xmp"]
    lines.append(f"  source type:  {report['source_type'] or '-'}" + ("" if x["present"] else " (no XMP)"))
    if x.get("error"):
        lines.append(f"  xmp error:    {x['error']}")
    if x.get("badge"):
        lines.append(f"  badge:        {x['badge']!r} (recorded in XMP)")
    for key, value in (x.get("ai") or {}).items():
        lines.append(f"  iptc ai {key + ':':<19}{value}")
    params = report["parameters"]["xmp"]
    for key, value in params.items():
        lines.append(f"  param {key + ':':<19}{value}")
    if report["parameters"]["text"]:
        first = report["parameters"]["text"].splitlines()
        lines.append(f"  png parameters: {first[0][:80]}" + (" ..." if len(first) > 1 else ""))
    w = report["watermark"]
    if not w["checked"]:
        lines.append(f"  watermark:    not checked ({w['reason']})")
    elif w["found"]:
        lines.append(f"  watermark:    found (v{w['version']}), payload {w['payload']!r}, {w['verified']}")
    else:
        lines.append(f"  watermark:    none found (keys tried: {', '.join(w['keys_tried'])}; sync z {w['z']})")
    c = report["c2pa"]
    if c.get("present"):
        lines.append(f"  c2pa:         {c['validation_state']}, source type {c.get('source_type') or '-'}, "
                     f"actions {', '.join(a for a in c.get('actions') or [] if a)}")
        for ing in c.get("ingredients") or []:
            lines.append(f"  c2pa ingredient: {ing.get('title')} ({ing.get('relationship')})")
        failures = [code for code in c.get("validation_codes") or [] if code.startswith("failure:")]
        if failures:
            lines.append(f"  c2pa issues:  {', '.join(failures)}")
    else:
        lines.append("  c2pa:         none" + (f" ({c['error']})" if c.get("error") else ""))
    return "\n".join(lines)
