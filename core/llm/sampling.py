"""MCP sampling: ask the *calling client's* LLM (``sampling/createMessage``).

Where it works: a client that declared the ``sampling`` capability on a handshake-era MCP
session (Claude Desktop, the fastmcp ``Client(sampling_handler=...)``, ...). MCP deprecated
server-initiated sampling on 2026-07-28 (SEP-2577) and fastmcp 4 dropped ``Context.sample``, so
this backend talks to the SDK session directly and fails with a clear :class:`LLMError` when the
client cannot sample.

A server can only send requests to the client while one of the client's requests is open (the
back-channel belongs to that request), so the tool that uses this backend must stay open until
its work is done. The session lives on the server's event loop while generation jobs run in
worker threads:
:meth:`generate` submits the requests to that loop and waits (never call it *on* the loop; use
:meth:`agenerate` there). Each reply is validated against ``json_schema``/``choices`` and asked
again when invalid, like the other backends.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

from adaptrank.core.llm.base import LLM, LLMError, Prompt, ReplyAttempts

NO_SAMPLING = "the MCP client does not support sampling"


def sampling_unavailable_reason(ctx: Any) -> str | None:
    """Why the MCP client behind ``ctx`` cannot sample, or None when it can (it declared the
    sampling capability on a handshake-era session; the 2026-07-28 protocol forbids
    server-initiated requests). Every reason starts with :data:`NO_SAMPLING`."""
    if ctx is None:
        return f"{NO_SAMPLING} (no MCP request: called outside an MCP tool)"
    try:
        import mcp.types as types
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        session = ctx.session
        version = getattr(session, "protocol_version", None)
        if version in MODERN_PROTOCOL_VERSIONS:
            return (
                f"{NO_SAMPLING} (the session speaks the {version} protocol, which has no "
                "server-initiated requests; connect on a handshake-era session)"
            )
        if not session.check_client_capability(types.ClientCapabilities(sampling=types.SamplingCapability())):
            return f"{NO_SAMPLING} (it did not declare the sampling capability)"
        return None
    except Exception as exc:  # noqa: BLE001 - no session, no request context, ...
        return f"{NO_SAMPLING} (no MCP session: {type(exc).__name__})"


def client_can_sample(ctx: Any) -> bool:
    """True when the MCP client behind ``ctx`` declared the sampling capability on a
    handshake-era session (the 2026-07-28 protocol forbids server-initiated requests)."""
    return sampling_unavailable_reason(ctx) is None


class SamplingLLM(LLM):
    """LLM calls relayed to the MCP client that called the tool."""

    def __init__(
        self,
        ctx: Any,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        concurrency: int = 4,
        max_retries: int = 2,
        timeout: float = 300.0,
        model_hint: str | None = None,
    ) -> None:
        if ctx is None or not client_can_sample(ctx):
            raise LLMError(
                "llm_backend 'sampling' needs an MCP client that supports sampling "
                "(sampling/createMessage) on a handshake-era session; this client did not declare it, "
                "or it speaks the 2026-07-28 protocol, which has no server-initiated requests. Use the "
                "'transformers' (embedded) or 'openai' backend instead."
            )
        self.session = ctx.session
        self.related_request_id = getattr(ctx, "request_id", None)
        try:
            self.loop = loop or asyncio.get_running_loop()
        except RuntimeError:
            raise LLMError("SamplingLLM must be created on the server's event loop (inside a tool)") from None
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.model_hint = model_hint
        self.name = "sampling:mcp-client"

    async def _one(self, prompt: Prompt, *, max_new_tokens, temperature, json_schema, choices, stop, strict) -> str:
        import mcp.types as types

        system = "\n".join(m["content"] for m in prompt if m["role"] == "system") or None
        messages = [
            types.SamplingMessage(role=m["role"], content=types.TextContent(type="text", text=m["content"]))
            for m in prompt
            if m["role"] in ("user", "assistant")
        ]
        if json_schema is not None:
            system = (system + "\n" if system else "") + "Reply with JSON only."
        elif choices:
            system = (system + "\n" if system else "") + f"Reply with exactly one of: {', '.join(choices)}."
        prefs = types.ModelPreferences(hints=[types.ModelHint(name=self.model_hint)]) if self.model_hint else None
        # a wrong choice is quoted in the error; broken JSON is described
        attempts = ReplyAttempts(
            self, self.max_retries, json_schema, choices, quote=80 if json_schema is None and choices else 0
        )
        for _ in attempts:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the SDK marks sampling deprecated (SEP-2577)
                    result = await asyncio.wait_for(
                        self.session.create_message(
                            messages=messages,
                            max_tokens=max_new_tokens,
                            system_prompt=system,
                            temperature=temperature,
                            stop_sequences=stop,
                            model_preferences=prefs,
                            related_request_id=self.related_request_id,
                        ),
                        self.timeout,
                    )
            except Exception as exc:  # noqa: BLE001 - the client refused or the connection dropped
                raise LLMError(f"MCP sampling failed: {type(exc).__name__}: {exc}") from None
            self.stats.calls += 1
            content = result.content
            text = content.text if isinstance(content, types.TextContent) else ""
            ok = attempts.accept(text)
            if ok is not None:
                return ok
        return attempts.give_up(strict, f"MCP sampling: {attempts.problem} after {self.max_retries + 1} attempts")

    async def agenerate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        choices: list[str] | None = None,
        stop: list[str] | None = None,
        strict: bool = True,
        **_: Any,
    ) -> list[str]:
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(self.concurrency)

        async def run(p: Prompt) -> str:
            async with sem:
                return await self._one(
                    p,
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    json_schema=json_schema,
                    choices=choices,
                    stop=stop,
                    strict=strict,
                )

        out = await asyncio.gather(*(run(p) for p in prompts))
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - t0
        return list(out)

    def generate(self, prompts: list[Prompt], **kwargs: Any) -> list[str]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise LLMError("SamplingLLM.generate would block the event loop; await agenerate() instead")
        future = asyncio.run_coroutine_threadsafe(self.agenerate(prompts, **kwargs), self.loop)
        return future.result()
