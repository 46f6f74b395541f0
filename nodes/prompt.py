"""The ``prompt`` node: render a prompt from a template, seeded random choices and the date."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import TemplateError
from pydantic import Field, field_validator

from pixelmill.node import Model, Node, TemplateText
from pixelmill.sandbox import render_template


class PromptConfig(Model):
    timezone: str = Field("UTC", description="timezone of the date and time variables")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone '{value}' (use an IANA name like 'Europe/Paris')") from None
        return value


class PromptInputs(Model):
    # TemplateText: the parts that came from ${{ }} expressions are inserted as plain text, never parsed
    template: TemplateText = Field(description="jinja2 text, e.g. 'a {{ color }} {{ shape }} at {{ time }}'")
    choices: dict[str, list[Any]] = Field(default_factory=dict, description="name -> options; one is drawn per run")
    vars: dict[str, Any] = Field(default_factory=dict, description="fixed variables")
    seed: int | None = Field(None, description="same seed, same choices; drawn and recorded when absent")


class PromptOutputs(Model):
    text: str
    seed: int
    choices: dict[str, Any]


class PromptNode(Node):
    """Write a prompt: a template filled with fixed variables, seeded random choices and date/time
    variables (``date``, ``time``, ``weekday``, ``month``, ``year``). The seed and every choice are recorded
    in the outputs so a run can be reproduced."""

    type = "prompt"
    version = "1"
    Config = PromptConfig
    Inputs = PromptInputs
    Outputs = PromptOutputs
    deterministic = False  # date variables change the text over time

    def run(self, inputs: PromptInputs, ctx) -> PromptOutputs:
        seed = inputs.seed if inputs.seed is not None else random.SystemRandom().randrange(2**31)
        rng = random.Random(seed)
        chosen = {}
        for name in sorted(inputs.choices):
            options = inputs.choices[name]
            if not options:
                raise ValueError(f"choice list '{name}' is empty")
            chosen[name] = rng.choice(options)
        now = dt.datetime.now(ZoneInfo(self.config.timezone))
        variables = {
            "date": now.date().isoformat(), "time": now.strftime("%H:%M"), "weekday": now.strftime("%A"),
            "month": now.strftime("%B"), "year": now.year, "seed": seed,
            **inputs.vars, **chosen,
        }
        try:
            # only the literal text written in the workflow is a template: ${{ }} results are inserted as data
            text = render_template(inputs.template, variables, check=ctx.check_cancelled)
        except TemplateError as exc:
            raise ValueError(f"prompt template: {exc}") from None
        text = " ".join(text.split())
        ctx.logger.info("prompt: %s (seed %d)", text, seed)
        return PromptOutputs(text=text, seed=seed, choices=chosen)
