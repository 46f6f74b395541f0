"""A third-party node: nothing in pixelmill knows its name."""

from pixelmill.node import Model, Node


class ShoutConfig(Model):
    marks: int = 1


class ShoutInputs(Model):
    text: str


class ShoutOutputs(Model):
    text: str


class Shout(Node):
    """Upper-case a text and add exclamation marks."""

    type = "shout"
    version = "1"
    Config = ShoutConfig
    Inputs = ShoutInputs
    Outputs = ShoutOutputs
    deterministic = True

    def run(self, inputs, ctx):
        return ShoutOutputs(text=inputs.text.upper() + "!" * self.config.marks)
