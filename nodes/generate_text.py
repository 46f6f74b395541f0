"""The ``generate_text`` node: chat completions from any OpenAI-compatible server or a local transformers LM."""

from __future__ import annotations

import functools
import re
import time
import warnings
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pixelmill.models.loaders import resolve_model
from pixelmill.models.manager import manager_for
from pixelmill.node import TEMPLATE_FIELD, Cancelled, Model, Node, StepCheck
from pixelmill.text.errors import BadRequest
from pixelmill.text.local import chat_local, load_causal_lm
from pixelmill.text.openai_compat import OpenAICompatible
from pixelmill.text.sessions import SessionPool
from pixelmill.text.structured import check_schema, schema_instruction
from pixelmill.text.structured_loop import complete_with_schema
from pixelmill.text.template import render, syntax_error

_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SESSIONS = "pixelmill.text.sessions"  # the service key of the process's SessionPool


class GenerateTextConfig(Model):
    provider: Literal["openai_compatible", "transformers"] = Field(
        "openai_compatible", description="a chat server speaking the OpenAI API, or a local transformers model")
    model: str = Field(description="openai_compatible: the server's model name (e.g. llama3.2); "
                                   "transformers: a model id from the local cache or a folder")
    base_url: str | None = Field(None, description="openai_compatible: e.g. http://localhost:11434/v1 (Ollama), "
                                                   "http://localhost:8000/v1 (vLLM), http://localhost:8080/v1 (llama-server)")
    api_key_secret: str | None = Field(None, description="name of the environment variable holding the API key "
                                                         "(local servers usually need none)")
    stream: bool = Field(False, description="stream the answer (progress events as tokens arrive)")
    structured: Literal["auto", "response_format", "prompt"] = Field(
        "auto", description="with json_schema: 'response_format' asks the server to enforce the schema, 'prompt' "
                            "puts it in the system message; 'auto' tries the first and falls back to the second")
    max_repairs: int = Field(2, ge=0, le=10, description="with json_schema: how often an invalid answer is sent "
                                                         "back with the validation error")
    timeout_s: float = Field(120, gt=0, le=3600, description="openai_compatible: seconds to wait for one answer")
    max_retries: int = Field(4, ge=0, le=20, description="openai_compatible: retries of 429 and 5xx answers")
    max_retry_wait_s: float = Field(120, ge=0, le=3600, description="most seconds spent waiting on Retry-After")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="transformers: where the model runs")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="transformers: precision")

    @field_validator("api_key_secret")
    @classmethod
    def _secret_name(cls, value):
        if value is not None and not _SECRET_NAME.match(value):
            raise ValueError(f"'{value[:4]}…' is not a secret name: give the NAME of an environment variable "
                             "(e.g. OPENAI_API_KEY), never the key itself")
        return value

    @model_validator(mode="after")
    def _provider_fields(self):
        if self.provider == "openai_compatible":
            if not self.base_url or not re.match(r"^https?://", self.base_url):
                raise ValueError("provider 'openai_compatible' needs base_url, an http(s) URL such as "
                                 "http://localhost:11434/v1")
        elif self.model.strip() == "embedded":
            raise ValueError("there is no embedded language model: give provider 'transformers' a model id "
                             "from the local cache or a folder")
        return self


class GenerateTextInputs(Model):
    prompt: str = Field(description="the user message; a jinja2 template over 'vars' when vars are given",
                        json_schema_extra={TEMPLATE_FIELD: True})
    system: str | None = Field(None, description="the system message (a template like prompt)",
                               json_schema_extra={TEMPLATE_FIELD: True})
    vars: dict[str, Any] = Field(default_factory=dict, description="template variables (put step outputs here)")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy; absent = the server's default")
    max_tokens: int = Field(512, ge=1, le=131072, description="most tokens in the answer")
    seed: int | None = Field(None, ge=0, lt=2**63, description="sampling seed (servers that support it)")
    stop: list[str] = Field(default_factory=list, max_length=8, description="stop sequences")
    json_schema: dict[str, Any] | None = Field(None, description="a JSON Schema the answer must meet; "
                                                                 "the parsed value is the 'json' output")

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value):
        if value is not None:
            check_schema(value)
        return value


class TokenUsage(Model):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


