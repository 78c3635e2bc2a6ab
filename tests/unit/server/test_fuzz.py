"""The quick fuzz tier (issue 9): every MCP tool, the resources and every HTTP route of one real
server (in-memory MCP client, uvicorn on 127.0.0.1), tiny models, an LLM stub.

Every case must end as a success or as a 4xx / tool error naming the field; the server keeps
serving; nothing outside the allowed root and ``ADAPTRANK_HOME`` is read (the secret planted next to
the root never comes back) and nothing is written outside ``ADAPTRANK_HOME``. ``bench/fuzz.py`` runs
the same cases as a longer campaign. Set ``ADAPTRANK_FUZZ_EXAMPLES`` to scale this tier.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from fuzz_harness import (
    FileWatch,
    Stats,
    Target,
    http_case,
    make_layout,
    make_settings,
    resource_uri,
    tool_case,
)
from hypothesis import HealthCheck, given, settings
from llm_stub import LLMStub

pytestmark = pytest.mark.timeout(900)

EXAMPLES = int(os.environ.get("ADAPTRANK_FUZZ_EXAMPLES", "200"))
QUICK = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _tree(path: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.lstat().st_size, p.lstat().st_mtime_ns) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory, tiny_cross_encoder, tiny_bi_encoder):
    layout = make_layout(tmp_path_factory.mktemp("fuzz"), tiny_cross_encoder, tiny_bi_encoder)
    before = {"outside": _tree(layout.outside), "root": _tree(layout.root)}
    with LLMStub() as stub:
        target = Target(make_settings(layout, stub.url), timeout=60)
        try:
            ingest = target.call_tool("ingest_documents", {"path": str(layout.root / "notes"), "collection": "notes"})
            assert ingest.kind == "ok", ingest
            with FileWatch(
                forbidden=[layout.outside],
                readonly=[layout.root],
                # hypothesis keeps its own caches in ./.hypothesis (the test, not the server)
                writable=[layout.home, Path(tempfile.gettempdir()), Path.cwd() / ".hypothesis"],
            ) as watch:
                yield target, layout, watch
        finally:
            target.close()
    assert _tree(layout.outside) == before["outside"] and _tree(layout.root) == before["root"]


def _check_after(target: Target, watch: FileWatch, stats: Stats) -> None:
    target.stop_jobs()
    print(f"\n{stats.cases} cases: {dict(stats.counts)}; per target: {dict(stats.per_target)}")
    assert target.alive(), "the server stopped serving"
    assert watch.violations == [], watch.violations[:10]


def test_mcp_tools_fuzz(fuzz):
    target, layout, watch = fuzz
    stats = Stats()

    @QUICK
    @given(case=tool_case(target, layout))
    def run(case):
        outcome = target.call_tool(*case)
        stats.add(outcome)
        if stats.cases % 25 == 0:
            target.stop_jobs()
        assert not outcome.bad, outcome

    run()
    # hypothesis draws tools far from evenly (6 to 26 calls each in 200 cases), so a tool can go
    # undrawn by chance: give the ones it missed a round of their own rather than fail at random
    missing = set(target.schemas) - set(stats.per_target)
    if missing:

        @settings(QUICK, max_examples=10 * len(missing))
        @given(case=tool_case(target, layout, only=missing))
        def run_missing(case):
            outcome = target.call_tool(*case)
            stats.add(outcome)
            assert not outcome.bad, outcome

        run_missing()
    assert set(stats.per_target) == set(target.schemas), f"never called: {set(target.schemas) - set(stats.per_target)}"
    _check_after(target, watch, stats)


def test_mcp_resources_fuzz(fuzz):
    target, layout, watch = fuzz
    stats = Stats()

    @settings(QUICK, max_examples=max(EXAMPLES // 4, 10))
    @given(uri=resource_uri(layout))
    def run(uri):
        outcome = target.read_resource(uri)
        stats.add(outcome)
        assert not outcome.bad, outcome

    run()
    _check_after(target, watch, stats)


def test_http_routes_fuzz(fuzz):
    target, layout, watch = fuzz
    stats = Stats()

    @QUICK
    @given(case=http_case(layout))
    def run(case):
        outcome = target.request(*case)
        stats.add(outcome)
        assert not outcome.bad, outcome

    run()
    _check_after(target, watch, stats)


def test_the_file_watch_sees_what_it_must(tmp_path):
    """The oracle itself can fail: a read outside and a write into the root are both recorded."""
    outside, root, home = tmp_path / "outside", tmp_path / "root", tmp_path / "home"
    for d in (outside, root, home):
        d.mkdir()
    (outside / "secret.txt").write_text("s")
    (root / "link.txt").symlink_to(outside / "secret.txt")
    with FileWatch(forbidden=[outside], readonly=[root], writable=[home, tmp_path]) as watch:
        (root / "link.txt").read_text()
        (root / "new.txt").write_text("x")
        (home / "ok.txt").write_text("x")
        os.listdir(outside)
    events = [(e, Path(p).name) for e, p in watch.violations]
    assert ("open", "secret.txt") in events and ("open (write)", "new.txt") in events
    assert ("os.listdir", "outside") in events and not any(name == "ok.txt" for _, name in events)
