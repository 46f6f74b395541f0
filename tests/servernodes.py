"""Throwaway node types for the server tests (registered by serve_test_app.py, never installed)."""

from __future__ import annotations

import time
from pathlib import Path

from pixelmill.node import ArtifactRef, Model, Node


class SleepInputs(Model):
    seconds: float = 0.5
    steps: int = 5
    mark: str | None = None  # a file that gets the run id appended when the step completes


class SleepOutputs(Model):
    slept: float
    run_id: str


class SleepNode(Node):
    """Sleep for a while, reporting progress in steps (test node)."""

    type = "test_sleep"
    Inputs = SleepInputs
    Outputs = SleepOutputs

    def run(self, inputs, ctx):
        for i in range(inputs.steps):
            ctx.progress(i, inputs.steps, f"step {i}")
            time.sleep(inputs.seconds / max(1, inputs.steps))
        ctx.progress(inputs.steps, inputs.steps, "done")
        if inputs.mark:
            with open(inputs.mark, "a") as fh:
                fh.write(ctx.run_id + "\n")
        return SleepOutputs(slept=inputs.seconds, run_id=ctx.run_id)


class CountInputs(Model):
    log: str
    text: str = "x"


class CountOutputs(Model):
    text: str


class CountNode(Node):
    """Append the run id to a log file and pass text through (test node)."""

    type = "test_count"
    Inputs = CountInputs
    Outputs = CountOutputs

    def run(self, inputs, ctx):
        with open(inputs.log, "a") as fh:
            fh.write(f"{ctx.run_id} {ctx.step_id}\n")
        return CountOutputs(text=inputs.text.upper())


class FlakyInputs(Model):
    ok_file: str
    text: str = ""


class FlakyOutputs(Model):
    text: str


class FlakyNode(Node):
    """Fail unless a file exists (test node)."""

    type = "test_flaky"
    Inputs = FlakyInputs
    Outputs = FlakyOutputs

    def run(self, inputs, ctx):
        if not Path(inputs.ok_file).exists():
            raise RuntimeError(f"{inputs.ok_file} does not exist yet")
        return FlakyOutputs(text=inputs.text + "!")


class SquareInputs(Model):
    color: str = "red"


class SquareOutputs(Model):
    image: ArtifactRef


class SquareNode(Node):
    """Draw a flat colour square as PNG (the calendar page's thumbnails)."""

    type = "test_square"
    Inputs = SquareInputs
    Outputs = SquareOutputs

    def run(self, inputs, ctx):
        from PIL import Image

        ref, path = ctx.new_artifact("square.png", "image/png")
        Image.new("RGB", (96, 96), inputs.color).save(path)
        return SquareOutputs(image=ref)


class ImageInputs(Model):
    color: str = "red"
    size: int = 8


class ImageOutputs(Model):
    image: ArtifactRef


class ImageNode(Node):
    """Write a small solid PNG (test node; deterministic, so its output is cached)."""

    type = "test_image"
    deterministic = True
    Inputs = ImageInputs
    Outputs = ImageOutputs

    def run(self, inputs, ctx):
        from PIL import Image

        ref, path = ctx.new_artifact("image.png", "image/png")
        Image.new("RGB", (inputs.size, inputs.size), inputs.color).save(path, format="PNG")
        return ImageOutputs(image=ref)


NODES = [SleepNode, CountNode, FlakyNode, SquareNode, ImageNode]
