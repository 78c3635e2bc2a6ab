"""Real processes for fault tests and the soak bench: ``adaptrank serve`` and ``chroma run``, both on
127.0.0.1, each bounded in time and stopped (or killed) by the caller.

``AdaptrankServer.kill()`` is ``kill -9``: no shutdown hook runs, exactly like a crash or an OOM kill.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def server_env(home: Path, root: Path, llm_url: str, **extra: str) -> dict[str, str]:
    """The environment of an ``adaptrank serve`` over ``home`` whose allowed root ``root`` holds the
    tiny bi-encoder at ``root/bi``, with the OpenAI-compatible LLM stub at ``llm_url``."""
    return {
        "ADAPTRANK_HOME": str(home),
        "ADAPTRANK_ALLOWED_ROOTS": json.dumps([str(root)]),
        "ADAPTRANK_DEFAULT_MODEL": f"bi-encoder:{root / 'bi'}",
        "ADAPTRANK_EMBEDDING_MODEL": str(root / "bi"),
        "ADAPTRANK_LLM_BACKEND": "openai",
        "ADAPTRANK_OPENAI_BASE_URL": llm_url,
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Process:
    """A subprocess with its output in a log file, and a readiness probe."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{url} did not answer within {timeout} s: {self.tail()}")
            time.sleep(0.2)

    def tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def kill(self) -> None:
        """SIGKILL: nothing gets to clean up."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._log.close()


class AdaptrankServer(_Process):
    """``python -m adaptrank.server serve --transport http`` with ``env`` (ADAPTRANK_* settings)."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        port: int | None = None,
        timeout: float = 120,
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The runner's own ADAPTRANK_* settings never leak into a server under test: ``env`` says all.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTRANK_")}
        full_env = {**inherited, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
        argv = [
            sys.executable,
            "-m",
            "adaptrank.server",
            "serve",
            "--transport",
            "http",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *(extra_args or []),
        ]
        super().__init__(argv, log, full_env)
        self.wait_ready(f"{self.url}/healthz", timeout)

    def client(self, timeout: float = 120) -> Any:
        """A fastmcp Client over streamable HTTP (use ``async with``)."""
        from fastmcp import Client

        return Client(f"{self.url}/mcp", timeout=timeout)

    def rss_mb(self) -> float:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


class ChromaServer(_Process):
    """``chroma run`` on a fixed port and data path, so a restart serves the same collections."""

    def __init__(self, data: Path, log: Path, port: int | None = None, timeout: float = 60) -> None:
        exe = Path(sys.executable).parent / "chroma"
        binary = str(exe) if exe.is_file() else shutil.which("chroma")
        if binary is None:
            raise FileNotFoundError("the chroma CLI is not installed")
        self.data = data
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([binary, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(self.port)], log)
        self.wait_ready(f"{self.url}/api/v2/heartbeat", timeout)
