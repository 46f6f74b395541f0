"""The ``prompt`` node: render a prompt from a template, seeded random choices and the date."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import TemplateError, TemplateSyntaxError, meta
from pydantic import Field, field_validator

from pixelmill.node import TEMPLATE_FIELD, Model, Node, StepCheck, TemplateText
from pixelmill.sandbox import ENV as _ENV
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
    template: TemplateText = Field(description="jinja2 text, e.g. 'a {{ color }} {{ shape }} at {{ time }}'",
                                   json_schema_extra={TEMPLATE_FIELD: True})
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
    date_variables = ("date", "time", "weekday", "month", "year", "seed")

    @classmethod
    def check_step(cls, check: StepCheck) -> None:
        """A literal template's syntax, and its variables that neither vars, choices nor the date give."""
        template = check.with_.get("template")
        if not isinstance(template, str) or check.is_expression(template):
            return
        try:
            used = meta.find_undeclared_variables(_ENV.parse(template))
        except TemplateSyntaxError as exc:
            check.error(("with", "template"), f"prompt template: {exc.message} (template line {exc.lineno})")
            return
        known = set(cls.date_variables)
        for key in ("vars", "choices"):
            given = check.with_.get(key, {})
            if not isinstance(given, dict) or check.is_expression(list(given)):
                return  # names known at run time only
            known.update(given)
        for name in sorted(used - known):
            check.warn(("with", "template"), f"template variable '{name}' has no value",
                       check.did_you_mean(name, known) or "give it under 'vars' or 'choices'")

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