with warnings.catch_warnings():
    # the output is called 'json' on purpose (steps.x.outputs.json); pydantic warns that it shadows the
    # deprecated BaseModel.json() method, which nothing here uses
    warnings.filterwarnings("ignore", message='Field name "json"', category=UserWarning)

    class GenerateTextOutputs(Model):
        text: str
        json: Any = Field(None, description="the parsed answer when json_schema was given")
        usage: TokenUsage
        model: str
        finish_reason: str | None = None
        attempts: int = Field(1, description="calls made (repairs of a structured answer included)")


_validate_outputs = GenerateTextOutputs.__pydantic_validator__.validate_python


class GenerateTextNode(Node):
    """Write text with a language model: any OpenAI-compatible chat server (Ollama, vLLM, llama.cpp's
    llama-server, hosted APIs) or a local transformers causal LM with its chat template (offline unless
    PIXELMILL_ALLOW_DOWNLOADS=1, shared through the model manager). System and user messages are jinja2
    templates over ``vars``; ``json_schema`` makes the answer structured (server-enforced where supported,
    otherwise validated and repaired). Retries 429/5xx honouring Retry-After; streams with progress events."""

    type = "generate_text"
    version = "1"
    Config = GenerateTextConfig
    Inputs = GenerateTextInputs
    Outputs = GenerateTextOutputs
    deterministic = False

    def __init__(self, config: GenerateTextConfig | None = None):
        super().__init__(config)
        self._client: tuple[str | None, OpenAICompatible] | None = None  # (api key, client)
        self._pool: tuple[Any, SessionPool] | None = None  # (ctx.services, its session pool)
        self._asking = f"asking {self.config.model} at {self.config.base_url}"

    @classmethod
    def check_step(cls, check: StepCheck) -> None:
        templated = bool(check.with_.get("vars"))
        for key in ("prompt", "system"):
            text = check.with_.get(key)
            if not isinstance(text, str) or not templated:
                continue
            if check.is_expression(text):
                check.error(("with", key), f"'{key}' is a template over vars and also holds a ${{{{ }}}} "
                            "expression: a step's output would be rendered as a template",
                            "put the expression under vars and write {{ name }} in the text")
            elif (err := syntax_error(text)) is not None:
                check.error(("with", key), f"{key} template: {err}")

    def run(self, inputs: GenerateTextInputs, ctx) -> GenerateTextOutputs:
        messages = self._messages(inputs)
        if self.config.provider == "transformers":
            done = self._run_local(messages, inputs, ctx)
        else:
            done = self._run_remote(messages, inputs, ctx)
        usage = done.usage
        ctx.logger.info("generate_text: %d completion tokens from %s", usage.completion_tokens, done.model)
        return _validate_outputs({  # validated like GenerateTextOutputs(...), one call fewer
            "text": done.text, "json": done.json, "usage": {"prompt_tokens": usage.prompt_tokens,
                                                            "completion_tokens": usage.completion_tokens,
                                                            "total_tokens": usage.total_tokens},
            "model": done.model or self.config.model, "finish_reason": done.finish_reason, "attempts": done.attempts})

    def _messages(self, inputs: GenerateTextInputs) -> list[dict]:
        variables = inputs.vars
        system = inputs.system or ""
        if system and variables:
            system = render(system, variables, what="system")
        if inputs.json_schema is not None and self._schema_in_prompt():
            system = (system + "\n\n" if system else "") + schema_instruction(inputs.json_schema)
        prompt = render(inputs.prompt, variables, what="prompt") if variables else inputs.prompt
        if system:
            return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        return [{"role": "user", "content": prompt}]

    def _schema_in_prompt(self) -> bool:
        return self.config.provider == "transformers" or self.config.structured == "prompt"

    # ------------------------------------------------------------ providers

    def _new_client(self, api_key: str | None) -> OpenAICompatible:
        """The client of this node's server and model, made once (again when the API key changes)."""
        cfg = self.config
        client = OpenAICompatible(cfg.base_url, cfg.model, api_key, timeout_s=cfg.timeout_s,
                                  max_retries=cfg.max_retries, max_retry_wait_s=cfg.max_retry_wait_s)
        self._client = (api_key, client)  # one assignment: threads sharing this node see either pair
        return client

    def _run_remote(self, messages, inputs, ctx):
        cfg = self.config
        api_key = ctx.secrets.get(cfg.api_key_secret) if cfg.api_key_secret else None
        cached = self._client
        client = cached[1] if cached is not None and cached[0] == api_key else self._new_client(api_key)
        cached = self._pool  # the process's session pool, looked up once per set of services
        if cached is not None and cached[0] is ctx.services:
            pool = cached[1]
        else:
            pool = ctx.service(SESSIONS, SessionPool)
            self._pool = (ctx.services, pool)
        on_delta = _Throttle(ctx, inputs.max_tokens) if cfg.stream else None
        wait = functools.partial(_wait_to_retry, ctx)  # no closure: nothing here is a cell variable
        session = pool.acquire(cfg.base_url)  # this call's alone, with the last call's open connection
        try:
            ctx.progress(0, inputs.max_tokens, self._asking)
            if inputs.json_schema is None:
                return client.chat(messages, temperature=inputs.temperature, max_tokens=inputs.max_tokens,
                                   seed=inputs.seed, stop=inputs.stop or None, stream=cfg.stream, on_delta=on_delta,
                                   session=session, wait=wait)
            return self._remote_structured(client, messages, inputs, ctx, session, wait, on_delta)
        finally:
            pool.release(cfg.base_url, session)

    def _remote_structured(self, client, messages, inputs, ctx, session, wait, on_delta):
        cfg = self.config
        state = {"response_format": cfg.structured != "prompt"}

        def call(msgs):
            # a loop, not a recursive call: a closure naming itself is a reference cycle, left for the
            # garbage collector on every call
            while True:
                rf = None
                if state["response_format"]:
                    rf = {"type": "json_schema", "json_schema": {"name": "answer", "schema": inputs.json_schema,
                                                                 "strict": True}}
                try:
                    return client.chat(msgs, temperature=inputs.temperature, max_tokens=inputs.max_tokens,
                                       seed=inputs.seed, stop=inputs.stop or None, response_format=rf,
                                       stream=cfg.stream, on_delta=on_delta, session=session, wait=wait)
                except BadRequest as exc:
                    if rf is None or cfg.structured != "auto" or getattr(exc, "status", 0) not in (400, 422):
                        raise
                    ctx.logger.info("server rejected response_format (%s); putting the schema in the prompt", exc)
                    state["response_format"] = False
                    msgs = _with_schema_prompt(msgs, inputs.json_schema)

        return complete_with_schema(call, messages, inputs.json_schema, cfg.max_repairs)

    def _run_local(self, messages, inputs, ctx):
        cfg = self.config
        r = resolve_model(cfg.model, "llm", cfg.device, cfg.dtype)
        ctx.progress(0, inputs.max_tokens, f"loading {r.name}")
        with manager_for(ctx).use(("causal_lm", *r.key), lambda: load_causal_lm(r.name, r.source, r.device, r.dtype)) as lm:
            def call(msgs):
                done = chat_local(lm, msgs, temperature=inputs.temperature, max_tokens=inputs.max_tokens,
                                  seed=inputs.seed, stop=inputs.stop,
                                  on_token=lambda n: ctx.progress(n, inputs.max_tokens, "generating"))
                done.model = r.name
                return done

            if inputs.json_schema is None:
                return call(messages)
            return complete_with_schema(call, messages, inputs.json_schema, cfg.max_repairs)


def _wait_to_retry(ctx, seconds: float) -> None:
    ctx.progress(0, None, f"server busy: waiting {seconds:g} s (Retry-After)")
    if ctx.cancel_event.wait(seconds) or ctx.cancelled:
        raise Cancelled(f"step '{ctx.step_id}' was cancelled while waiting to retry")


class _Throttle:
    """Streaming progress: an event per 100 ms at most."""

    __slots__ = ("ctx", "total", "last")

    def __init__(self, ctx, total: int):
        self.ctx, self.total, self.last = ctx, total, 0.0

    def __call__(self, _text: str, n: int) -> None:
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self.ctx.progress(n, self.total, "generating")


def _with_schema_prompt(messages: list[dict], schema: dict) -> list[dict]:
    note = schema_instruction(schema)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + note}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]

