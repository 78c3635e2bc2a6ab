"""The OpenAI-compatible backend against a small OpenAI-style HTTP server on 127.0.0.1 (in this
test): concurrency limit, retries on 500 and garbage, structured-output request shapes, judge
probabilities from logprobs, fallbacks and clear errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adaptrank.core.llm import LLMError, get_llm
from adaptrank.core.llm.openai_api import OpenAICompatibleLLM
from adaptrank.core.settings import Settings

pytestmark = pytest.mark.timeout(60)


class FakeOpenAI:
    """Replies come from ``script`` (a function of the request body and the call number)."""

    def __init__(self, script):
        self.script = script
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": "served-model", "object": "model", "created": 0, "owned_by": "me"}],
                    },
                )

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    n = len(fake.requests)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(0.03)
                    status, reply = fake.script(body, n)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                if status != 200:
                    return self._send(status, {"error": {"message": reply, "type": "x", "code": status}})
                content, logprobs = reply if isinstance(reply, tuple) else (reply, None)
                choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                if logprobs is not None:
                    choice["logprobs"] = {"content": logprobs}
                self._send(
                    200,
                    {
                        "id": f"c{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [choice],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def make(script):
        s = FakeOpenAI(script)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _llm(url, **kw):
    return OpenAICompatibleLLM("m", base_url=url, backoff=0.01, max_backoff=0.05, **kw)


P = [[{"role": "user", "content": f"question {i}"}] for i in range(12)]


def test_concurrency_limit_and_order(fake):
    server = fake(lambda body, n: (200, "echo " + body["messages"][-1]["content"]))
    llm = _llm(server.url, concurrency=3)
    out = llm.generate(P, max_new_tokens=5)
    assert out == [f"echo question {i}" for i in range(12)]
    assert 1 < server.max_in_flight <= 3
    assert llm.stats.prompts == 12 and llm.stats.generated_tokens == 36
    assert all(r["max_tokens"] == 5 and "response_format" not in r for r in server.requests)


def test_json_schema_retries_garbage_and_500(fake):
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    replies = {1: (500, "overloaded"), 2: (200, "Sure! no json here"), 3: (200, '```json\n{"q": "ok",}\n```')}
    server = fake(lambda body, n: replies[n])
    llm = _llm(server.url, concurrency=1)
    assert llm.generate(P[:1], json_schema=schema) == ['{"q": "ok"}']  # repaired trailing comma
    assert llm.stats.retries == 2
    fmt = server.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == schema


def test_garbage_forever_is_an_error_or_a_counted_skip(fake):
    server = fake(lambda body, n: (200, "maybe"))
    llm = _llm(server.url, max_retries=2)
    with pytest.raises(LLMError, match=r"not one of \['yes', 'no'\]"):
        llm.generate(P[:1], choices=["yes", "no"])
    assert len(server.requests) == 3
    assert llm.generate(P[:1], choices=["yes", "no"], strict=False) == ["maybe"] and llm.stats.invalid == 2


def test_judge_probability_from_logprobs(fake):
    import math

    top = [
        {"token": "yes", "logprob": math.log(0.6), "bytes": None},
        {"token": "no", "logprob": math.log(0.3), "bytes": None},
        {"token": "Yes", "logprob": math.log(0.1), "bytes": None},
    ]
    tokens = [
        {"token": '{"', "logprob": 0.0, "bytes": None, "top_logprobs": []},
        {"token": "answer", "logprob": 0.0, "bytes": None, "top_logprobs": []},
        {"token": '":"', "logprob": 0.0, "bytes": None, "top_logprobs": []},
        {"token": "yes", "logprob": math.log(0.6), "bytes": None, "top_logprobs": top},
    ]
    server = fake(lambda body, n: (200, ('{"answer":"yes"}', tokens)))
    llm = _llm(server.url)
    [(label, p)] = llm.judge(P[:1], ["yes", "no"])
    assert label == "yes" and p == pytest.approx(0.7 / 1.0)
    body = server.requests[0]
    assert body["logprobs"] is True and body["response_format"]["json_schema"]["schema"]["properties"]["answer"][
        "enum"
    ] == ["yes", "no"]


def test_vllm_structured_outputs_never_guided_json(fake):
    server = fake(
        lambda body, n: (
            200,
            "yes" if "structured_outputs" in body and "choice" in body["structured_outputs"] else '{"q": "x"}',
        )
    )
    llm = _llm(server.url, structured="vllm")
    assert llm.generate(P[:1], choices=["yes", "no"]) == ["yes"]
    assert llm.generate(P[:1], json_schema={"type": "object"}) == ['{"q": "x"}']
    assert server.requests[0]["structured_outputs"] == {"choice": ["yes", "no"]}
    assert server.requests[1]["structured_outputs"] == {"json": {"type": "object"}}
    assert not any(k.startswith("guided_") for r in server.requests for k in r)
    assert not any("response_format" in r for r in server.requests)


def test_server_without_structured_output_falls_back(fake):
    def script(body, n):
        if "response_format" in body:
            return 400, "response_format is not supported"
        return 200, '{"q": "fine"}'

    server = fake(script)
    llm = _llm(server.url)
    assert llm.generate(P[:2], json_schema={"type": "object"}) == ['{"q": "fine"}'] * 2
    assert llm.structured == "none"


def test_client_errors_fail_at_once_and_a_down_endpoint_is_clear(fake):
    server = fake(lambda body, n: (401, "bad key"))
    llm = _llm(server.url)
    with pytest.raises(LLMError, match="HTTP 401"):
        llm.generate(P[:1])
    assert len(server.requests) == 1
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = _llm(f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(LLMError, match="failed after 3 attempts: APIConnectionError"):
        down.generate(P[:1])
    assert down.stats.retries == 2


def test_factory_and_model_discovery(fake):
    server = fake(lambda body, n: (200, body["model"]))
    settings = Settings(llm_backend="openai", openai_base_url=server.url, openai_concurrency=2)
    llm = get_llm(settings)
    assert llm is get_llm(settings)  # built once per process
    assert llm.generate(P[:1]) == ["served-model"] and llm.name.startswith("openai:served-model@")
    assert llm.concurrency == 2
