"""The ``image_ops`` node: resize, crop, pad, rotate, flip, grid, caption bar and format conversion (Pillow)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pixelmill.imaging import ops as im
from pixelmill.node import ArtifactRef, Model, Node

Color = Field("#000000", description="a colour Pillow knows: '#rrggbb', '#rrggbbaa' or a name such as 'white'")


class Resize(Model):
    op: Literal["resize"]
    width: int | None = Field(None, ge=1, le=im.MAX_SIDE)
    height: int | None = Field(None, ge=1, le=im.MAX_SIDE)
    fit: Literal["contain", "cover", "stretch"] = Field(
        "contain", description="contain: fit inside, keep the aspect; cover: fill and crop the overflow; stretch")

    @model_validator(mode="after")
    def _one_side(self):
        if self.width is None and self.height is None:
            raise ValueError("resize needs 'width', 'height' or both")
        return self


class Crop(Model):
    op: Literal["crop"]
    left: int = Field(0, ge=0)
    top: int = Field(0, ge=0)
    width: int = Field(ge=1, le=im.MAX_SIDE)
    height: int = Field(ge=1, le=im.MAX_SIDE)


class Pad(Model):
    op: Literal["pad"]
    left: int = Field(0, ge=0, le=im.MAX_SIDE)
    top: int = Field(0, ge=0, le=im.MAX_SIDE)
    right: int = Field(0, ge=0, le=im.MAX_SIDE)
    bottom: int = Field(0, ge=0, le=im.MAX_SIDE)
    color: str = Color


class Rotate(Model):
    op: Literal["rotate"]
    degrees: float = Field(description="counter-clockwise")
    expand: bool = Field(True, description="grow the canvas so nothing is cut off")
    color: str = Color


class Flip(Model):
    op: Literal["flip"]
    direction: Literal["horizontal", "vertical"] = "horizontal"


class Grid(Model):
    op: Literal["grid"]
    columns: int | None = Field(None, ge=1, le=64, description="default: about the square root of the count")
    cell_width: int | None = Field(None, ge=1, le=im.MAX_SIDE, description="default: the first image's width")
    cell_height: int | None = Field(None, ge=1, le=im.MAX_SIDE, description="default: the first image's height")
    gap: int = Field(0, ge=0, le=1024)
    color: str = Field("#ffffff", description="background colour")


class Caption(Model):
    op: Literal["caption"]
    text: str = Field(max_length=2000)
    position: Literal["top", "bottom"] = "bottom"
    size: int = Field(16, ge=6, le=400, description="font size in pixels (Pillow's built-in scalable font)")
    color: str = Field("#ffffff", description="text colour")
    background: str = Field("#000000", description="bar colour")
    padding: int = Field(8, ge=0, le=400)


Op = Annotated[Resize | Crop | Pad | Rotate | Flip | Grid | Caption, Field(discriminator="op")]


class ImageOpsInputs(Model):
    image: ArtifactRef | None = Field(None, description="the image to work on")
    images: list[ArtifactRef] = Field(default_factory=list, max_length=256,
                                      description="images for a 'grid' op (which must come first)")
    ops: list[Op] = Field(default_factory=list, max_length=64, description="applied in order")
    format: Literal["png", "jpeg", "webp"] = "png"
    quality: int = Field(90, ge=1, le=100, description="jpeg and webp quality")


class ImageOpsOutputs(Model):
    image: ArtifactRef
    width: int
    height: int
    format: str


class ImageOpsNode(Node):
    """Edit images without a model: resize (contain, cover, stretch), crop, pad, rotate, flip, a grid or
    collage of N images, a caption bar with text, then save as PNG, JPEG or WebP at a quality."""

    type = "image_ops"
    version = "1"
    Inputs = ImageOpsInputs
    Outputs = ImageOpsOutputs
    deterministic = True

    def run(self, inputs: ImageOpsInputs, ctx) -> ImageOpsOutputs:
        _check_sources(inputs)
        ops = list(inputs.ops)
        if ops and ops[0].op == "grid":
            grid = ops.pop(0)
            tiles = [im.open_image(ctx.artifact_path(ref), ref.name) for ref in inputs.images]
            image = im.grid(tiles, grid.columns, grid.cell_width, grid.cell_height, grid.gap, grid.color)
        else:
            image = im.open_image(ctx.artifact_path(inputs.image), inputs.image.name)
        for n, op in enumerate(ops):
            ctx.progress(n, len(ops), op.op)
            image = im.apply(image, op.op, op.model_dump(exclude={"op"}))
        ref, path = ctx.new_artifact(f"image.{im.EXTENSIONS[inputs.format]}", im.MEDIA_TYPES[inputs.format])
        source = [inputs.image] if inputs.image is not None else inputs.images
        im.save(image, path, inputs.format, inputs.quality,
                {"derived_from": [{"run_id": r.run_id, "name": r.name} for r in source],
                 "ops": [op.model_dump() for op in inputs.ops]})
        return ImageOpsOutputs(image=ref, width=image.width, height=image.height, format=inputs.format)


def _check_sources(inputs: ImageOpsInputs) -> None:
    """Checked when the step runs (the fields usually come from expressions)."""
    grid_at = [i for i, op in enumerate(inputs.ops) if op.op == "grid"]
    if grid_at and grid_at != [0]:
        raise im.ImageOpError("'grid' must be the first op, and may appear once")
    if grid_at and not inputs.images:
        raise im.ImageOpError("a 'grid' op needs 'images' (a list of images, e.g. a for_each step's output)")
    if grid_at and inputs.image is not None:
        raise im.ImageOpError("give 'images' for a grid, or 'image' for the other ops, not both")
    if not grid_at and inputs.image is None:
        raise im.ImageOpError("give 'image' (or 'images' with a 'grid' op first)")
