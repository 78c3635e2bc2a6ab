"""Server logs as JSON lines (``ADAPTRANK_LOG_FORMAT=json``), with the standard logging module.

``adaptrank serve`` calls :func:`configure_logging`: in ``json`` mode one handler on the root
logger writes one JSON object per record to stderr, and the loggers that bring their own handlers
(fastmcp's rich console, uvicorn's) hand their records to it instead. ``text`` changes nothing.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

#: attributes every LogRecord has; anything else was passed in ``extra=`` and is kept
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}  # uvicorn's ANSI copy
#: loggers that install their own handlers; in json mode they propagate to the root handler
OWN_HANDLERS = ("fastmcp", "mcp", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "exception"?, ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(log_format: str, level: str = "warning") -> None:
    """Apply ``log_format`` (``text`` or ``json``) to the process's logging."""
    if log_format != "json":
        return
    import fastmcp

    fastmcp.settings.log_enabled = False  # fastmcp would put its rich handler back on mcp.run()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level decides
