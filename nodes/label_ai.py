"""The ``label_ai`` node: label an image as AI-generated (badge, IPTC XMP, parameters, watermark, C2PA)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from PIL import Image, UnidentifiedImageError
from pydantic import Field, field_validator, model_validator

from pixelmill import __version__
from pixelmill.labels import badge as badge_mod
from pixelmill.labels import c2pa as c2pa_mod
from pixelmill.labels import mp4 as mp4_mod
from pixelmill.labels import video as video_mod
from pixelmill.labels import watermark as wm
from pixelmill.labels import wmkeys
from pixelmill.labels import xmp as xmp_mod
from pixelmill.node import WORKFLOW_PATH, ArtifactRef, Model, Node, StepCheck


class C2paConfig(Model):
    cert_chain: str = Field(description="PEM file: end-entity certificate first, then intermediates (no root); "
                            "relative to the workflow file", json_schema_extra={WORKFLOW_PATH: True})
    private_key: str | None = Field(None, description="PEM file of the signing key (PKCS#8), relative to the "
                                    "workflow file", json_schema_extra={WORKFLOW_PATH: True})
    private_key_secret: str | None = Field(
        None, description="name of an environment secret holding the PEM key instead of a file")
    alg: Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"] = "es256"
    tsa_url: str | None = Field(None, description="timestamp authority URL (needs network); none by default")


class LabelConfig(Model):
    badge: bool = Field(True, description="draw a visible badge")
    badge_text: str = Field("AI-generated", min_length=1, max_length=64)
    badge_corner: Literal["bottom-right", "bottom-left", "top-right", "top-left"] = "bottom-right"
    badge_size: float = Field(0.06, gt=0, le=0.5, description="badge height as a fraction of the short side")
    edited: bool = Field(False, description=(
        "the image is an AI edit of a real one (compositeWith... source type; C2PA c2pa.edited). Also set by "
        "a `parent` input or an input artifact whose `edited_from` names its parent"))
    format: Literal["same", "png", "jpeg"] = Field("same", description="output format; 'same' keeps JPEG, else PNG")
    jpeg_quality: int = Field(92, ge=50, le=100)
    parameters: bool = Field(True, description="record generation parameters (PNG text chunk and XMP)")
    record_prompt: bool = Field(True, description=(
        "write the prompt into the file (IPTC AI Prompt Information, XMP, PNG parameters); false leaves it out"))
    ai_system: str | None = Field(None, description="IPTC AI System Used (default: the model input)")
    ai_system_version: str | None = Field(None, description="IPTC AI System Version Used")
    prompt_writer: str | None = Field(None, description="IPTC AI Prompt Writer Name")
    watermark: bool = Field(True, description="embed the invisible watermark")
    watermark_payload: str = Field("AI-GEN", description=f"up to {wm.PAYLOAD_BYTES} bytes of UTF-8")
    watermark_key: Literal["secret", "demo"] = Field("secret", description=(
        f"secret: ${wmkeys.ENV}, else a random key created once under PIXELMILL_HOME; demo: the public demo "
        "key (anyone can forge or overwrite such a mark; for demos and tests only)"))
    c2pa: C2paConfig | None = Field(None, description="sign a C2PA manifest (needs c2pa-python)")
    min_side: int | None = Field(None, ge=16, le=4096, description=(
        "upscale an image whose short side is smaller than this first (nearest neighbour, so pixels stay "
        "crisp); tiny generated images otherwise cannot carry a readable badge or a watermark"))

    @field_validator("watermark_payload")
    @classmethod
    def _fits(cls, value: str) -> str:
        wm.payload_bytes(value)  # raises with the size limit in the message
        return value


class LabelInputs(Model):
    image: ArtifactRef | None = Field(None, description="the image to label (PNG, JPEG, WebP, ...)")
    video: ArtifactRef | None = Field(None, description=(
        "an MP4 to label instead: badge burned into every frame (re-encoded H.264 yuv420p), XMP in a uuid "
        "box, MP4 tags and, when configured, C2PA for video/mp4"))
    prompt: str | None = None
    negative_prompt: str | None = None
    model: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    edited: bool | None = Field(None, description="overrides config.edited for this image")
    parent: ArtifactRef | None = Field(None, description=(
        "the image this one was edited from: recorded as the C2PA parent ingredient (c2pa.opened + "
        "c2pa.edited) and the source type becomes compositeWithTrainedAlgorithmicMedia"))

    @model_validator(mode="after")
    def _one_file(self):
        if self.image is not None and self.video is not None:  # (neither: checked at run time, as inputs
            raise ValueError("give exactly one of 'image' or 'video'")  # given by expressions are not known at load)
        return self


class LabelOutputs(Model):
    image: ArtifactRef = Field(description="the labelled file (for a video, the same as 'video')")
    video: ArtifactRef | None = Field(None, description="the labelled MP4, when a video was labelled")
    labels: list[str] = Field(description="labels written: badge, xmp, parameters, watermark, c2pa; "
                              "for a video also mp4_tags")
    skipped: dict[str, str] = Field(default_factory=dict, description="label -> why it was not written")
    source_type: str
    watermark_payload: str | None = None
    watermark_key_id: str | None = Field(None, description="public fingerprint of the watermark key used")


class LabelAiNode(Node):
    """Label an image as AI-generated: a visible badge, IPTC ``DigitalSourceType`` in XMP, the generation
    parameters (PNG ``parameters`` text chunk and XMP), an invisible watermark and, when configured, a
    signed C2PA manifest. Writes a new artifact; ``labels`` says which labels were written and ``skipped``
    why any were not. An MP4 (input ``video``) gets the badge burned into every frame (re-encoded H.264
    yuv420p), XMP in a ``uuid`` box, MP4 tags and, when configured, C2PA for video/mp4."""

    type = "label_ai"
    version = "1"
    Config = LabelConfig
    Inputs = LabelInputs
    Outputs = LabelOutputs

    @classmethod
    def check_step(cls, check: StepCheck) -> None:
        """C2PA files that are missing (paths are already resolved against the workflow file's folder)."""
        c = check.config.c2pa
        if c is None:
            return
        for name in ("cert_chain", "private_key"):
            value = getattr(c, name)
            if value and not Path(value).is_file():
                check.warn(("config", "c2pa", name), f"C2PA {name} {value!r} does not exist",
                           "relative paths start at the workflow file's folder; "
                           "make a test certificate with: pixelmill c2pa dev-cert DIR")
        if not c.private_key and not c.private_key_secret:
            check.warn(("config", "c2pa"), "C2PA signing needs 'private_key' (a PEM file) or 'private_key_secret'")

    def run(self, inputs: LabelInputs, ctx) -> LabelOutputs:
        cfg: LabelConfig = self.config
        ref_in = inputs.image or inputs.video
        if ref_in is None:
            raise ValueError("label_ai: give exactly one of the inputs 'image' or 'video'")
        src = ctx.artifact_path(ref_in)
        if not src.is_file():
            raise ValueError(f"label_ai: input {'image' if inputs.image else 'video'} artifact {ref_in.name!r} of "
                             f"run {ref_in.run_id} does not exist ({src})")
        if mp4_mod.is_mp4(src):
            return self._label_video(inputs, src, ctx)
        if inputs.video is not None:
            raise ValueError(f"label_ai: input video {ref_in.name!r} is not an MP4 file (make it with make_video "
                             "format 'mp4'); label_ai labels MP4 videos, not GIF or WebP animations")
        try:
            with Image.open(src) as opened:
                opened.load()
                in_format = opened.format
                icc_profile = opened.info.get("icc_profile")
                edit_record = _edit_record(opened)
                image = opened.copy()
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"label_ai: {inputs.image.name!r} is not a readable image: {exc}") from None

        fmt = cfg.format if cfg.format != "same" else ("jpeg" if in_format == "JPEG" else "png")
        # contract for editing nodes: an explicit `parent`, or the `edited_from` that edit_image records in the PNG
        parent = inputs.parent or getattr(inputs.image, "edited_from", None) or edit_record
        parent_path = None
        if parent is not None:
            parent_path = ctx.artifact_path(parent)
            if not parent_path.is_file():
                raise ValueError(f"label_ai: parent image artifact {parent.name!r} of run {parent.run_id} does "
                                 f"not exist ({parent_path})")
        edited = (cfg.edited or parent is not None) if inputs.edited is None else inputs.edited
        source_type = xmp_mod.COMPOSITE if edited else xmp_mod.TRAINED
        keep_alpha = fmt == "png" and (image.mode in ("RGBA", "LA", "PA") or
                                       (image.mode == "P" and "transparency" in image.info))
        image = image.convert("RGBA" if keep_alpha else "RGB")
        if cfg.min_side and min(image.size) < cfg.min_side:
            factor = -(-cfg.min_side // min(image.size))  # whole-number factor: every pixel becomes a block
            image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
        labels: list[str] = []
        skipped: dict[str, str] = {}

        badge_text = None
        if cfg.badge:
            try:
                image, _, badge_text = badge_mod.draw_badge(image, cfg.badge_text, cfg.badge_corner,
                                                            cfg.badge_size)
                labels.append("badge")
            except badge_mod.BadgeDoesNotFit as exc:
                skipped["badge"] = str(exc)
                ctx.logger.warning("label_ai: badge skipped: %s", exc)
        ctx.check_cancelled()

        payload = key_id = None
        if cfg.watermark:
            try:
                if cfg.watermark_key == "demo":
                    key = wmkeys.NamedKey("demo", wm.DEMO_KEY)
                else:
                    env = ctx.secrets.get(wmkeys.ENV) if wmkeys.ENV in ctx.secrets else None
                    key = wmkeys.signing_key(_home(ctx), env)
                image = wm.embed(image, cfg.watermark_payload, key=key.key)
                payload, key_id = cfg.watermark_payload, key.key_id
                labels.append("watermark")
            except wm.WatermarkError as exc:
                skipped["watermark"] = str(exc)
                ctx.logger.warning("label_ai: watermark skipped: %s", exc)
        ctx.check_cancelled()

        params, ai = self._record(inputs, ctx, image.width, image.height)
        packet = xmp_mod.build_xmp(source_type, params, badge=badge_text,
                                   watermark=f"{wm.SCHEME}:{payload}" if payload else None,
                                   creator_tool=f"pixelmill {__version__}", ai=ai)
        ext, media_type = ("png", "image/png") if fmt == "png" else ("jpg", "image/jpeg")
        ref, out_path = ctx.new_artifact(f"labelled.{ext}", media_type)
        tmp = out_path.with_name(out_path.name + ".tmp")
        if fmt == "png":
            xmp_mod.save_png(image, tmp, packet, xmp_mod.a1111_parameters(params) if cfg.parameters else None,
                             icc_profile)
        else:
            xmp_mod.save_jpeg(image, tmp, packet, cfg.jpeg_quality, icc_profile)
            if cfg.parameters:
                skipped["parameters_text_chunk"] = "JPEG has no PNG text chunks; parameters are in XMP only"
        labels.append("xmp")
        if cfg.parameters:
            labels.append("parameters")

        self._store(tmp, out_path, media_type, source_type, params, ctx, labels, skipped, edited=edited,
                    parent=parent_path)
        ctx.logger.info("label_ai: wrote %s with %s", ref.name, ", ".join(labels))
        return LabelOutputs(image=ref, labels=labels, skipped=skipped, source_type=source_type,
                            watermark_payload=payload, watermark_key_id=key_id)

    def _label_video(self, inputs: LabelInputs, src: Path, ctx) -> LabelOutputs:
        """An MP4: badge in every frame, MP4 tags, XMP uuid box, C2PA (video/mp4) when configured."""
        cfg: LabelConfig = self.config
        edited = cfg.edited if inputs.edited is None else inputs.edited
        source_type = xmp_mod.COMPOSITE if edited else xmp_mod.TRAINED
        params: dict = {}  # filled once the frame size is known, then signed into C2PA

        def packet_for(badge_text, width, height):
            recorded, ai = self._record(inputs, ctx, width, height)
            params.update(recorded)
            return xmp_mod.build_xmp(source_type, params, badge=badge_text, creator_tool=f"pixelmill {__version__}",
                                     ai=ai)

        kind = source_type.rsplit("/", 1)[-1]
        tags = {"comment": f"AI-generated ({kind}); labelled by pixelmill {__version__}",
                "description": f"IPTC digital source type: {source_type}", "encoder": f"pixelmill {__version__}"}
        ref, out_path = ctx.new_artifact("labelled.mp4", "video/mp4")
        tmp = out_path.with_name(out_path.name + ".tmp")
        try:
            done = video_mod.label_mp4(src, tmp, packet_for=packet_for, badge=cfg.badge, badge_text=cfg.badge_text,
                                       corner=cfg.badge_corner, size=cfg.badge_size, tags=tags,
                                       check_cancelled=ctx.check_cancelled)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        labels = (["badge"] if done.badge_text else []) + ["xmp", "mp4_tags"] + (["parameters"] if cfg.parameters
                                                                                 else [])
        skipped = dict(done.skipped)
        if cfg.watermark:
            skipped["watermark"] = "not embedded in video frames (the invisible watermark is for still images)"
        self._store(tmp, out_path, "video/mp4", source_type, params, ctx, labels, skipped, edited=edited)
        ctx.logger.info("label_ai: wrote %s (%d frames) with %s", ref.name, done.frames, ", ".join(labels))
        return LabelOutputs(image=ref, video=ref, labels=labels, skipped=skipped, source_type=source_type)

    def _record(self, inputs: LabelInputs, ctx, width: int, height: int) -> tuple[dict, dict]:
        """The generation parameters (empty with ``parameters: false``) and the IPTC AI fields to write."""
        cfg: LabelConfig = self.config
        prompt = inputs.prompt if cfg.record_prompt else None
        negative = inputs.negative_prompt if cfg.record_prompt else None
        params = {
            "prompt": prompt, "negative_prompt": negative, "model": inputs.model,
            "seed": inputs.seed, "steps": inputs.steps, "guidance": inputs.guidance,
            "width": width, "height": height, "pixelmill_version": __version__,
            "run_id": ctx.run_id, "workflow": ctx.workflow, "step_id": ctx.step_id,
        } if cfg.parameters else {}
        prompt_info = prompt + (f"\nNegative prompt: {negative}" if negative else "") if prompt else None
        ai = {"system": cfg.ai_system or inputs.model, "system_version": cfg.ai_system_version,
              "prompt_information": prompt_info, "prompt_writer": cfg.prompt_writer}
        return params, ai

    def _store(self, tmp: Path, out_path: Path, media_type: str, source_type: str, params: dict, ctx,
               labels: list[str], skipped: dict[str, str], *, edited: bool, parent: Path | None = None) -> None:
        """Move the labelled file into place, signed with C2PA first when configured."""
        cfg: LabelConfig = self.config
        if cfg.c2pa is None:
            os.replace(tmp, out_path)
            skipped["c2pa"] = "not configured (set config.c2pa with cert_chain and private_key)"
            return
        try:
            self._sign(cfg.c2pa, tmp, out_path, media_type, source_type, params, ctx, edited=edited, parent=parent)
            tmp.unlink()
            labels.append("c2pa")
        except BaseException:
            tmp.unlink(missing_ok=True)
            out_path.unlink(missing_ok=True)
            raise

    @staticmethod
    def _sign(c: C2paConfig, src: Path, dst: Path, mime: str, source_type: str, params: dict, ctx, *,
              edited: bool = False, parent: Path | None = None) -> None:
        chain_path = Path(c.cert_chain).expanduser()
        if not chain_path.is_file():
            raise ValueError(f"label_ai: config.c2pa.cert_chain {str(chain_path)!r} does not exist "
                             "(make a test one with: pixelmill c2pa dev-cert DIR)")
        if c.private_key_secret:
            key = ctx.secrets.get(c.private_key_secret).encode()
        elif c.private_key:
            key_path = Path(c.private_key).expanduser()
            if not key_path.is_file():
                raise ValueError(f"label_ai: config.c2pa.private_key {str(key_path)!r} does not exist")
            key = key_path.read_bytes()
        else:
            raise ValueError("label_ai: config.c2pa needs private_key (a PEM file) or private_key_secret")
        manifest = c2pa_mod.manifest_definition(
            source_type, title=dst.name, version=__version__,
            params={k: v for k, v in params.items() if k in ("model", "seed", "steps", "run_id")},
            edit=edited, parent=parent is not None)
        parent_arg = None
        if parent is not None and edited:
            with Image.open(parent) as p:
                parent_mime = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}.get(p.format or "")
            if parent_mime is None:
                raise ValueError(f"label_ai: parent image {parent.name} is not PNG, JPEG or WebP; C2PA cannot "
                                 "add it as an ingredient")
            parent_arg = (parent, parent_mime)
        try:
            c2pa_mod.sign_file(src, dst, mime, cert_chain_pem=chain_path.read_bytes(), key_pem=key,
                               manifest=manifest, alg=c.alg, tsa_url=c.tsa_url, parent=parent_arg)
        except c2pa_mod.C2paUnavailable:
            raise
        except Exception as exc:  # c2pa errors name the problem (bad key, bad chain, missing EKU)
            raise ValueError(f"label_ai: C2PA signing failed: {exc}") from None


def _edit_record(image) -> ArtifactRef | None:
    """The parent an editing node (edit_image) recorded in the PNG's ``pixelmill`` text chunk, if any."""
    import json

    raw = getattr(image, "text", {}).get("pixelmill") if hasattr(image, "text") else None
    try:
        src = json.loads(raw).get("edited_from") if raw else None
        return ArtifactRef(run_id=str(src["run_id"]), name=str(src["name"])) if isinstance(src, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def _home(ctx):
    """PIXELMILL_HOME, where the stored watermark key lives: the engine's settings when it handed them over
    (artifacts may live elsewhere, PIXELMILL_ARTIFACTS), else the folder above the default artifact folder."""
    try:
        return ctx.services.get("settings").home
    except KeyError:
        return ctx.artifacts_root.parent
