"""A test node that draws a plain image (with a marker square) so image steps have something to work on."""

from __future__ import annotations

from PIL import Image, ImageDraw
from pydantic import Field

from pixelmill.node import ArtifactRef, Model, Node


class MakeImageInputs(Model):
    color: str = "#ff0000"
    width: int = Field(64, ge=1)
    height: int = Field(48, ge=1)
    marker: str | None = Field(None, description="colour of a 8x8 square in the top-left corner")
    alpha_hole: bool = Field(False, description="make the centre quarter transparent (RGBA)")


class MakeImageOutputs(Model):
    image: ArtifactRef


class MakeImage(Node):
    """Draw a plain image."""

    type = "t_make_image"
    Inputs = MakeImageInputs
    Outputs = MakeImageOutputs
    deterministic = True

    def run(self, inputs, ctx):
        image = Image.new("RGBA" if inputs.alpha_hole else "RGB", (inputs.width, inputs.height), inputs.color)
        draw = ImageDraw.Draw(image)
        if inputs.marker:
            draw.rectangle((0, 0, 7, 7), fill=inputs.marker)
        if inputs.alpha_hole:
            w, h = inputs.width, inputs.height
            draw.rectangle((w // 4, h // 4, 3 * w // 4 - 1, 3 * h // 4 - 1), fill=(0, 0, 0, 0))
        ref, path = ctx.new_artifact("made.png", "image/png")
        image.save(path, format="PNG")
        return MakeImageOutputs(image=ref)
