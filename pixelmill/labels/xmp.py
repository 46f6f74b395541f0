"""IPTC Digital Source Type and generation parameters as XMP, and the PNG ``parameters`` text chunk.

Writing uses Pillow only: PNG gets an iTXt chunk ``XML:com.adobe.xmp`` (and a tEXt ``parameters`` chunk in
the form AUTOMATIC1111 made common), JPEG gets an APP1 XMP segment (Pillow >= 11.1, ``xmp=`` on save).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image, PngImagePlugin

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
PIXELMILL_NS = "https://pixelmill.dev/ns/1.0/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
DC = "http://purl.org/dc/elements/1.1/"
SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = SOURCE_TYPES + "trainedAlgorithmicMedia"
COMPOSITE = SOURCE_TYPES + "compositeWithTrainedAlgorithmicMedia"
# codes that mean "made or changed by generative AI"
AI_SOURCE_TYPES = {TRAINED, COMPOSITE, SOURCE_TYPES + "compositeSynthetic", SOURCE_TYPES + "algorithmicMedia"}
JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"

# generation parameters recorded in XMP as pixelmill:<Name>
PARAM_FIELDS = ("prompt", "negative_prompt", "model", "seed", "steps", "guidance", "width", "height",
                "pixelmill_version", "run_id", "workflow", "step_id")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


_FROM_CAMEL = {_camel(n): n for n in PARAM_FIELDS}


_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))


def _clean(value: Any) -> str:
    """Text that XML 1.0 can hold (control characters dropped)."""
    return str(value).translate(_CONTROL)


# IPTC Photo Metadata 2025.1 AI properties (Iptc4xmpExt namespace, simple text) -> our names
AI_FIELDS = {"AISystemUsed": "system", "AISystemVersionUsed": "system_version",
             "AIPromptInformation": "prompt_information", "AIPromptWriterName": "prompt_writer"}


def build_xmp(source_type: str, params: dict[str, Any] | None = None, *, badge: str | None = None,
              watermark: str | None = None, creator_tool: str = "pixelmill",
              ai: dict[str, Any] | None = None) -> bytes:
    """An XMP packet with the digital source type, the IPTC 2025.1 AI fields (``ai``: ``system``,
    ``system_version``, ``prompt_information``, ``prompt_writer``; empty ones are left out) and the
    generation parameters."""
    params = {k: _clean(v) for k, v in (params or {}).items() if v is not None and v != ""}
    props = [f"   <Iptc4xmpExt:DigitalSourceType>{escape(source_type)}</Iptc4xmpExt:DigitalSourceType>",
             f"   <xmp:CreatorTool>{escape(creator_tool)}</xmp:CreatorTool>"]
    ai = {k: _clean(v) for k, v in (ai or {}).items() if v is not None and v != ""}
    for prop, name in AI_FIELDS.items():
        if name in ai:
            props.append(f"   <Iptc4xmpExt:{prop}>{escape(ai[name])}</Iptc4xmpExt:{prop}>")
    prompt = params.get("prompt")
    if prompt:
        props.append("   <dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">"
                     f"{escape(str(prompt))}</rdf:li></rdf:Alt></dc:description>")
    for name in PARAM_FIELDS:
        if name in params:
            tag = _camel(name)
            props.append(f"   <pixelmill:{tag}>{escape(str(params[name]))}</pixelmill:{tag}>")
    if badge:
        props.append(f"   <pixelmill:VisibleBadge>{escape(badge)}</pixelmill:VisibleBadge>")
    if watermark:
        props.append(f"   <pixelmill:Watermark>{escape(watermark)}</pixelmill:Watermark>")
    body = "\n".join(props)
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        f' <rdf:RDF xmlns:rdf="{RDF}">\n'
        '  <rdf:Description rdf:about=""\n'
        f'    xmlns:Iptc4xmpExt="{IPTC_EXT}"\n'
        f'    xmlns:xmp="{XMP_NS}"\n'
        f'    xmlns:dc="{DC}"\n'
        f'    xmlns:pixelmill="{PIXELMILL_NS}">\n'
        f"{body}\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def a1111_parameters(params: dict[str, Any]) -> str:
    """The ``parameters`` text in AUTOMATIC1111's layout: prompt, negative prompt, then ``Key: value`` pairs."""
    lines = [str(params.get("prompt", ""))]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    pairs = []
    for key, label in (("steps", "Steps"), ("guidance", "CFG scale"), ("seed", "Seed"), ("model", "Model"),
                       ("width", "Width"), ("height", "Height"), ("pixelmill_version", "Pixelmill version"),
                       ("run_id", "Run id"), ("workflow", "Workflow")):
        value = params.get(key)
        if value is not None and value != "":
            pairs.append(f"{label}: {str(value).replace(',', ' ')}")
    if pairs:
        lines.append(", ".join(pairs))
    return "\n".join(lines)


