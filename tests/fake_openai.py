"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol, scripted per test.

Usage in a test module::

    from tests.fake_openai import fake_openai  # noqa: F401  (pytest fixture)

    def test_x(fake_openai):
        fake_openai.script = [Reply.good(findings), Reply.status(429, retry_after="1")]
        ...  # base URL: fake_openai.base_url

Each request takes the next scripted ``Reply`` (the last one repeats when the script runs
out); ``fake_openai.requests`` records every request (headers and JSON body).

Checks a real server makes before it reads the script (a request they refuse takes no reply):

- ``fake_openai.response_formats = LLAMA_CPP_RESPONSE_FORMATS``: only these ``response_format``
  types are accepted; any other is answered as llama-cpp-python 0.3's server does, HTTP 500 with
  its validation message.
- ``fake_openai.wants_max_completion_tokens = True``: a request with ``max_tokens`` is answered as
  OpenAI answers it for its reasoning models, HTTP 400 naming ``max_completion_tokens``.

``http_recorder`` is a second server that answers every request (any method, ``CONNECT``
included) with 502 and records it: set it as a proxy or a redirect target to prove that
nothing reaches it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def content(
        cls, content: str, delay: float = 0.0, tokens: tuple[int, int] = (100, 20), finish_reason: str = "stop"
    ) -> "Reply":
        """A 200 chat completion whose assistant message is ``content``."""
        body = {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "fake-model",
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "total_tokens": sum(tokens)},
        }  # fmt: skip
        return cls(200, json.dumps(body), {"Content-Type": "application/json"}, delay)

    @classmethod
    def good(cls, findings: list[dict[str, Any]], delay: float = 0.0) -> "Reply":
        return cls.content(json.dumps({"findings": findings}), delay)

    @classmethod
    def error(cls, status: int, retry_after: str | None = None, delay: float = 0.0) -> "Reply":
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        body = json.dumps({"error": {"message": f"scripted {status}", "type": "test", "code": status}})
        return cls(status, body, headers, delay)


LLAMA_CPP_RESPONSE_FORMATS = frozenset({"text", "json_object"})


def llama_cpp_validation_error(response_format: dict[str, Any]) -> Reply:
    """llama-cpp-python 0.3.36's answer to a ``response_format`` type it does not know, as captured
    from the real server: FastAPI's validation error, caught by its route handler, sent as a 500."""
    detail = {"type": "literal_error", "loc": ("body", "response_format", "type"),
              "msg": "Input should be 'text' or 'json_object'", "input": response_format.get("type"),
              "ctx": {"expected": "'text' or 'json_object'"}}  # fmt: skip
    where = '  File "llama_cpp/server/app.py", line 376, in create_chat_completion\n    POST /v1/chat/completions'
    body = {"error": {"message": f"1 validation error:\n  {detail}\n\n{where}", "type": "internal_server_error",
                      "param": None, "code": None}}  # fmt: skip
    return Reply(500, json.dumps(body), {"Content-Type": "application/json"})


MAX_COMPLETION_TOKENS_ERROR = Reply(400, json.dumps({"error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
               "instead.", "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter",
}}), {"Content-Type": "application/json"})  # fmt: skip


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _LocalServer:
    """A threading HTTP server on 127.0.0.1 (a free port) running ``handler`` until ``close``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeOpenAI(_LocalServer):
    def __init__(self) -> None:
        self.script: list[Reply] = [Reply.good([])]
        self.requests: list[dict[str, Any]] = []
        self.response_formats: frozenset[str] | None = None  # None: any
        self.wants_max_completion_tokens = False
        self._lock = threading.Lock()
        fake = self

        class Handler(_QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": payload})
                    reply = fake.refusal(payload) or (fake.script.pop(0) if len(fake.script) > 1 else fake.script[0])
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    data = reply.body.encode("utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        super().__init__(Handler)
        self.base_url = f"{self.url}/v1"

    def refusal(self, payload: dict[str, Any]) -> Reply | None:
        """The error a real server of the configured kind answers ``payload`` with, if any."""
        response_format = payload.get("response_format") or {"type": "text"}
        if self.response_formats is not None and response_format.get("type") not in self.response_formats:
            return llama_cpp_validation_error(response_format)
        if self.wants_max_completion_tokens and "max_tokens" in payload:
            return MAX_COMPLETION_TOKENS_ERROR
        return None


class Recorder(_LocalServer):
    """Answers every request with 502 and records ``(method, target, headers, body)``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        recorder = self

        class Handler(_QuietHandler):
            def do_any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((self.command, self.path, dict(self.headers), body))
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_CONNECT = do_any  # noqa: N815

        super().__init__(Handler)


def _serving(server: _LocalServer):
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fake_openai():
    yield from _serving(FakeOpenAI())


@pytest.fixture
def http_recorder():
    yield from _serving(Recorder())
