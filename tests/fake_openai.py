"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol, scripted per test.

Usage in a test module::

    from tests.fake_openai import fake_openai  # noqa: F401  (pytest fixture)

    def test_x(fake_openai):
        fake_openai.script = [Reply.good(findings), Reply.status(429, retry_after="1")]
        ...  # base URL: fake_openai.base_url

Each request takes the next scripted ``Reply`` (the last one repeats when the script runs
out); ``fake_openai.requests`` records every request (headers and JSON body).
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
    def content(cls, content: str, delay: float = 0.0, tokens: tuple[int, int] = (100, 20)) -> "Reply":
        """A 200 chat completion whose assistant message is ``content``."""
        body = {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "fake-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
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


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: list[Reply] = [Reply.good([])]
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": payload})
                    reply = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
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

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai():
    server = FakeOpenAI()
    try:
        yield server
    finally:
        server.close()
