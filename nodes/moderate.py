"""The ``moderate`` node: check prompts, generated text, post text and images; block the run on a match."""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Literal

from pydantic import Field, model_validator

from pixelmill.moderation import Policy, PolicyError, load_policy
from pixelmill.moderation.gate import Gate, GateSettings
from pixelmill.moderation.guard import GuardClient, GuardSettings
from pixelmill.node import ArtifactRef, Blocked, Model, Node


class GuardConfig(Model):
    url: str = Field(description="base URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1")
    api: Literal["chat", "moderations"] = Field(
        "chat", description="chat: /chat/completions with a Llama Guard-style prompt; moderations: /moderations")
    model: str = Field("llama-guard", description="model name sent to the server")
    prompt: Literal["policy", "server_template"] = Field(
        "policy", description="policy: our categories in a Llama Guard-style prompt; server_template: send the "
                              "text alone (the server applies Llama Guard's template; codes read as Llama Guard 3)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never stored)")
    timeout: float = Field(10.0, gt=0, le=120)
    on_error: Literal["block", "allow"] = Field("block", description="when the guard cannot answer")


class ModerateConfig(Model):
    policy_file: str | None = Field(None, description="YAML policy that extends (or with `extends: none` "
                                                      "replaces) the default policy")
    policy: dict[str, Any] | None = Field(None, description="inline policy, same layout as a policy file")
    use_default: bool = Field(True, description="start from the shipped default policy")
    categories: list[str] | None = Field(None, description="only these categories (default: all)")
    action: Literal["block", "report"] = Field(
        "block", description="block: end the run as `blocked`; report: only list the decision in the outputs")
    semantic: bool = Field(True, description="the semantic layer (sentence embeddings + trained classifier)")
    block_threshold: float | None = Field(None, gt=0, lt=1, description="semantic harm probability that blocks "
                                                                         "(default: the trained threshold)")
    non_english: Literal["block", "review", "allow"] = Field(
        "block", description="what to do with text that looks non-English (the embedding model reads English): "
                             "block, review (not let through; outputs review: true) or allow (checked anyway)")
    guard: GuardConfig | None = Field(None, description="optional third layer: a guard model endpoint")
    block_on_safety_checker: bool = Field(True, description="block when the image safety checker flagged it")
    image_classifier: Literal["none", "nudenet"] = Field(
        "none", description="check `image` inputs with NudeNet (optional extra, AGPL-3.0 licence file; off)")
    image_threshold: float = Field(0.5, gt=0, lt=1, description="NudeNet score that flags an image")

    @model_validator(mode="after")
    def _policy_loads(self):
        # Compile once while the workflow loads, so a broken policy is reported before any run.
        try:
            policy = _compiled(self)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        known = set(policy.categories) | {"non_english"}
        unknown = set(self.categories or []) - known
        if unknown:
            raise ValueError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(sorted(unknown))}; "
                             f"the policy has {', '.join(sorted(known))}")
        if self.image_classifier == "nudenet":
            import importlib.util
            if importlib.util.find_spec("nudenet") is None:
                raise ValueError("image_classifier 'nudenet' needs the optional extra: pip install "
                                 "'pixelmill[nudenet]' (its wheel carries an AGPL-3.0 LICENSE file)")
        return self


_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def _compiled(cfg: ModerateConfig) -> Policy:
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


def _semantic_layer():
    """The shared semantic layer (the embedding model loads once per process)."""
    with _LOCK:
        if "semantic" not in _CACHE:
            from pixelmill.moderation.embedding import load_embedder
            from pixelmill.moderation.semantic import SemanticLayer, load_head
            _CACHE["semantic"] = SemanticLayer(load_embedder(), load_head())
        return _CACHE["semantic"]


def _nudenet(threshold: float):
    key = f"nudenet:{threshold}"
    with _LOCK:
        if key not in _CACHE:
            from pixelmill.moderation.images import NudeNetClassifier
            _CACHE[key] = NudeNetClassifier(threshold)
        return _CACHE[key]


class ModerateInputs(Model):
    text: str | list[str] = Field("", description="text to check: a prompt, a generated caption or text, "
                                                  "post text (or several)")
    field: str = Field("text", description="what the text is, for the block message (e.g. 'prompt')")
    nsfw_detected: bool | None | list[bool | None] = Field(
        None, description="the image pipeline's safety-checker verdict (generate_image's `nsfw` output)")
    image: ArtifactRef | list[ArtifactRef] | None = Field(
        None, description="image(s) for the optional image classifier")


class MatchOut(Model):
    category: str
    rule: str
    term: str
    text_index: int = 0


class DecisionOut(Model):
    action: Literal["allow", "block", "review"]
    category: str = ""
    layer: str = ""
    rule: str = ""
    detail: str = ""
    text_index: int = 0


