"""The ``caption`` node: describe images with a BLIP captioner (embedded tiny model or any BLIP id/folder)."""

from __future__ import annotations

from pydantic import Field

from pixelmill.models.loaders import load_captioner, resolve_model
from pixelmill.models.manager import manager_for
from pixelmill.models.options import ModelOptions
from pixelmill.node import ArtifactRef, Model, Node


class CaptionConfig(ModelOptions):
    """``model``: 'embedded', a BLIP captioning model id (local cache) or a folder."""


class CaptionInputs(Model):
    image: ArtifactRef | None = Field(None, description="one image (e.g. steps.gen.outputs.image)")
    images: list[ArtifactRef] = Field(default_factory=list, description="several images, captioned in one batch")
    prefix: str | None = Field(None, description="conditional captioning: the caption starts with this text")
    max_tokens: int = Field(30, ge=1, le=512, description="most new tokens per caption")
    num_beams: int = Field(1, ge=1, le=16, description="1 = greedy; more = beam search")


class CaptionOutputs(Model):
    text: str
    texts: list[str]
    model: str


def caption_images(captioner, pil_images, *, prefix=None, max_tokens=30, num_beams=1, should_stop=None) -> list[str]:
    """``should_stop()`` is asked after every generated token; True ends generation early (a cancel)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    proc = captioner.processor
    kwargs = {"images": pil_images, "return_tensors": "pt"}
    if prefix:
        kwargs["text"] = [prefix] * len(pil_images)
    batch = proc(**kwargs)
    batch = {k: (v.to(captioner.device, dtype=captioner.dtype) if k == "pixel_values" else v.to(captioner.device))
             for k, v in batch.items()}
    # never past the decoder's position table (the embedded one has 24 positions)
    limit = getattr(captioner.model.config.text_config, "max_position_embeddings", None)
    if limit:
        used = batch["input_ids"].shape[1] - 1 if "input_ids" in batch else 1
        max_tokens = max(1, min(max_tokens, limit - used))
    extra = {}
    if should_stop is not None:
        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool,
                                  device=input_ids.device)

        extra["stopping_criteria"] = StoppingCriteriaList([_Stop()])
    with torch.inference_mode():
        out = captioner.model.generate(**batch, max_new_tokens=max_tokens, num_beams=num_beams, do_sample=False,
                                       **extra)
    return [" ".join(t.split()) for t in proc.batch_decode(out, skip_special_tokens=True)]


class CaptionNode(Node):
    """Caption images with BLIP (``BlipForConditionalGeneration``). ``model: embedded`` is the tiny
    offline captioner shipped with pixelmill, trained on the same shapes world as the embedded image
    model; any BLIP captioning id or folder works the same way (offline unless
    PIXELMILL_ALLOW_DOWNLOADS=1). Optional conditional ``prefix``, greedy or beam search, several images
    in one batch."""

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
        with manager_for(ctx).use(("captioner", *r.key), lambda: load_captioner(r)) as captioner:
            ctx.check_cancelled()
            texts = caption_images(captioner, pil, prefix=inputs.prefix, max_tokens=inputs.max_tokens,
                                   num_beams=inputs.num_beams, should_stop=lambda: ctx.cancelled)
            ctx.check_cancelled()  # a cancel that stopped generation early must not look like a short caption
        ctx.progress(len(pil), len(pil), "captioned")
        return CaptionOutputs(text=texts[0], texts=texts, model=r.name)
