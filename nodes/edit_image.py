"""The ``edit_image`` node: image-to-image, inpainting and outpainting with diffusers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pixelmill.imaging.ops import ImageOpError, open_image
from pixelmill.models import editing
from pixelmill.models.diffusion import prepare
from pixelmill.models.loaders import load_text2image
from pixelmill.models.locate import EMBEDDED, recommended
from pixelmill.models.manager import pipeline_lock
from pixelmill.models.options import ModelOptions
from pixelmill.node import ArtifactRef, Model, Node


class EditImageConfig(ModelOptions):
    """``model``: 'embedded' (the tiny shapes model, as img2img/inpainting pipelines built from its
    components), or any diffusers image-to-image / inpainting id (local cache) or folder."""

    feather: int = Field(4, ge=0, le=256, description="inpaint/outpaint: soften the mask edge by this many pixels")


class Rect(Model):
    left: int = Field(0, ge=0)
    top: int = Field(0, ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class Extend(Model):
    left: int = Field(0, ge=0, le=4096)
    top: int = Field(0, ge=0, le=4096)
    right: int = Field(0, ge=0, le=4096)
    bottom: int = Field(0, ge=0, le=4096)


class EditImageInputs(Model):
    image: ArtifactRef = Field(description="the image to edit")
    mode: Literal["img2img", "inpaint", "outpaint"] = Field(
        "img2img", description="img2img: redraw it all; inpaint: redraw the masked part; outpaint: extend the canvas")
    prompt: str = Field(description="what the edited image (or the masked part) should show")
    negative_prompt: str | None = None
    strength: float | None = Field(None, gt=0, le=1, description="how much to change: 0.6 for img2img, 1 for "
                                                                 "inpaint/outpaint when not given")
    mask: ArtifactRef | None = Field(None, description="inpaint: an image whose white pixels are repainted")
    mask_from_alpha: bool = Field(False, description="inpaint: repaint the transparent pixels of the image")
    rect: Rect | None = Field(None, description="inpaint: repaint this rectangle")
    extend: Extend | None = Field(None, description="outpaint: pixels to add on each side")
    overlap: int = Field(0, ge=0, le=256, description="outpaint: also repaint this many pixels of the old edge")
    steps: int | None = Field(None, ge=1, le=500)
    guidance: float | None = Field(None, ge=0, le=50)
    seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same edit; drawn and recorded when absent")


class EditImageOutputs(Model):
    image: ArtifactRef
    edited_from: ArtifactRef = Field(description="the image this one is an AI edit of")
    mode: str
    seed: int
    model: str
    steps: int
    guidance: float
    strength: float
    width: int
    height: int
    device: str


class EditImageNode(Node):
    """Edit an image with a diffusion model: img2img (``strength``), inpainting (mask from an image, the
    alpha channel or a rectangle) and outpainting (extend the canvas, then inpaint the new area). Outside
    the mask the original pixels are kept. The PNG records prompt, settings and ``edited_from``."""

    type = "edit_image"
    version = "1"
    Config = EditImageConfig
    Inputs = EditImageInputs
    Outputs = EditImageOutputs
    uses_gpu = True
    deterministic = False

    def cacheable(self, inputs: EditImageInputs) -> bool:
        return inputs.seed is not None

    def run(self, inputs: EditImageInputs, ctx) -> EditImageOutputs:
        cfg = self.config
        original = open_image(ctx.artifact_path(inputs.image), inputs.image.name)
        canvas, mask = self._canvas(inputs, original, ctx)
        kind = "img2img" if inputs.mode == "img2img" else "inpaint"
        r, seed, manager = prepare(cfg, inputs.seed, ctx)
        defaults = recommended(r.name, r.source)
        steps = inputs.steps or int(defaults["steps"])
        guidance = float(inputs.guidance if inputs.guidance is not None else defaults["guidance"])
        strength = inputs.strength if inputs.strength is not None else (0.6 if kind == "img2img" else 1.0)
        ctx.progress(0, steps, f"loading {r.name}")
        with manager.use(("text2image", *r.key), lambda: load_text2image(r)) if r.name == EMBEDDED else \
                _nothing() as base:
            with manager.use((kind, *r.key), lambda: editing.load_editor(kind, r, base)) as pipe:
                edited = editing.run_edit(
                    pipe, kind=kind, image=canvas, mask=mask, prompt=inputs.prompt,
                    negative_prompt=inputs.negative_prompt, steps=steps, guidance=guidance, strength=strength,
                    seed=seed, lock=pipeline_lock(pipe), on_step=lambda i, n: ctx.progress(i, n, "denoising"))
        if mask is not None:
            edited = editing.paste_back(canvas, edited, mask, cfg.feather)
        params = {
            "prompt": inputs.prompt, "negative_prompt": inputs.negative_prompt or "", "steps": steps,
            "guidance": guidance, "strength": strength, "seed": seed, "width": edited.width,
            "height": edited.height, "model": r.name, "edit": inputs.mode, "device": r.device,
            "edited_from": {"run_id": inputs.image.run_id, "name": inputs.image.name},
        }
        ref, path = ctx.new_artifact("image.png", "image/png")
        editing.save_edit_png(edited, path, params)
        ctx.logger.info("edited %s (%s) with %s, seed %d", inputs.image.name, inputs.mode, r.name, seed)
        return EditImageOutputs(image=ref, edited_from=inputs.image, mode=inputs.mode, seed=seed, model=r.name,
                                steps=steps, guidance=guidance, strength=strength, width=edited.width,
                                height=edited.height, device=r.device)

    @staticmethod
    def _canvas(inputs: EditImageInputs, original, ctx):
        """(image the model works on, mask of what to repaint or None)."""
        if inputs.mode == "img2img":
            return original, None
        if inputs.mode == "outpaint":
            e = inputs.extend
            if e is None or not (e.left or e.top or e.right or e.bottom):
                raise ImageOpError("outpaint needs 'extend' with at least one side above 0")
            c = editing.extend(original, e.left, e.top, e.right, e.bottom, inputs.overlap)
            return c.image, c.mask
        given = [inputs.mask is not None, inputs.mask_from_alpha, inputs.rect is not None]
        if sum(given) != 1:
            raise ImageOpError("inpaint needs exactly one of 'mask', 'mask_from_alpha: true' or 'rect'")
        try:
            if inputs.mask is not None:
                mask = editing.mask_from_image(open_image(ctx.artifact_path(inputs.mask), inputs.mask.name),
                                               original.size)
            elif inputs.mask_from_alpha:
                mask = editing.mask_from_alpha(original)
            else:
                rc = inputs.rect
                mask = editing.mask_from_rect(original.size, rc.left, rc.top, rc.width, rc.height)
        except ValueError as exc:
            raise ImageOpError(str(exc)) from None
        if mask.getbbox() is None:
            raise ImageOpError("the mask is empty: nothing to repaint")
        return original.convert("RGB"), mask


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
