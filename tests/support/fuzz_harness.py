"""Fuzzing every MCP tool and HTTP route of one adaptrank server (issue 9).

Shared by the quick tier (``tests/unit/server/test_fuzz.py``, part of every test run) and the long
campaign (``bench/fuzz.py``). A :class:`Target` is one real server: the FastMCP app with an
in-memory MCP client (the official protocol, no subprocess) and the same app on uvicorn at
127.0.0.1 for the HTTP routes (``/v1/rerank``, ``/v2/rerank``, ``/rerank``, ``/healthz``, raw
``/mcp``). Cases come from hypothesis strategies derived from each tool's own JSON schema (so a new
tool is fuzzed without a line here), mixed with hostile values: wrong types, empty, huge and
boundary values, NUL, lone surrogates, RTL marks, combining floods, deep JSON, and path tricks in
every name and path (``..``, absolute paths, file and folder symlinks leading out of the allowed
root, NUL, ``/dev/zero``...).

Each case ends as one :class:`Outcome`: ``ok``, ``clean`` (a 4xx or tool error that names the
field), ``unsent`` (the official client itself refused to encode it, e.g. 300 levels deep: it never
reached the server), ``unclear`` (an error that names no field, or a refusal that dropped the keep-alive
connection), ``5xx`` (an HTTP 5xx or a masked internal tool error), ``crash`` (the transport broke or
the server stopped answering) or ``hang`` (no answer within the timeout). Beside that,
:class:`FileWatch` (a ``sys.addaudithook``) records any file a case opens, lists or writes outside
``ADAPTRANK_HOME`` that it must not, and the secret planted outside the root must never appear in
a response.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import threading
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st

SECRET = "adaptrank-fuzz-secret-8c1f"
MASKED = re.compile(r"^Error calling tool '[^']*'$")
#: ``field: message`` where field is a name, dotted path or indexed path (``documents[3].text``)
FIELD_ERROR = re.compile(r"^((?:[A-Za-z_][\w-]*|\[[^\]]*\])(?:\[[^\]]*\]|\.[^\s:]+)*)(?: \(a key\))?: \S")
RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")


# -- the layout: an allowed root, a forbidden place next to it, and traps between them ------------
@dataclass
class Layout:
    home: Path
    root: Path  # the one allowed root (besides home)
    outside: Path  # must never be read or written; holds SECRET
    tiny_bi: str  # the default model and embedding model (tiny, built from a config)

    def paths(self) -> list[str]:
        r, o = self.root, self.outside
        return [
            str(r / "notes"),
            str(r / "beir"),
            str(r / "docs.jsonl"),
            str(r / "model"),
            str(r),
            str(r / "trap"),
            str(r / "trap" / "passwd.txt"),
            str(r / "trapdir"),
            str(r / "trap" / "dirlink"),
            str(r / "notes") + "/",
            str(r / "notes") + "//",
            str(r / "notes") + "/.",
            str(r / "notes" / ".." / "notes"),
            str(r / "notes" / ".." / ".." / o.name / "secret.txt"),
            str(r / ".." / o.name),
            str(o),
            str(o / "secret.txt"),
            str(o / "model"),
            str(o / "corpus.jsonl"),
            str(o / "notes"),
            "../" * 12 + "etc/passwd",
            "/etc/passwd",
            "/etc",
            "/",
            ".",
            "..",
            "~",
            "~/.ssh",
            "~root",
            "/proc/self/environ",
            "/dev/zero",
            "/dev/urandom",
            str(r / "notes") + "\0",
            "notes\0/../../etc",
            f"file://{o}/secret.txt",
            "\\\\server\\share\\x",
            "C:\\Windows\\win.ini",
            "%2e%2e%2fetc%2fpasswd",
            "tests",
            "core/engine",
            "a" * 5000,
            "\u202e" + "txt.etc",
            str(self.home),
            str(self.home / "jobs.sqlite"),
            str(self.home / "chroma"),
            "no-such-folder",
            str(r / "missing"),
        ]

    def models(self) -> list[str]:
        r, o = self.root, self.outside
        return [
            "zero-shot",
            f"bi-encoder:{self.tiny_bi}",
            f"bi-encoder:{self.tiny_bi}/",
            f"bi-encoder:{self.tiny_bi}/.",
            "rerank-english-v3.0",
            "rerank-v3.5",
            str(r / "model"),
            f"cross-encoder:{r}/model/",
            f"bi-encoder:{r}/model//",
            str(r / "notes"),
            str(o / "model"),
            f"cross-encoder:{o}/model",
            "org/name",
            "cross-encoder/ms-marco-MiniLM-L6-v2",
            "bi-encoder:/etc",
            "cross-encoder:",
            "bi-encoder:",
            "@",
            "name@",
            "nope@v1",
            "..",
            "/dev/zero",
            "model",
            "tests/unit",
            "default",
            "med",
            "med@v1",
        ]


def make_layout(base: Path, tiny_ce: str, tiny_bi: str) -> Layout:
    home, root, outside = base / "home", base / "root", base / "outside"
    for d in (home, root / "notes", root / "beir", root / "trap", outside / "notes"):
        d.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text(f"{SECRET} root:x:0:0")
    (outside / "notes" / "s.md").write_text(f"# Secret\n\n{SECRET}")
    (outside / "corpus.jsonl").write_text(json.dumps({"_id": "s", "title": "", "text": SECRET}) + "\n")
    shutil.copytree(tiny_ce, outside / "model", dirs_exist_ok=True)
    shutil.copytree(tiny_ce, root / "model", dirs_exist_ok=True)
    topics = ["gout and uric acid", "asthma and airways", "anemia and iron", "migraine and light"]
    for i, topic in enumerate(topics):
        (root / "notes" / f"n{i}.md").write_text(f"# Note {i}\n\nThis note is about {topic}. " * 3)
    with open(root / "docs.jsonl", "w") as f:
        for i, topic in enumerate(topics):
            f.write(json.dumps({"id": f"d{i}", "title": topic, "text": f"A passage about {topic}."}) + "\n")
    with open(root / "beir" / "corpus.jsonl", "w") as f:
        for i, topic in enumerate(topics):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": f"A passage about {topic}."}) + "\n")
    with open(root / "beir" / "queries.jsonl", "w") as f:
        for i, topic in enumerate(topics):
            f.write(json.dumps({"_id": f"q{i}", "text": f"what about {topic.split()[0]}?"}) + "\n")
    (root / "beir" / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4))
    )
    links = {
        root / "trap" / "passwd.txt": outside / "secret.txt",
        root / "trap" / "dirlink": outside,
        root / "trapdir": outside,
    }
    for link, target in links.items():
        if not link.is_symlink():
            link.symlink_to(target)
    return Layout(home=home, root=root, outside=outside, tiny_bi=tiny_bi)


def make_settings(layout: Layout, llm_url: str):
    """Scaled-down limits, so boundary and over-limit cases are cheap to send."""
    from adaptrank.core.settings import Settings

    return Settings(
        home=layout.home,
        allowed_roots=[layout.root],
        default_model=f"bi-encoder:{layout.tiny_bi}",
        embedding_model=layout.tiny_bi,
        llm_backend="openai",
        openai_base_url=llm_url,
        host="127.0.0.1",
        port=0,
        max_documents=40,
        max_query_chars=200,
        max_document_chars=2000,
        max_total_chars=20_000,
        max_request_bytes=256 * 1024,
        microbatch_wait_ms=1.0,
    )


# -- watching the file system ---------------------------------------------------------------------
class FileWatch:
    """Records file events (Python audit hooks) that touch ``forbidden`` paths, writes into
    ``readonly`` ones and writes anywhere but ``writable``, while active. The hook is installed once
    per process (it cannot be removed). Reads by native code (tokenizers, Chroma's engine) are not
    seen; their paths pass through Python checks first, which are."""

    READS = {"open", "os.listdir", "os.scandir", "sqlite3.connect", "shutil.copyfile", "os.chdir"}
    WRITES = {
        "os.mkdir",
        "os.rename",
        "os.replace",
        "os.remove",
        "os.rmdir",
        "os.symlink",
        "os.truncate",
        "os.chmod",
        "shutil.rmtree",
        "shutil.move",
    }
    _active: list[FileWatch] = []
    _installed = False

    def __init__(self, forbidden: list[Path], readonly: list[Path], writable: list[Path]) -> None:
        self.forbidden = [os.path.realpath(p) for p in forbidden]
        self.readonly = [os.path.realpath(p) for p in readonly]
        self.writable = [os.path.realpath(p) for p in writable]
        self.violations: list[tuple[str, str]] = []

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        if not cls._active or (event not in cls.READS and event not in cls.WRITES):
            return
        writing = event in cls.WRITES or (
            event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+")
        )
        two = event in ("os.rename", "os.replace", "os.symlink", "shutil.move", "shutil.copyfile")
        for arg in args[: 2 if two else 1]:  # open's second argument is its mode
            if isinstance(arg, bytes):
                arg = os.fsdecode(arg)
            if not isinstance(arg, (str, os.PathLike)):
                continue
            try:
                real = os.path.realpath(arg)
            except (OSError, ValueError):
                continue
            for watch in cls._active:
                watch._check(event, real, writing)

    def _check(self, event: str, real: str, writing: bool) -> None:
        inside = lambda roots: any(real == r or real.startswith(r + os.sep) for r in roots)  # noqa: E731
        if inside(self.forbidden):
            self.violations.append((event, real))
        elif writing and (inside(self.readonly) or not inside(self.writable)) and not real.startswith("/dev/"):
            self.violations.append((event + " (write)", real))

    def __enter__(self) -> FileWatch:
        if not FileWatch._installed:
            sys.addaudithook(FileWatch._hook)
            FileWatch._installed = True
        FileWatch._active.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        FileWatch._active.remove(self)


# -- outcomes -------------------------------------------------------------------------------------
BAD = ("unclear", "5xx", "crash", "hang", "leak")


@dataclass
class Outcome:
    kind: str  # ok | clean | unsent | unclear | 5xx | crash | hang | leak
    target: str  # tool name or "METHOD /path"
    detail: str = ""

    @property
    def bad(self) -> bool:
        return self.kind in BAD


@dataclass
class Stats:
    counts: Counter = field(default_factory=Counter)
    per_target: Counter = field(default_factory=Counter)
    failures: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        self.per_target[outcome.target] += 1
        if outcome.bad and len(self.failures) < 50:
            self.failures.append(outcome)

    @property
    def cases(self) -> int:
        return sum(self.counts.values())


def classify_tool_error(text: str) -> str:
    if MASKED.match(text) or "Traceback" in text:
        return "5xx"
    return "clean" if FIELD_ERROR.match(text) else "unclear"


# -- the server under fuzz ------------------------------------------------------------------------
class Target:
    """One adaptrank server: in-memory MCP client (on a private event loop) and uvicorn on 127.0.0.1."""

    def __init__(self, settings: Any, timeout: float = 60.0) -> None:
        from fastmcp import Client

        from adaptrank.server.app import create_app
        from adaptrank.server.context import Services
        from adaptrank.server.http import serve_in_thread

        self.settings = settings
        self.timeout = timeout
        self.services = Services(settings)
        self.app = create_app(services=self.services)
        self._stack = ExitStack()
        self.url = self._stack.enter_context(serve_in_thread(self.app, settings, timeout=60))
        self.http = httpx.Client(base_url=self.url, timeout=timeout)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()
        self.client = Client(self.app, timeout=timeout)
        self._run(self.client.__aenter__())
        self.schemas = {t.name: t.input_schema for t in self._run(self.client.list_tools())}
        self.job_ids: list[str] = []

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout or self.timeout)

    # -- cases ---------------------------------------------------------------------------------
    def call_tool(self, name: str, args: dict[str, Any]) -> Outcome:
        args = {k: (self._known_job() if v == "@known-job" else v) for k, v in args.items()}
        try:
            res = self._run(self.client.call_tool(name, args, raise_on_error=False))
        except TimeoutError:
            return Outcome("hang", name, f"no answer in {self.timeout}s: {_short(args)}")
        except (ValueError, TypeError) as exc:  # the client could not even encode it (e.g. 300 levels deep)
            return Outcome("unsent", name, f"{type(exc).__name__}: {str(exc)[:200]}")
        except Exception as exc:  # noqa: BLE001 - the protocol itself broke: classify, keep going
            text = str(exc)
            kind = "clean" if FIELD_ERROR.match(text) else "crash" if not self.alive() else "unclear"
            return Outcome(kind, name, f"{type(exc).__name__}: {text[:300]} <- {_short(args)}")
        text = " ".join(getattr(c, "text", "") for c in res.content)
        if SECRET in text or SECRET in json.dumps(res.structured_content or {}, default=str):
            return Outcome("leak", name, f"the secret came back <- {_short(args)}")
        if res.is_error:
            return Outcome(classify_tool_error(text), name, f"{text[:300]} <- {_short(args)}")
        self._note_jobs(res.structured_content)
        return Outcome("ok", name)

    def read_resource(self, uri: str) -> Outcome:
        try:
            contents = self._run(self.client.read_resource(uri))
        except TimeoutError:
            return Outcome("hang", "resource", uri[:200])
        except Exception as exc:  # noqa: BLE001
            text = str(exc)
            if "Error reading resource" in text and "Unknown resource" not in text and not FIELD_ERROR.match(text):
                return Outcome("5xx" if self.alive() else "crash", "resource", f"{text[:300]} <- {uri[:200]!r}")
            return Outcome("clean", "resource", text[:200])
        body = " ".join(getattr(c, "text", "") for c in contents)
        return Outcome("leak" if SECRET in body else "ok", "resource", uri[:200])

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Outcome:
        target = f"{method} {path.split('?')[0]}"
        if body == b"@deep":
            body = b"[" * 5000 + b"]" * 5000
        elif body == b"@big":  # just over the body limit
            body = b'{"query": "q", "documents": ["' + b"a" * self.settings.max_request_bytes + b'"]}'
        try:
            r = self.http.request(method, path, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome("hang", target, f"no answer in {self.timeout}s")
        except httpx.HTTPError as exc:
            self.http.close()
            self.http = httpx.Client(base_url=self.url, timeout=self.timeout)
            return Outcome("crash" if not self.alive() else "unclear", target, f"{type(exc).__name__}: {exc}")
        text = r.text
        if SECRET in text:
            return Outcome("leak", target, text[:200])
        if r.status_code >= 500:
            return Outcome("5xx", target, f"{r.status_code} {text[:300]} <- {(body or b'')[:200]!r}")
        route = path.split("?")[0]
        guard = r.status_code in (403, 421) and ("Origin" in text or "Host" in text)  # DNS-rebinding guard
        if route in RERANK_ROUTES and method == "POST" and 400 <= r.status_code < 500 and not guard:
            if r.status_code != 413 and r.headers.get("connection", "").lower() == "close":
                return Outcome("unclear", target, f"{r.status_code} dropped the keep-alive connection")
            try:
                err = r.json()
            except ValueError:
                return Outcome("unclear", target, f"{r.status_code} not JSON: {text[:200]}")
            fld = err.get("field")
            if r.status_code != 401 and not (fld and str(err.get("message", "")).startswith(str(fld))):
                return Outcome("unclear", target, f"{r.status_code} names no field: {text[:200]}")
            return Outcome("clean", target)
        return Outcome("ok" if r.status_code < 400 else "clean", target)

    # -- upkeep --------------------------------------------------------------------------------
    def alive(self) -> bool:
        """Both transports still answer a real request."""
        try:
            res = self._run(self.client.call_tool("rerank", {"query": "gout", "documents": ["uric acid", "tea"]}), 60)
            r = httpx.post(f"{self.url}/v1/rerank", json={"query": "gout", "documents": ["a", "b"]}, timeout=60)
            return not res.is_error and r.status_code == 200
        except Exception:  # noqa: BLE001
            return False

    def _known_job(self) -> str:
        return self.job_ids[-1] if self.job_ids else "0123456789ab"

    def _note_jobs(self, content: Any) -> None:
        if isinstance(content, dict):
            job = content.get("job") if isinstance(content.get("job"), dict) else content
            if isinstance(job, dict) and isinstance(job.get("id"), str) and "state" in job:
                self.job_ids.append(job["id"])
                del self.job_ids[:-20]

    def stop_jobs(self) -> None:
        """Cancel what the cases started, so background work stays bounded."""
        jobs = self.services.jobs
        for info in jobs.list(limit=200):
            if not info.finished_state:
                jobs.cancel(info.id)

    def close(self) -> None:
        try:
            self.stop_jobs()
            self._run(self.client.__aexit__(None, None, None), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.http.close()
            self._stack.close()
            self.services.close()


def _short(value: Any) -> str:
    return repr(value)[:300]


# -- strategies -----------------------------------------------------------------------------------
NASTY_TEXT = [
    "",
    " ",
    "\n",
    "\t\r\n",
    "\0",
    "a\0b",
    "\ud800",
    "x\udfffy",
    "\ud83d",
    "\u202eevil\u202c",
    "\u200b\u200d\ufeff",
    "e" + "\u0301" * 3000,
    "\U0001f600" * 50,
    "ℌ𝔢𝔩𝔩𝔬",
    "null",
    "None",
    "true",
    "0",
    "-1",
    "1e309",
    "NaN",
    "<script>alert(1)</script>",
    "'; DROP TABLE jobs; --",
    "${HOME}",
    "$(id)",
    "%s%n",
    "{}",
    "[]",
    "\\",
    '"',
    "x" * 4097,
    "y" * 2001,
    "z" * 513,
]
NASTY_SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    -(2**63),
    2**64,
    1.5,
    -0.0,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    [],
    {},
    [None],
    {"a": 1},
    ["x"] * 3,
]


def deep(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def nasty(layout: Layout) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.sampled_from(NASTY_SCALARS),
        st.sampled_from(layout.paths()),
        st.sampled_from(layout.models()),
        st.sampled_from([deep(40), deep(300)]),
        st.text(max_size=40),
        st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
        st.lists(st.text(max_size=5), max_size=60),
    )


#: field names whose values are paths, models, collections...: domain values beside generic ones
def domain(name: str, layout: Layout) -> st.SearchStrategy[Any] | None:
    if name in ("path", "queries"):  # every path a tool reads
        return st.sampled_from(layout.paths())
    if name in ("model", "base_model", "llm_model"):
        return st.sampled_from(layout.models())
    if name == "models":
        return st.lists(st.sampled_from(layout.models()), min_size=1, max_size=4)
    if name in ("collection", "first_stage"):
        names = ["notes", "nope", "ab", "a" * 600, "../x", "notes\0", "no tes", "-x-", "chroma:notes", "bm25"]
        return st.sampled_from(
            names if name == "collection" else ["bm25", "chroma:notes", "chroma:nope", "chroma:../x"]
        )
    if name == "job_id":
        return st.sampled_from(["@known-job", "nope", "0" * 64, "a" * 65, "../jobs", "x\0", "' OR 1=1 --"])
    if name in ("dataset", "output_name"):
        return st.sampled_from(["toy", "toy@v1", "..", ".hidden", "a" * 65, "x/y", "fuzz-out", "CON", "x\0"])
    if name == "wait_seconds":
        return st.sampled_from([0, 0.05, -1, 51, float("nan"), "1"])
    if name == "documents":
        doc = st.one_of(
            st.text(max_size=60),
            st.sampled_from(NASTY_TEXT),
            st.fixed_dictionaries(
                {"text": st.text(max_size=60)},
                optional={
                    "id": st.one_of(st.text(max_size=10), st.integers()),
                    "metadata": st.one_of(
                        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                        st.just(deep(40)),
                        st.text(max_size=3),
                        st.just({"\udc00": "\ud800"}),
                    ),
                },
            ),
        )
        return st.one_of(
            st.lists(doc, min_size=1, max_size=12),
            st.just(["d"] * 41),
            st.just(["w " * 1000] * 25),
            st.just([]),
            st.lists(st.sampled_from(NASTY_SCALARS), max_size=3),
        )
    return None


def from_schema(schema: dict[str, Any], defs: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Valid-ish values for a JSON schema (kept small), boundaries included."""
    if "$ref" in schema:
        return from_schema(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of(*(from_schema(s, defs, name) for s in schema[key]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        lo, hi = schema.get("minimum", -5), schema.get("maximum", 1000)
        return st.one_of(st.integers(lo, min(hi, lo + 20)), st.sampled_from([lo, hi, lo - 1, hi + 1]))
    if kind == "number":
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        hi = schema.get("maximum", lo + 10)
        return st.one_of(st.floats(lo, min(hi, lo + 3), allow_nan=False), st.sampled_from([lo, hi, hi + 1, lo - 1]))
    if kind == "array":
        item = from_schema(schema.get("items", {}), defs, name)
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", 5)
        return st.lists(item, min_size=lo, max_size=min(hi, lo + 4))
    if kind == "object":
        props = schema.get("properties", {})
        req = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, defs, k) for k, v in props.items() if k in req},
            optional={k: from_schema(v, defs, k) for k, v in props.items() if k not in req},
        )
    lo, hi = schema.get("minLength", 0), schema.get("maxLength", 40)
    pattern = schema.get("pattern")
    if pattern:
        return st.from_regex(pattern, fullmatch=True).filter(lambda s: lo <= len(s) <= hi)
    return st.one_of(
        st.text(min_size=lo, max_size=min(hi, lo + 30)),
        st.sampled_from(["x" * lo, "x" * hi, "x" * (hi + 1)] if hi < 10_000 else ["x" * lo]),
    )


def arguments(schema: dict[str, Any], layout: Layout) -> st.SearchStrategy[dict[str, Any]]:
    """A tool's arguments: each present field valid-ish, domain-specific or hostile; sometimes a
    required field missing or an unknown one added."""
    defs = schema.get("$defs", {})
    props = schema.get("properties", {})
    required = set(schema.get("required", []))

    def value(name: str, sub: dict[str, Any], hostile: bool) -> st.SearchStrategy[Any]:
        options = [from_schema(sub, defs, name)]
        special = domain(name, layout)
        if special is not None:
            options.insert(0, special)
        if hostile:
            options.append(nasty(layout))
        return st.one_of(*options)

    def fields(hostile: bool) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {k: value(k, v, hostile) for k, v in props.items() if k in required},
            optional={k: value(k, v, hostile) for k, v in props.items() if k not in required},
        )

    base = fields(hostile=True)
    extra = st.dictionaries(st.sampled_from(["extra", "__proto__", "ctx", "", "\0"]), nasty(layout), max_size=1)
    plausible = fields(hostile=False)  # so that cases reach past validation
    return st.one_of(
        plausible,
        plausible,
        base,
        base,
        st.tuples(base, extra).map(lambda t: {**t[0], **t[1]}),
        base.flatmap(
            lambda d: st.sampled_from(sorted(d) or [""]).map(lambda k: {x: v for x, v in d.items() if x != k})
        ),
    )


