"""The ``make_video`` node: a slideshow of images, a morph through the embedded model, or a text-to-video
pipeline, encoded as H.264 MP4, GIF or WebP."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from pixelmill.models.diffusion import prepare
from pixelmill.models.loaders import load_text2image
from pixelmill.models.locate import recommended
from pixelmill.models.options import ModelOptions, PipelineOptions
from pixelmill.node import ArtifactRef, Model, Node
from pixelmill.video.encode import even, write_animation, write_mp4
from pixelmill.video.morph import morph_frames
from pixelmill.video.slideshow import fit, slideshow_frames
from pixelmill.video.text2video import load_text2video, video_frames

MEDIA = {"mp4": "video/mp4", "gif": "image/gif", "webp": "image/webp"}


class MakeVideoConfig(ModelOptions):
    """``model`` is used by 'morph' (a Stable Diffusion family model, default embedded) and 'pipeline'
    (a diffusers text-to-video model id or folder)."""

    mode: Literal["slideshow", "morph", "pipeline"] = Field("slideshow", description=(
        "slideshow: the 'images' input; morph: frames between two prompts and seeds; "
        "pipeline: a text-to-video diffusers model"))
    format: Literal["mp4", "gif", "webp"] = Field("mp4", description="mp4 = H.264 yuv420p")
    fps: float = Field(24, gt=0, le=120, description="frames per second")
    crf: int = Field(20, ge=0, le=51, description="mp4 quality: lower is better and bigger (18-28 is usual)")


class MakeVideoInputs(Model):
    images: list[ArtifactRef] = Field(default_factory=list, description="slideshow: the images, in order")
    captions: list[str] = Field(default_factory=list, description="slideshow: text burned into each image")
    seconds_per_image: float = Field(2.0, gt=0, le=600, description="slideshow: how long each image shows")
    transition: Literal["none", "crossfade", "zoom", "pan"] = Field("crossfade", description="slideshow motion")
    transition_s: float = Field(0.5, ge=0, le=60, description="crossfade length in seconds")
    zoom: float = Field(1.15, ge=1.0, le=3.0, description="zoom/pan: how far in the camera moves")
    width: int | None = Field(None, ge=2, le=4096, description="output width (made even); default: first image / model")
    height: int | None = Field(None, ge=2, le=4096, description="output height (made even)")
    prompt: str | None = Field(None, description="morph: the first prompt; pipeline: the prompt")
    prompt_to: str | None = Field(None, description="morph: the last prompt (default: the first)")
    negative_prompt: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**63, description="morph/pipeline: the (first) seed")
    seed_to: int | None = Field(None, ge=0, lt=2**63, description="morph: the last seed (default: seed + 1)")
    frames: int = Field(16, ge=2, le=2000, description="morph/pipeline: how many frames")
    steps: int | None = Field(None, ge=1, le=500, description="morph/pipeline: denoising steps (model default)")
    guidance: float | None = Field(None, ge=0, le=50, description="morph/pipeline: guidance (model default)")

    @model_validator(mode="after")
    def _lengths(self):
        if self.captions and self.images and len(self.captions) != len(self.images):
            raise ValueError(f"{len(self.captions)} captions for {len(self.images)} images: give one per image")
        return self


class MakeVideoOutputs(Model):
    video: ArtifactRef
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    seed: int | None = None
    seed_to: int | None = None


class MakeVideoNode(Node):
    """Make a video: a slideshow of images (hold, crossfade, zoom or pan; captions burned in), a morph
    between two prompts and seeds through a Stable Diffusion model (slerped noise, lerped text
    embeddings; ``model: embedded`` works offline), or any diffusers text-to-video pipeline by id or
    folder. Encodes H.264 yuv420p MP4 (even size; plays in browsers and on Mastodon), GIF or WebP."""

    type = "make_video"
    version = "1"
    Config = MakeVideoConfig
    Inputs = MakeVideoInputs
    Outputs = MakeVideoOutputs
    uses_gpu = True
    deterministic = False

    def run(self, inputs: MakeVideoInputs, ctx) -> MakeVideoOutputs:
        cfg = self.config
        seeds = (None, None)
        if cfg.mode == "slideshow":
            frames, width, height, count = self._slideshow(inputs, ctx)
        else:
            if not inputs.prompt:
                raise ValueError(f"step '{ctx.step_id}': mode '{cfg.mode}' needs a 'prompt' input")
            pil, seeds = (self._morph if cfg.mode == "morph" else self._pipeline)(inputs, ctx)
            width = even(inputs.width or pil[0].width)
            height = even(inputs.height or pil[0].height)
            frames = (np.asarray(fit(im, width, height)) for im in pil)
            count = len(pil)
        ref, path = ctx.new_artifact(f"video.{cfg.format}", MEDIA[cfg.format])
        ctx.progress(0, count, "encoding")
        if cfg.format == "mp4":
            n = write_mp4(frames, path, cfg.fps, crf=cfg.crf,
                          on_frame=lambda i: ctx.progress(i, count, "encoding") if i % 16 == 0 else None)
        else:
            n = write_animation(frames, path, cfg.fps, cfg.format)
        ctx.logger.info("make_video: %d frames %dx%d at %g fps -> %s", n, width, height, cfg.fps, ref.name)
        return MakeVideoOutputs(video=ref, frames=n, fps=cfg.fps, duration_s=n / cfg.fps, width=width,
                                height=height, seed=seeds[0], seed_to=seeds[1])

    def _slideshow(self, inputs, ctx):
        from PIL import Image

        if not inputs.images:
            raise ValueError(f"step '{ctx.step_id}': mode 'slideshow' needs an 'images' input (a list of images)")
        pil = []
        for ref in inputs.images:
            path = ctx.artifact_path(ref)
            if not path.is_file():
                raise FileNotFoundError(f"image artifact {ref.run_id}/{ref.name} does not exist")
            with Image.open(path) as im:
                pil.append(im.convert("RGB"))
        width = even(inputs.width or pil[0].width)
        height = even(inputs.height or pil[0].height)
        per = max(1, round(inputs.seconds_per_image * self.config.fps))
        frames = slideshow_frames(pil, width=width, height=height, fps=self.config.fps,
                                  seconds_per_image=inputs.seconds_per_image, transition=inputs.transition,
                                  transition_s=inputs.transition_s, zoom=inputs.zoom, captions=inputs.captions)
        return frames, width, height, per * len(pil)

    def _morph(self, inputs, ctx):
        cfg = self.config
        r, seed, manager = prepare(cfg, inputs.seed, ctx)
        defaults = recommended(r.name, r.source)
        seed_to = inputs.seed_to if inputs.seed_to is not None else seed + 1
        ctx.progress(0, inputs.frames, f"loading {r.name}")
        # the same manager key as generate_image with default serving options: one pipeline for both nodes
        options = PipelineOptions()
        with manager.use(("text2image", *r.key, *options.load_options()),
                                  lambda: load_text2image(r, options)) as pipe:
            native = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
            w = int(defaults.get("width") or native)
            h = int(defaults.get("height") or native)
            pil = morph_frames(pipe, prompt_a=inputs.prompt, prompt_b=inputs.prompt_to or inputs.prompt,
                               seed_a=seed, seed_b=seed_to, frames=inputs.frames,
                               steps=inputs.steps or int(defaults["steps"]),
                               guidance=float(inputs.guidance if inputs.guidance is not None else defaults["guidance"]),
                               width=w, height=h, negative_prompt=inputs.negative_prompt,
                               on_frame=lambda i, n: ctx.progress(i, n, "drawing frames"))
        return pil, (seed, seed_to)

    def _pipeline(self, inputs, ctx):
        cfg = self.config
        if cfg.model == "embedded":
            raise ValueError("mode 'pipeline' needs a text-to-video model id or folder (there is no embedded one); "
                             "use mode 'morph' with the embedded model")
        r, seed, manager = prepare(cfg, inputs.seed, ctx, "video")
        ctx.progress(0, None, f"loading {r.name}")
        with manager.use(("text2video", *r.key),
                                  lambda: load_text2video(r.name, r.source, r.device, r.dtype)) as pipe:
            ctx.check_cancelled()
            pil = video_frames(pipe, prompt=inputs.prompt, negative_prompt=inputs.negative_prompt,
                               frames=inputs.frames, steps=inputs.steps, guidance=inputs.guidance,
                               width=inputs.width, height=inputs.height, seed=seed)
        return pil, (seed, None)

