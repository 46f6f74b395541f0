"""Read every AI label back from a file: XMP source type, parameters, watermark, C2PA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from . import c2pa as c2pa_mod
from . import watermark as wm
from .xmp import AI_SOURCE_TYPES, parse_xmp, raw_xmp

MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp"}


class InspectError(ValueError):
    """The file cannot be read as an image (the message names it)."""


def inspect_file(path: str | Path, *, watermark_key: int = wm.DEFAULT_KEY,
                 trust_anchors_pem: bytes | None = None, check_c2pa: bool = True) -> dict[str, Any]:
    """A JSON-ready report. ``labelled_ai`` is True when any machine-readable signal says AI made it:
    an AI digital source type in XMP, a C2PA manifest whose created action says so (and whose signature is
    not invalid), or a watermark whose CRC checks."""
    path = Path(path)
    if not path.is_file():
        raise InspectError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            image.load()
            fmt = image.format
            size = image.size
            xmp_packet = raw_xmp(image)
            text_chunks = {k: v for k, v in image.info.items()
                           if isinstance(v, str) and k != "XML:com.adobe.xmp"} if fmt == "PNG" else {}
            detection = None
            wm_error = None
            try:
                detection = wm.decode(image, key=watermark_key)
            except wm.WatermarkError as exc:
                wm_error = str(exc)
    except (UnidentifiedImageError, OSError) as exc:
        raise InspectError(f"{path}: not a readable image ({exc})") from None

    report: dict[str, Any] = {"file": str(path), "format": fmt, "width": size[0], "height": size[1]}
    xmp_info: dict[str, Any] = {"present": xmp_packet is not None}
    if xmp_packet is not None:
        try:
            xmp_info.update(parse_xmp(xmp_packet))
        except (ValueError, SyntaxError) as exc:
            xmp_info["error"] = f"XMP does not parse: {exc}"
    report["xmp"] = xmp_info
    source_type = xmp_info.get("source_type")
    report["source_type"] = source_type
    report["parameters"] = {"text": text_chunks.get("parameters"), "xmp": xmp_info.get("params") or {}}
    if detection is None:
        report["watermark"] = {"checked": False, "reason": wm_error}
    else:
        report["watermark"] = {"checked": True, "found": detection.crc_ok,
                               "payload": detection.text if detection.crc_ok else None,
                               "confidence": round(detection.confidence, 3)}
    if check_c2pa:
        mime = MIMES.get(fmt or "")
        if mime is None:
            report["c2pa"] = {"present": False, "error": f"C2PA reading not supported for {fmt}"}
        else:
            report["c2pa"] = c2pa_mod.read(path, mime, trust_anchors_pem=trust_anchors_pem).as_dict()
    else:
        report["c2pa"] = {"present": False, "error": "not checked"}

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
        lines.append(f"  watermark:    found, payload {w['payload']!r}, confidence {w['confidence']}")
    else:
        lines.append(f"  watermark:    none found (confidence {w['confidence']}; ~0.5 means noise)")
    c = report["c2pa"]
    if c.get("present"):
        lines.append(f"  c2pa:         {c['validation_state']}, created as {c.get('source_type') or '-'}, "
                     f"actions {', '.join(a for a in c.get('actions') or [] if a)}")
        failures = [code for code in c.get("validation_codes") or [] if code.startswith("failure:")]
        if failures:
            lines.append(f"  c2pa issues:  {', '.join(failures)}")
    else:
        lines.append("  c2pa:         none" + (f" ({c['error']})" if c.get("error") else ""))
    return "\n".join(lines)