def save_png(image: Image.Image, path: Path, xmp: bytes, parameters: str | None,
             icc_profile: bytes | None = None) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=False)
    if parameters is not None:
        info.add_text("parameters", parameters)  # tEXt when latin-1 fits, else Pillow writes iTXt
    image.save(path, "PNG", pnginfo=info, **({"icc_profile": icc_profile} if icc_profile else {}))


def save_jpeg(image: Image.Image, path: Path, xmp: bytes, quality: int = 92, icc_profile: bytes | None = None) -> None:
    if len(xmp) > 65502:
        raise ValueError(f"XMP packet is {len(xmp)} bytes; a JPEG APP1 segment holds at most 65502 "
                         "(shorten the prompt)")
    image.convert("RGB").save(path, "JPEG", quality=quality, xmp=xmp,
                              **({"icc_profile": icc_profile} if icc_profile else {}))


# ---- reading ---------------------------------------------------------------------------------------------

def raw_xmp(image: Image.Image) -> bytes | None:
    """The XMP packet embedded in a PNG (iTXt/zTXt/tEXt) or JPEG (APP1), or None."""
    if image.format == "PNG":
        value = image.info.get("XML:com.adobe.xmp")
        if value is None:
            return None
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if image.format in ("JPEG", "MPO"):
        for marker, payload in getattr(image, "applist", []):
            if marker == "APP1" and payload.startswith(JPEG_XMP_HEADER):
                return payload[len(JPEG_XMP_HEADER):]
        return None
    value = image.info.get("xmp")
    return bytes(value) if value else None


def parse_xmp(packet: bytes) -> dict[str, Any]:
    """Digital source type, pixelmill parameters and a few common fields from an XMP packet.

    Properties are read whether written as elements or as attributes of ``rdf:Description``.
    Raises ValueError on XML that does not parse.
    """
    text = packet.decode("utf-8", errors="replace")
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start == -1 or end == -1:
        start, end = text.find("<rdf:RDF"), text.rfind("</rdf:RDF>")
        closing = len("</rdf:RDF>")
    else:
        closing = len("</x:xmpmeta>")
    if start == -1 or end == -1:
        raise ValueError("no xmpmeta or rdf:RDF element in the XMP packet")
    if "<!DOCTYPE" in text[start:end] or "<!ENTITY" in text[start:end]:
        raise ValueError("XMP packet declares a DTD or entities; refusing to parse it")
    root = ET.fromstring(text[start:end + closing])
    out: dict[str, Any] = {"source_type": None, "params": {}}
    for desc in root.iter(f"{{{RDF}}}Description"):
        for attr, value in desc.attrib.items():
            _take(out, attr, value)
        for child in desc:
            value = "".join(child.itertext()).strip() if len(child) else (child.text or "").strip()
            _take(out, child.tag, value)
    return out


def _take(out: dict[str, Any], tag: str, value: str) -> None:
    if tag == f"{{{IPTC_EXT}}}DigitalSourceType":
        out["source_type"] = value
    elif tag.startswith(f"{{{IPTC_EXT}}}") and tag[len(IPTC_EXT) + 2:] in AI_FIELDS:
        out.setdefault("ai", {})[AI_FIELDS[tag[len(IPTC_EXT) + 2:]]] = value
    elif tag.startswith(f"{{{PIXELMILL_NS}}}"):
        local = tag[len(PIXELMILL_NS) + 2:]
        if local in _FROM_CAMEL:
            out["params"][_FROM_CAMEL[local]] = value
        elif local == "VisibleBadge":
            out["badge"] = value
        elif local == "Watermark":
            out["watermark"] = value
    elif tag == f"{{{XMP_NS}}}CreatorTool":
        out["creator_tool"] = value
    elif tag == f"{{{DC}}}description":
        out["description"] = value
