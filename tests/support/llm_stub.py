"""A tiny OpenAI-compatible chat server on 127.0.0.1: the LLM collaborator for fault and fuzz tests.

It speaks just enough of the API that adaptrank's ``openai`` backend uses (``GET /v1/models``,
``POST /v1/chat/completions``). In ``ok`` mode a reply fits the request: an instance of the
``response_format`` JSON schema when one is sent (strings are words taken from the prompt, so
generated queries are grounded in their passage), else a short echo. Other modes make it a bad
collaborator on demand: ``hang`` (never answers until released), ``garbage`` (text that is no
JSON), ``error`` (HTTP 500), ``slow`` (answers after ``delay`` seconds).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]{2,}")


def _words(messages: list[dict[str, Any]]) -> list[str]:
    """Words of the passage the prompt is about (so a generated query is grounded in it)."""
    text = " ".join(str(m.get("content", "")) for m in messages[-1:])
    if "Passage:" in text:
        text = text.split("Passage:", 1)[1].split("\n\n", 1)[0]
    return WORD.findall(text)[:40] or ["document"]


def instance(schema: dict[str, Any], words: list[str], n: int = 0) -> Any:
    """A value that satisfies the (simple) JSON schemas adaptrank sends."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return instance(schema[key][0], words, n)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: instance(v, words, n + i) for i, (k, v) in enumerate(props.items())}
    if kind == "array":
        count = max(schema.get("minItems", 1), min(schema.get("maxItems", 2), 2))
        return [instance(schema.get("items", {"type": "string"}), words, n + i) for i in range(count)]
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "number":
        return float(schema.get("minimum", 0.5))
    if kind == "boolean":
        return True
    return question(words, n)


def question(words: list[str], n: int = 0) -> str:
    """A question made of the passage's most specific words (those with digits first), joined by
    other words: grounded in the passage without copying a run of it."""
    specific = [w for w in words if any(c.isdigit() for c in w)]
    picked = list(dict.fromkeys(specific[n % 2 :] + specific + words))[:3]
    return "what about " + " and ".join(picked) + "?"


class LLMStub:
    """``with LLMStub() as stub: ... stub.url`` (the ``/v1`` base URL); ``stub.mode = "hang"``."""

    def __init__(self, mode: str = "ok", delay: float = 0.0) -> None:
        self.mode = mode
        self.delay = delay
        self.requests = 0
        self.release = threading.Event()  # ends every hanging request
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode()
                    )
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                stub.requests += 1
                mode = stub.mode
                if mode == "hang":
                    stub.release.wait(600)
                    mode = "error"
                if mode == "slow":
                    time.sleep(stub.delay)
                if mode == "error":
                    self._send(500, b'{"error": {"message": "stub: internal error"}}')
                    return
                if mode == "garbage":
                    content = "%%% not json, not an answer %%%"
                else:
                    fmt = request.get("response_format") or {}
                    schema = (fmt.get("json_schema") or {}).get("schema")
                    words = _words(request.get("messages", []))
                    content = json.dumps(instance(schema, words)) if schema else question(words)
                body = {
                    "id": f"stub-{stub.requests}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model", "stub"),
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                }
                self._send(200, json.dumps(body).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, name="llm-stub", daemon=True)

    def __enter__(self) -> LLMStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
