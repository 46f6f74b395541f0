"""A client for the OpenAI chat completions API shape that Ollama, vLLM, llama.cpp's llama-server and
hosted services speak: ``POST {base_url}/chat/completions``, ``GET {base_url}/models``.

Retries 429 and 5xx answers, honouring ``Retry-After``, through a ``wait`` callable that the caller makes
interruptible (a step's cancel event). Errors say what to do: a server that is down names the URL, a model
the server does not have is named together with the models it has.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests

from pixelmill.retry_after import retry_after_seconds

from .errors import BadRequest, ServerDown, TextGenerationError, UnknownModel
from .result import Completion, Usage

RETRY_STATUSES = (429, 500, 502, 503, 504)


def error_text(resp: requests.Response) -> tuple[str, str]:
    """-> (message, code) from an ``{"error": {...}}`` body (or a bare string error, or plain text)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300], ""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)[:300], str(err.get("code") or err.get("type") or "")
    if isinstance(err, str):
        return err[:300], ""
    return json.dumps(body)[:300], ""


class OpenAICompatible:
    """One server and model: settings and headers made once, so one client serves many calls. Each call may
    bring its own ``session`` (one caller at a time, see ``sessions``) and ``wait`` (the step's cancellable
    sleep); the client's own are used otherwise."""

    __slots__ = ("base_url", "model", "timeout_s", "max_retries", "max_retry_wait_s", "wait", "session", "headers",
                 "url")

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout_s: float = 120.0,
                 max_retries: int = 4, max_retry_wait_s: float = 120.0,
                 wait: Callable[[float], None] | None = None, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self.wait = wait or time.sleep
        self.session = session
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    # ------------------------------------------------------------ models

    def list_models(self, session: requests.Session | None = None) -> list[str] | None:
        """The ids ``GET /models`` lists, or None when that cannot be read."""
        try:
            resp = (session or self._session()).get(f"{self.base_url}/models", headers=self.headers,
                                                    timeout=min(10, self.timeout_s))
            if resp.status_code != 200:
                return None
            return sorted(str(m.get("id")) for m in resp.json().get("data", []) if isinstance(m, dict))
        except (requests.RequestException, ValueError, AttributeError):
            return None

    def _session(self) -> requests.Session:
        if self.session is None:
            self.session = requests.Session()
        return self.session

    # ------------------------------------------------------------ chat

    def chat(self, messages: list[dict], *, temperature: float | None = None, max_tokens: int | None = None,
             seed: int | None = None, stop: list[str] | None = None, response_format: dict | None = None,
             stream: bool = False, on_delta: Callable[[str, int], None] | None = None,
             session: requests.Session | None = None, wait: Callable[[float], None] | None = None) -> Completion:
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if temperature is not None:
            payload["temperature"] = temperature
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if seed is not None:
            payload["seed"] = seed
        if stop:
            payload["stop"] = stop
        if response_format is not None:
            payload["response_format"] = response_format
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        session = session or self._session()
        body = json.dumps(payload)
        waited = 0.0
        for attempt in range(self.max_retries + 1):  # the first try, then retries of 429 and 5xx
            try:
                if stream:
                    resp = session.post(self.url, data=body, headers=self.headers, timeout=self.timeout_s,
                                        stream=True)
                else:  # requests' default: less merging of settings
                    resp = session.post(self.url, data=body, headers=self.headers, timeout=self.timeout_s)
            except requests.ConnectionError as exc:
                raise ServerDown(f"could not connect to {self.base_url}: is the server running at "
                                 f"{self.base_url}? ({_first_line(exc)})") from None
            except requests.Timeout:
                raise ServerDown(f"{self.base_url} did not answer within {self.timeout_s:g} s") from None
            if resp.status_code == 200:
                break
            if resp.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                self._raise_for(resp, session)
            delay = retry_after_seconds(resp.headers.get("Retry-After"))
            delay = min(30.0, 0.5 * 2**attempt) if delay is None else delay
            if waited + delay > self.max_retry_wait_s:
                msg, _ = error_text(resp)
                raise TextGenerationError(
                    f"{self.base_url} answered {resp.status_code} ({msg}) and asks to wait {delay:g} s more, "
                    f"past the {self.max_retry_wait_s:g} s this step may wait (max_retry_wait_s)")
            resp.close()
            (wait or self.wait)(delay)
            waited += delay
        if not stream:
            return self._read(resp)  # read in full: the connection is back in the pool for the next call
        try:
            return self._read_stream(resp, on_delta)
        finally:
            resp.close()

    def _raise_for(self, resp: requests.Response, session: requests.Session) -> None:
        msg, code = error_text(resp)
        status = resp.status_code
        model_missing = code == "model_not_found" or (status == 404 and "model" in msg.lower())
        if status == 404 and not model_missing:
            models = self.list_models(session)
            if models is not None and self.model not in models:
                model_missing = True
            elif models is None:
                raise BadRequest(f"{self.base_url}/chat/completions was not found (404: {msg}): check base_url, "
                                 "which usually ends in /v1 (e.g. http://localhost:11434/v1)")
        if model_missing:
            models = self.list_models(session)
            have = (f"; it has: {', '.join(models)}" if models else "; it lists no models") if models is not None else ""
            raise UnknownModel(f"the server at {self.base_url} has no model '{self.model}' ({msg}){have}")
        if status in (401, 403):
            raise BadRequest(f"{self.base_url} refused the API key ({status}: {msg}): check the secret named "
                             "in api_key_secret")
        if status in RETRY_STATUSES:
            raise TextGenerationError(f"{self.base_url} answered {status} after {self.max_retries} retries: {msg}")
        err = BadRequest(f"{self.base_url} rejected the request ({status}: {msg})")
        err.status, err.body = status, msg
        raise err

    def _read(self, resp: requests.Response) -> Completion:
        try:
            body = resp.json()
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise TextGenerationError(f"{self.base_url} sent an answer that is not a chat completion: "
                                      f"{resp.text[:200]!r}") from None
        usage = body.get("usage")
        if isinstance(usage, dict):  # what _usage does, without the call
            p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            usage = Usage(p, c, int(usage.get("total_tokens") or p + c))
        else:
            usage = Usage()
        return Completion(text, usage, choice.get("finish_reason"), str(body.get("model") or self.model))

    def _read_stream(self, resp: requests.Response, on_delta) -> Completion:
        parts: list[str] = []
        usage: Usage | None = None
        finish = None
        model = self.model
        chunks = 0
        for raw in resp.iter_lines(decode_unicode=False):
            line = raw.decode("utf-8", "replace").strip() if raw else ""
            if not line.startswith("data:"):
                continue  # blank separators, comments (': ping'), event/id fields
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise TextGenerationError(f"{self.base_url} streamed a line that is not JSON: {data[:200]!r}") from None
            if isinstance(chunk.get("error"), (dict, str)):
                err = chunk["error"]
                raise TextGenerationError(f"{self.base_url} failed while streaming: "
                                          f"{err.get('message') if isinstance(err, dict) else err}")
            model = chunk.get("model") or model
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    parts.append(delta)
                    chunks += 1
                    if on_delta is not None:
                        on_delta(delta, chunks)
                finish = choice.get("finish_reason") or finish
        if usage is None:  # the server did not report usage: count streamed chunks (about one token each)
            usage = Usage(0, chunks, chunks)
        return Completion(text="".join(parts), usage=usage, finish_reason=finish, model=model)


def _usage(data) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    p, c = int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0)
    return Usage(p, c, int(data.get("total_tokens") or p + c))


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text.splitlines()[0][:160] if text else type(exc).__name__
