"""Image editing with diffusers: image-to-image, inpainting and outpainting.

The embedded model (and any text-to-image pipeline already loaded) is turned into an img2img or
inpainting pipeline with ``from_pipe``, which shares its components (no second copy in memory); any
other id or folder loads through ``AutoPipelineForImage2Image`` / ``AutoPipelineForInpainting`` with the
same offline rules as text-to-image. Inpainting pastes the original back outside the (feathered) mask,
so pixels away from the edit are the original ones, not a VAE round trip of them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter

from .loaders import Resolved, _is_missing, _offline_kwargs, _quiet
from .locate import ModelNotAvailable, not_available_message

KINDS = {"img2img": "image-to-image", "inpaint": "inpainting"}


def load_editor(kind: str, r: Resolved, base=None):
    """An img2img or inpainting pipeline: ``from_pipe(base)`` when a text-to-image pipeline is given."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    cls = AutoPipelineForImage2Image if kind == "img2img" else AutoPipelineForInpainting
    _quiet()
    if base is not None:
        pipe = cls.from_pipe(base)
    else:
        try:
            pipe = cls.from_pretrained(r.source, torch_dtype=r.dtype, **_offline_kwargs())
        except Exception as exc:  # noqa: BLE001 - mapped to a message that says what to do
            if _is_missing(exc) and not os.path.isdir(r.source):
                raise ModelNotAvailable(not_available_message(r.name, KINDS[kind], exc)) from exc
            raise ModelNotAvailable(f"{KINDS[kind]} model '{r.name}' could not be loaded from {r.source}: "
                                    f"{exc}") from exc
        pipe = pipe.to(r.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def snap(size: tuple[int, int], multiple: int = 8) -> tuple[int, int]:
    """The nearest size (at least ``multiple``) whose sides are multiples of ``multiple``."""
    return tuple(max(multiple, round(s / multiple) * multiple) for s in size)


@dataclass
class Canvas:
    """What the pipeline works on: the image, the mask (white: repaint) and the original to paste back."""

    image: Image.Image
    mask: Image.Image | None


def mask_from_alpha(image: Image.Image) -> Image.Image:
    """Transparent pixels are the ones to repaint."""
    if image.mode != "RGBA":
        raise ValueError("the image has no alpha channel: give 'mask' or 'rect' instead, or save it with "
                         "transparency where it should be repainted")
    return ImageChops.invert(image.getchannel("A")).point(lambda v: 255 if v >= 128 else 0)


def mask_from_image(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """White (bright) pixels are the ones to repaint; a mask of another size is scaled to the image."""
    gray = mask.convert("L")
    if gray.size != size:
        gray = gray.resize(size, Image.Resampling.NEAREST)
    return gray.point(lambda v: 255 if v >= 128 else 0)


def mask_from_rect(size: tuple[int, int], left: int, top: int, width: int, height: int) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (left, top, min(size[0], left + width), min(size[1], top + height)))
    return mask


def extend(image: Image.Image, left: int, top: int, right: int, bottom: int, overlap: int = 0) -> Canvas:
    """A larger canvas (new area filled by stretching the edge pixels) and a mask of the new area."""
    w, h = image.size
    big = image.convert("RGB").resize((w + left + right, h + top + bottom), Image.Resampling.BILINEAR)
    big = big.filter(ImageFilter.GaussianBlur(radius=max(1, min(big.size) // 16)))
    big.paste(image.convert("RGB"), (left, top))
    mask = Image.new("L", big.size, 255)
    mask.paste(0, (left + (overlap if left else 0), top + (overlap if top else 0),
                   left + w - (overlap if right else 0), top + h - (overlap if bottom else 0)))
    return Canvas(big, mask)


def run_edit(pipe, *, kind: str, image: Image.Image, mask: Image.Image | None, prompt: str, negative_prompt,
             steps: int, guidance: float, strength: float, seed: int, lock, on_step=None) -> Image.Image:
    """One edit at the image's size (snapped to multiples of 8 for the model, then scaled back)."""
    import torch

    size = image.size
    work = snap(size)
    src = image.convert("RGB").resize(work, Image.Resampling.LANCZOS) if work != size else image.convert("RGB")
    kwargs = {}
    if on_step is not None:
        total = max(1, int(steps * strength))

        def callback(p, i, t, tensors):
            on_step(min(i + 1, total), total)
            return tensors
        kwargs["callback_on_step_end"] = callback
    if kind == "inpaint":
        kwargs.update(mask_image=mask.resize(work, Image.Resampling.NEAREST), width=work[0], height=work[1])
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with lock:
        with torch.inference_mode():
            out = pipe(prompt=prompt, negative_prompt=negative_prompt, image=src, strength=strength,
                       num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="pil",
                       **kwargs).images[0]
    if out.size != size:
        out = out.resize(size, Image.Resampling.LANCZOS)
    return out


def paste_back(original: Image.Image, edited: Image.Image, mask: Image.Image, feather: int) -> Image.Image:
    """The edit inside the mask (softened by ``feather`` px at its edge), the original everywhere else."""
    soft = mask.filter(ImageFilter.GaussianBlur(feather)) if feather else mask
    soft = ImageChops.lighter(soft, mask)  # the masked area itself stays fully edited
    return Image.composite(edited.convert("RGB"), original.convert("RGB"), soft)


def save_edit_png(image: Image.Image, path, params: dict) -> None:
    """PNG with the ``parameters`` text (prompt, settings) and a ``pixelmill`` JSON chunk that names the
    image it was edited from (``edited_from``), so labelling can tell an edit from a new image."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    lines = [params["prompt"]]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    lines.append(f"Steps: {params['steps']}, CFG scale: {params['guidance']:g}, Seed: {params['seed']}, "
                 f"Denoising strength: {params['strength']:g}, Size: {params['width']}x{params['height']}, "
                 f"Model: {params['model']}, Edit: {params['edit']}")
    info.add_text("parameters", "\n".join(lines))
    info.add_text("pixelmill", json.dumps(params, sort_keys=True, default=str))
    image.save(path, format="PNG", pnginfo=info)