def tool_case(
    target: Target, layout: Layout, only: set[str] | None = None
) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """A tool (uniformly, among ``only`` when given) and its arguments."""
    per_tool = {
        name: arguments(schema, layout) for name, schema in target.schemas.items() if only is None or name in only
    }
    return st.sampled_from(sorted(per_tool)).flatmap(lambda n: per_tool[n].map(lambda a: (n, a)))


def resource_uri(layout: Layout) -> st.SearchStrategy[str]:
    names = st.one_of(
        st.sampled_from(layout.models() + NASTY_TEXT[:12] + ["../../etc/passwd", "%2e%2e"]), st.text(max_size=20)
    )
    return st.one_of(
        st.sampled_from(
            [
                "adaptrank://models",
                "adaptrank://collections",
                "adaptrank://datasets",
                "adaptrank://nope",
                "file:///etc/passwd",
            ]
        ),
        names.map(lambda n: f"adaptrank://models/{n}"),
    )


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, default=str).encode("utf-8", "surrogatepass")


def cohere_body(layout: Layout) -> st.SearchStrategy[bytes]:
    """A /v1/rerank body: well-formed and hostile JSON, then sometimes mangled at the byte level."""
    fields = {
        "query": st.one_of(st.text(max_size=40), st.sampled_from(NASTY_TEXT), st.sampled_from(NASTY_SCALARS)),
        "documents": domain("documents", layout),
    }
    optional = {
        "top_n": st.one_of(st.integers(-2, 45), st.sampled_from(["2", 2.0, True, None, 2**70])),
        "return_documents": st.one_of(st.booleans(), st.sampled_from(["yes", 1, None, "true"])),
        "model": st.one_of(st.sampled_from(layout.models()), st.sampled_from(NASTY_TEXT[:12])),
        "rank_fields": st.just(["text"]),
        "max_chunks_per_doc": st.integers(0, 5),
        "x": st.sampled_from([deep(50), "\ud800", {"\ud800": 1}, {"\udc00": "\ud800"}]),
        "\ud800": st.sampled_from(["\ud800", 1]),
    }
    body = st.fixed_dictionaries(fields, optional=optional).map(_json_bytes)
    mangled = st.one_of(
        st.just(b""),
        st.just(b"{"),
        st.just(b"null"),
        st.just(b"[]"),
        st.just(b'"x"'),
        st.just(b"\xff\xfe\x00"),
        st.sampled_from([b"@deep", b"@big"]),  # expanded when sent (see Target.request), short when printed
        st.just(b'{"query": "q", "documents": ["\\ud800"]}'),
        st.just(b'{"query": "q", "documents": ["a"], "top_n": 1e999}'),
        st.just(b'{"query": "q", "documents": ["a"], "query": 5}'),
        st.binary(max_size=64),
        body.flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n])),
    )
    return st.one_of(body, body, body, mangled)


def http_case(layout: Layout) -> st.SearchStrategy[tuple[str, str, bytes | None, dict[str, str]]]:
    content_types = st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "",
            "application/x-www-form-urlencoded",
            "application/vnd.api+json",
            "multipart/form-data",
        ]
    )
    headers = st.fixed_dictionaries(
        {"content-type": content_types},
        optional={
            "authorization": st.sampled_from(["Bearer x", "Basic Zm9vOmJhcg==", "Bearer " + "a" * 5000, ""]),
            "origin": st.sampled_from(["http://evil.example", "null", "http://127.0.0.1"]),
            "accept": st.sampled_from(["application/json, text/event-stream", "*/*", "text/html"]),
            "x-forwarded-for": st.just("1.2.3.4"),
        },
    ).map(lambda h: {k: v for k, v in h.items() if v != ""})
    rerank = st.tuples(
        st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "OPTIONS", "HEAD"]),
        st.sampled_from([*list(RERANK_ROUTES), "/v1/rerank/", "/v1/rerank?x=1"]),
        cohere_body(layout),
        headers,
    )
    mcp_messages = st.one_of(
        st.fixed_dictionaries(
            {
                "jsonrpc": st.just("2.0"),
                "id": st.integers(0, 9),
                "method": st.sampled_from(["initialize", "tools/call", "tools/list", "resources/read", "nope"]),
                "params": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), nasty(layout), max_size=3)),
            }
        ),
        nasty(layout),
    ).map(_json_bytes)
    mcp = st.tuples(
        st.sampled_from(["POST", "GET", "DELETE"]),
        st.just("/mcp"),
        st.one_of(mcp_messages, st.sampled_from([b"", b"{", b"@deep", b"@big"])),
        headers,
    )
    other = st.tuples(
        st.sampled_from(["GET", "POST", "HEAD"]),
        st.sampled_from(["/healthz", "/", "/nope", "/../../etc/passwd", "/healthz?" + "x" * 2000, "/%00"]),
        st.sampled_from([None, b"{}"]),
        headers,
    )
    return st.sampled_from(["rerank"] * 6 + ["mcp"] * 3 + ["other"]).flatmap(
        {"rerank": rerank, "mcp": mcp, "other": other}.__getitem__
    )
