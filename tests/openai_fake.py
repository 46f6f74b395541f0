"""A local OpenAI-compatible chat server on loopback, written from the documented API, recording requests.

``POST /v1/chat/completions`` (JSON answer, or Server-Sent Events of ``chat.completion.chunk`` objects ending
with ``data: [DONE]`` when ``stream`` is true; a final usage chunk when ``stream_options.include_usage``),
``GET /v1/models``; errors as ``{"error": {"message", "type", "param", "code"}}`` with the documented status
codes (404 ``model_not_found``, 429 with ``Retry-After``, 400 for an unsupported ``response_format``).
Replies come from a queue the test fills; an empty queue echoes the last user message.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _words(text: str) -> int:
    return len(str(text).split())


class FakeOpenAI:
    def __init__(self, models=("tiny-chat",), supports_response_format=True):
        self.models = list(models)
        self.supports_response_format = supports_response_format
        self.replies: deque = deque()
        self.requests: list[dict] = []
        self.times: list[float] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def reply(self, content: str | None = None, *, status: int = 200, headers: dict | None = None,
              error: dict | None = None) -> FakeOpenAI:
        self.replies.append({"content": content, "status": status, "headers": headers or {}, "error": error})
        return self

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"] == "/v1/chat/completions"]

    # ------------------------------------------------------------ HTTP

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # headers and body leave in one write, as real servers send them

            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status, message, type_="invalid_request_error", code=None, param=None, headers=None):
                self._json(status, {"error": {"message": message, "type": type_, "param": param, "code": code}},
                           headers)

            def do_GET(self):
                fake.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers), "body": None})
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 1700000000, "owned_by": "local"} for m in fake.models]})
                else:
                    self._error(404, f"Unknown request URL: GET {self.path}", code="unknown_url")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                fake.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                      "body": body})
                fake.times.append(time.monotonic())
                if self.path != "/v1/chat/completions":
                    return self._error(404, f"Unknown request URL: POST {self.path}", code="unknown_url")
                if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                    return self._error(400, "'messages' is a required property", param="messages")
                if body.get("model") not in fake.models:
                    return self._error(404, f"The model `{body.get('model')}` does not exist or you do not have "
                                            "access to it.", code="model_not_found")
                if "response_format" in body and not fake.supports_response_format:
                    return self._error(400, "response_format is not supported by this server",
                                       param="response_format")
                planned = fake.replies.popleft() if fake.replies else {"content": None, "status": 200,
                                                                       "headers": {}, "error": None}
                if planned["status"] != 200:
                    err = planned["error"] or {"message": "Rate limit reached", "type": "rate_limit_error"}
                    return self._error(planned["status"], err["message"], err.get("type", "server_error"),
                                       err.get("code"), headers=planned["headers"])
                content = planned["content"]
                if content is None:
                    content = "echo: " + str(body["messages"][-1].get("content"))
                prompt_tokens = sum(_words(m.get("content", "")) for m in body["messages"])
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": _words(content),
                         "total_tokens": prompt_tokens + _words(content)}
                if body.get("stream"):
                    return self._stream(body, content, usage)
                self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                                 "model": body["model"], "system_fingerprint": "fp_fake",
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                              "logprobs": None, "finish_reason": "stop"}],
                                 "usage": usage})

            def _stream(self, body, content, usage):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": body["model"], "system_fingerprint": "fp_fake"}

                def send(obj):
                    self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
                    self.wfile.flush()

                send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}]})
                self.wfile.write(b": keep-alive comment\n\n")
                pieces = content.split(" ")
                for i, piece in enumerate(pieces):
                    send({**base, "choices": [{"index": 0, "delta": {"content": piece if i == 0 else " " + piece},
                                               "finish_reason": None}]})
                send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    send({**base, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler
