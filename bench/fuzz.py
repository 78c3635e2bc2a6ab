"""A bounded fuzz campaign over every MCP tool, the resources and every HTTP route (issue 9).

The same server, cases and oracle as the quick tier in ``tests/unit/server/test_fuzz.py``
(``tests/support/fuzz_harness.py``): one real server with tiny models built from a config and an
OpenAI-compatible LLM stub, the in-memory MCP client for tools and resources, uvicorn on 127.0.0.1
for ``/v1/rerank``, ``/v2/rerank``, ``/rerank``, ``/healthz`` and raw ``/mcp``. Cases are drawn by
hypothesis (generation only, no shrinking) in rounds until ``--cases`` are tried or ``--minutes``
pass. Prints cases tried, successes, clean errors (4xx / tool errors naming the field), unclear
errors, 5xx, crashes, hangs, leaks of the planted secret and file accesses outside the allowed
places, per target, and the first failures. Exit code 1 if any case went wrong.

    HF_HUB_OFFLINE=1 python bench/fuzz.py                    # 10,000 cases (a few minutes)
    HF_HUB_OFFLINE=1 python bench/fuzz.py --cases 20000 --minutes 60
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS / "support"))

from fuzz_harness import (  # noqa: E402
    FileWatch,
    Stats,
    Target,
    http_case,
    make_layout,
    make_settings,
    resource_uri,
    tool_case,
)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from llm_stub import LLMStub  # noqa: E402

ROUND = 250  # cases per hypothesis run; jobs are stopped and liveness checked between rounds


def tiny_models(base: Path) -> tuple[str, str]:
    """The tests' tiny cross-encoder and bi-encoder (2-layer BERTs built from a config)."""
    spec = importlib.util.spec_from_file_location("adaptrank_tests_conftest", TESTS / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)  # type: ignore[union-attr]
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    ce = conftest.build_tiny_bert(base / "tiny-ce")
    bert = conftest.build_tiny_bert(base / "tiny-bert", num_labels=None)
    SentenceTransformer(modules=[Transformer(str(bert)), Pooling(32, "mean")]).save(str(base / "tiny-bi"))
    return str(ce), str(base / "tiny-bi")


def log_to_file(path: Path) -> logging.Handler:
    """The server's own logs (tool errors, failed jobs) go to a file, not between the figures."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("", "fastmcp", "mcp", "adaptrank", "uvicorn", "chromadb", "httpx"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    logging.getLogger().setLevel(logging.INFO)
    return handler


def server_log_tracebacks(path: Path) -> tuple[int, int]:
    """(deliberate, unexpected): tracebacks ending in a fastmcp ToolError/ResourceError (bad input
    the caller was told about) and all others."""
    deliberate = unexpected = 0
    in_tb = False
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            in_tb = True
        elif in_tb and line and not line.startswith(" "):
            in_tb = False
            if line.startswith(("fastmcp.exceptions.ToolError", "fastmcp.exceptions.ResourceError")):
                deliberate += 1
            else:
                unexpected += 1
    return deliberate, unexpected


def run_round(kind: str, target: Target, layout, stats: Stats, n: int, deadline: float) -> None:
    strategy = {"tools": tool_case(target, layout), "http": http_case(layout), "resources": resource_uri(layout)}[kind]
    call = {
        "tools": lambda c: target.call_tool(*c),
        "http": lambda c: target.request(*c),
        "resources": target.read_resource,
    }[kind]

    @settings(
        max_examples=n, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def one(case) -> None:
        if time.monotonic() < deadline:
            stats.add(call(case))

    one()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000, help="cases to try (default 10,000)")
    ap.add_argument("--minutes", type=float, default=30, help="stop after this long even if --cases are not done")
    ap.add_argument("--timeout", type=float, default=60, help="seconds before a case counts as a hang")
    args = ap.parse_args()

    started = time.monotonic()
    deadline = started + args.minutes * 60
    stats = Stats()
    with tempfile.TemporaryDirectory(prefix="adaptrank-fuzz-") as tmp, LLMStub() as stub:
        base = Path(tmp)
        log_path = Path(tempfile.gettempdir()) / "adaptrank-fuzz-server.log"
        layout = make_layout(base, *tiny_models(base))
        target = Target(make_settings(layout, stub.url), timeout=args.timeout)
        log_to_file(log_path)  # after fastmcp has installed its own handlers
        before = sorted((str(p), p.lstat().st_size, p.lstat().st_mtime_ns) for p in layout.outside.rglob("*"))
        try:
            seeded = target.call_tool("ingest_documents", {"path": str(layout.root / "notes"), "collection": "notes"})
            assert seeded.kind == "ok", seeded
            alive_checks = failed_checks = 0
            with FileWatch(
                forbidden=[layout.outside],
                readonly=[layout.root],
                writable=[layout.home, Path(tempfile.gettempdir()), Path.cwd() / ".hypothesis"],
            ) as watch:
                rounds = ["tools", "http", "tools", "http", "resources"]  # 40% tools, 40% HTTP, 20% resources
                i = 0
                while stats.cases < args.cases and time.monotonic() < deadline:
                    kind = rounds[i % len(rounds)]
                    i += 1
                    run_round(kind, target, layout, stats, min(ROUND, args.cases - stats.cases), deadline)
                    target.stop_jobs()
                    alive_checks += 1
                    if not target.alive():
                        failed_checks += 1
                    print(
                        f"  {stats.cases:6d} cases, {time.monotonic() - started:6.0f} s: {dict(stats.counts)}",
                        flush=True,
                    )
            after = sorted((str(p), p.lstat().st_size, p.lstat().st_mtime_ns) for p in layout.outside.rglob("*"))
        finally:
            target.close()

    c = stats.counts
    clean = c["clean"] + c["unsent"]
    print(f"\nfuzz campaign: {stats.cases} cases in {time.monotonic() - started:.0f} s")
    print(f"  succeeded       {c['ok']}")
    print(
        f"  clean errors    {clean}  (4xx / tool errors naming the field; {c['unsent']} refused by the client itself)"
    )
    print(f"  unclear errors  {c['unclear']}")
    print(f"  5xx             {c['5xx']}")
    print(
        f"  crashes         {c['crash']}  (server stopped answering: {failed_checks} of {alive_checks} liveness checks failed)"
    )
    print(f"  hangs           {c['hang']}  (no answer within {args.timeout:.0f} s)")
    print(f"  secret leaked   {c['leak']}")
    print(
        f"  file accesses outside the allowed places: {len(watch.violations)}; "
        f"files outside changed: {'yes' if after != before else 'no'}"
    )
    deliberate, unexpected = server_log_tracebacks(log_path)
    print(
        f"  server log: {log_path} ({unexpected} tracebacks of unexpected errors; {deliberate} of deliberate "
        "tool/resource errors, which fastmcp logs with their traceback)"
    )
    tools = {k: v for k, v in stats.per_target.items() if " " not in k}
    routes = {k: v for k, v in stats.per_target.items() if " " in k}
    print("  MCP tools and resources: " + ", ".join(f"{k} {v}" for k, v in sorted(tools.items())))
    print("  HTTP: " + ", ".join(f"{k} {v}" for k, v in sorted(routes.items())))
    for failure in stats.failures[:10]:
        print(f"  FAILURE {failure.kind} {failure.target}: {failure.detail[:300]}")
    for event in watch.violations[:10]:
        print(f"  FILE {event}")
    bad = (
        sum(c[k] for k in ("unclear", "5xx", "crash", "hang", "leak"))
        + failed_checks
        + len(watch.violations)
        + unexpected
    )
    return 1 if bad or after != before else 0


if __name__ == "__main__":
    sys.exit(main())
