"""The ``moderate`` node: check text against a policy and block the run when it matches."""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import Field, model_validator

from pixelmill.moderation import Policy, PolicyError, load_policy
from pixelmill.node import Blocked, Model, Node


class ModerateConfig(Model):
    policy_file: str | None = Field(None, description="YAML policy that extends (or with `extends: none` "
                                                      "replaces) the default policy")
    policy: dict[str, Any] | None = Field(None, description="inline policy, same layout as a policy file")
    use_default: bool = Field(True, description="start from the shipped default policy")
    categories: list[str] | None = Field(None, description="only these categories (default: all)")
    action: Literal["block", "report"] = Field(
        "block", description="block: end the run as `blocked`; report: only list matches in the outputs")
    block_on_safety_checker: bool = Field(True, description="block when the image safety checker flagged it")

    @model_validator(mode="after")
    def _policy_loads(self):
        # Compile once while the workflow loads, so a broken policy is reported before any run.
        try:
            policy = _compiled(self)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        unknown = set(self.categories or []) - set(policy.categories)
        if unknown:
            raise ValueError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(sorted(unknown))}; "
                             f"the policy has {', '.join(policy.categories)}")
        return self


_CACHE: dict[str, Policy] = {}
_LOCK = threading.Lock()


def _compiled(cfg: ModerateConfig) -> Policy:
    import json
    import os

    stamp = ""
    if cfg.policy_file:
        try:
            stamp = str(os.stat(cfg.policy_file).st_mtime_ns)
        except OSError:
            stamp = "missing"
    key = json.dumps([cfg.policy_file, stamp, cfg.policy, cfg.use_default], sort_keys=True, default=str)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_policy(cfg.policy_file, cfg.policy, use_default=cfg.use_default)
        return _CACHE[key]


class ModerateInputs(Model):
    text: str | list[str] = Field("", description="text to check: a prompt, a caption, post text (or several)")
    field: str = Field("text", description="what the text is, for the block message (e.g. 'prompt')")
    nsfw_detected: bool | list[bool] | None = Field(
        None, description="the image pipeline's safety-checker verdict (e.g. diffusers' nsfw_content_detected)")


class MatchOut(Model):
    category: str
    rule: str
    term: str
    text_index: int = 0


class ModerateOutputs(Model):
    allowed: bool
    matches: list[MatchOut] = Field(default_factory=list)
    safety_checker: Literal["flagged", "clear", "not_available"] = "not_available"
    text: str | list[str] = ""


class ModerateNode(Node):
    """Check text (a prompt, caption or post) against a moderation policy: the shipped default (sexual
    content and minors, sexualised or misleading depictions of real people, hate, graphic violence,
    self-harm) extended by your YAML. On a match the run ends ``blocked`` with the rule and category in the
    run history. Matching sees through case, spacing, punctuation, leetspeak and look-alike letters. An
    image safety checker's verdict (``nsfw_detected``) is surfaced as ``safety_checker`` and blocks too."""

    type = "moderate"
    version = "1"
    Config = ModerateConfig
    Inputs = ModerateInputs
    Outputs = ModerateOutputs
    deterministic = False  # a policy file may change between runs; checking is cheap

    def run(self, inputs: ModerateInputs, ctx) -> ModerateOutputs:
        cfg: ModerateConfig = self.config
        policy = _compiled(cfg)
        texts = [inputs.text] if isinstance(inputs.text, str) else list(inputs.text)
        matches = []
        for i, text in enumerate(texts):
            for m in policy.check(text, text_index=i):
                if cfg.categories is None or m.category in cfg.categories:
                    matches.append(m)
        if inputs.nsfw_detected is None:
            verdict = "not_available"
        else:
            flags = inputs.nsfw_detected if isinstance(inputs.nsfw_detected, list) else [inputs.nsfw_detected]
            verdict = "flagged" if any(flags) else "clear"
        out = ModerateOutputs(allowed=not matches and verdict != "flagged",
                              matches=[MatchOut(**m.as_dict()) for m in matches], safety_checker=verdict,
                              text=inputs.text)
        if cfg.action == "block":
            if matches:
                m = matches[0]
                where = inputs.field + (f"[{m.text_index}]" if len(texts) > 1 else "")
                more = f" (and {len(matches) - 1} more match{'es' if len(matches) > 2 else ''})" \
                    if len(matches) > 1 else ""
                raise Blocked(f"{where} matched policy rule '{m.rule}' in category '{m.category}' "
                              f"on {m.term!r}{more}", rule=m.rule, category=m.category)
            if verdict == "flagged" and cfg.block_on_safety_checker:
                raise Blocked("the image safety checker flagged the image as not safe for work",
                              rule="safety_checker", category="sexual")
        elif matches or verdict == "flagged":
            ctx.logger.warning("moderate: %d policy match(es), safety checker %s (action: report)",
                               len(matches), verdict)
        return out