class ModerateOutputs(Model):
    allowed: bool
    review: bool = False
    decision: DecisionOut
    matches: list[MatchOut] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    safety_checker: Literal["flagged", "clear", "not_available"] = "not_available"
    image_flags: list[bool] = Field(default_factory=list)
    text: str | list[str] = ""


class ModerateNode(Node):
    """Check text (a prompt, a generated caption or text, the text of a post) and images against the
    moderation gate: normalised rules from the policy (the shipped default: sexual content and minors,
    sexualised or misleading depictions of real people, hate, graphic violence, self-harm, extended by your
    YAML), a fail-closed minors check, a semantic layer (sentence embeddings + a trained classifier, English),
    a configurable action for non-English text, and optionally a guard model endpoint. An image safety
    checker's verdict (``nsfw_detected``) and the optional NudeNet image classifier block too. On a block
    the run ends ``blocked`` with the layer, rule and category that decided in the run history."""

    type = "moderate"
    version = "2"
    Config = ModerateConfig
    Inputs = ModerateInputs
    Outputs = ModerateOutputs
    deterministic = False  # a policy file or a guard model may change between runs

    def _gate(self, cfg: ModerateConfig) -> Gate:
        guard = None
        if cfg.guard is not None:
            guard = GuardClient(GuardSettings(**cfg.guard.model_dump()))
        settings = GateSettings(semantic=cfg.semantic, non_english=cfg.non_english, categories=cfg.categories,
                                block_threshold=cfg.block_threshold)
        return Gate(_compiled(cfg), settings, semantic=_semantic_layer() if cfg.semantic else None, guard=guard)

    def run(self, inputs: ModerateInputs, ctx) -> ModerateOutputs:
        cfg: ModerateConfig = self.config
        gate = self._gate(cfg)
        texts = [inputs.text] if isinstance(inputs.text, str) else list(inputs.text)
        decisions = [gate.check(t, text_index=i) for i, t in enumerate(texts) if t.strip()]
        blocking = [d for d in decisions if d.action == "block"]
        reviewing = [d for d in decisions if d.action == "review"]
        decision = (blocking or reviewing or [None])[0]
        matches = [m for d in decisions for m in d.matches]
        scores: dict[str, float] = {}
        for d in decisions:
            for k, v in d.scores.items():
                scores[k] = max(v, scores.get(k, 0.0))

        if inputs.nsfw_detected is None:
            verdict = "not_available"
        else:
            flags = inputs.nsfw_detected if isinstance(inputs.nsfw_detected, list) else [inputs.nsfw_detected]
            verdict = "not_available" if all(f is None for f in flags) else \
                "flagged" if any(flags) else "clear"
        image_flags: list[bool] = []
        image_detail = ""
        if inputs.image is not None and cfg.image_classifier == "nudenet":
            images = inputs.image if isinstance(inputs.image, list) else [inputs.image]
            classifier = _nudenet(cfg.image_threshold)
            for i, ref in enumerate(images):
                v = classifier.check(ctx.artifact_path(ref))
                image_flags.append(v.flagged)
                if v.flagged and not image_detail:
                    image_detail = f"image[{i}]: {v.detail}"

        out_decision = {"action": "allow"} if decision is None else {
            k: v for k, v in decision.as_dict().items() if k != "scores"}
        if decision is None and verdict == "flagged" and cfg.block_on_safety_checker:
            out_decision = {"action": "block", "category": "sexual", "layer": "image", "rule": "safety_checker",
                            "detail": "the image safety checker flagged the image as not safe for work"}
        elif decision is None and image_detail:
            out_decision = {"action": "block", "category": "sexual", "layer": "image", "rule": "nudenet",
                            "detail": image_detail}
        out = ModerateOutputs(allowed=out_decision["action"] == "allow", review=out_decision["action"] == "review",
                              decision=DecisionOut(**out_decision), matches=[MatchOut(**m.as_dict()) for m in matches],
                              scores=scores, safety_checker=verdict, image_flags=image_flags, text=inputs.text)
        d = out.decision
        if d.action == "block" and cfg.action == "block":
            where = inputs.field + (f"[{d.text_index}]" if len(texts) > 1 else "")
            if d.layer == "image":
                message = f"image check '{d.rule}' blocked it: {d.detail}"
            else:
                message = f"{where} blocked by the {d.layer} layer, rule '{d.rule}' in category '{d.category}'" + \
                          (f" ({d.detail})" if d.detail else "")
            raise Blocked(message, rule=d.rule, category=d.category)
        if d.action != "allow":
            ctx.logger.warning("moderate: %s by the %s layer (category %s, rule %s)%s", d.action, d.layer,
                               d.category, d.rule, "; action: report" if cfg.action == "report" else "")
        return out
