"""The ``caption`` node: describe images with a BLIP captioner (embedded tiny model or any BLIP id/folder)."""

from __future__ import annotations

from pydantic import Field

from pixelmill.models import captioners
from pixelmill.models.loaders import load_captioner, resolve_model
from pixelmill.models.manager import manager_for
from pixelmill.models.memory import estimate_folder_bytes
from pixelmill.models.options import ModelOptions
from pixelmill.node import ArtifactRef, Model, Node


class CaptionConfig(ModelOptions):
    """``model``: 'embedded', or a BLIP, BLIP-2, GIT or LLaVA-style model id (local cache) or folder."""


class CaptionInputs(Model):
    image: ArtifactRef | None = Field(None, description="one image (e.g. steps.gen.outputs.image)")
    images: list[ArtifactRef] = Field(default_factory=list, description="several images, captioned in one batch")
    prefix: str | None = Field(None, description="conditional captioning: the caption starts with this text")
    max_tokens: int = Field(30, ge=1, le=512, description="most new tokens per caption")
    num_beams: int = Field(1, ge=1, le=16, description="1 = greedy; more = beam search")
    instruction: str | None = Field(
        None, description="LLaVA-style models: what to ask (default: 'Write a short caption for this image.')")


class CaptionOutputs(Model):
    text: str
    texts: list[str]
    model: str


def caption_images(captioner, pil_images, *, prefix=None, instruction=None, max_tokens=30, num_beams=1,
                   should_stop=None) -> list[str]:
    """``should_stop()`` is asked after every generated token; True ends generation early (a cancel)."""
    return captioners.caption(captioner, pil_images, prefix=prefix, instruction=instruction, max_tokens=max_tokens,
                              num_beams=num_beams, should_stop=should_stop)


class CaptionNode(Node):
    """Caption images. ``model: embedded`` is the tiny offline BLIP captioner shipped with pixelmill,
    trained on the same shapes world as the embedded image model. Any BLIP, BLIP-2, GIT or LLaVA-style
    id or folder loads through its own transformers class, chosen from its config.json (offline unless
    PIXELMILL_ALLOW_DOWNLOADS=1); other architectures, and checkpoints that do not hold every weight of
    their model, are refused. Optional conditional ``prefix``, an ``instruction`` for LLaVA-style
    models, greedy or beam search, several images in one batch."""

    type = "caption"
    version = "1"
    Config = CaptionConfig
    Inputs = CaptionInputs
    Outputs = CaptionOutputs
    uses_gpu = True
    # Same image file, model and settings give the same text (greedy/beam search draw nothing at random).
    # The cache key names the model, not its weights: replacing a model's files in place can serve an
    # old caption from the cache until the step is run with `cache: false`.
    deterministic = True

    def run(self, inputs: CaptionInputs, ctx) -> CaptionOutputs:
        from PIL import Image

        refs = ([inputs.image] if inputs.image is not None else []) + list(inputs.images)
        if not refs:
            raise ValueError(f"step '{ctx.step_id}': give the caption node an 'image' or 'images' input")
        pil = []
        for ref in refs:
            path = ctx.artifact_path(ref)
            if not path.is_file():
                raise FileNotFoundError(f"image artifact {ref.run_id}/{ref.name} does not exist")
            with Image.open(path) as im:
                pil.append(im.convert("RGB"))
        r = resolve_model(self.config.model, "blip", self.config.device, self.config.dtype)
        ctx.progress(0, len(pil), f"loading {r.name}")
        element = 2 if str(r.dtype).endswith(("float16", "bfloat16")) else 4
        estimate = estimate_folder_bytes(r.source, element)
        warnings: list[str] = []
        with manager_for(ctx).use(("captioner", *r.key), lambda: load_captioner(r), estimate,
                                  warnings.append) as captioner:
            for w in warnings:
                ctx.logger.warning("%s", w)
            ctx.check_cancelled()
            texts = caption_images(captioner, pil, prefix=inputs.prefix, instruction=inputs.instruction,
                                   max_tokens=inputs.max_tokens, num_beams=inputs.num_beams,
                                   should_stop=lambda: ctx.cancelled)
            ctx.check_cancelled()  # a cancel that stopped generation early must not look like a short caption
        ctx.progress(len(pil), len(pil), "captioned")
        return CaptionOutputs(text=texts[0], texts=texts, model=r.name)
