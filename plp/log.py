"""Logging setup: text or JSON lines, and an access log that never shows secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from tornado.web import RequestHandler

# Query parameters whose values never reach a log line.
_SECRET_QUERY = re.compile(r"(?i)([?&](?:_xsrf|token|password|secret|key)=)[^&#]*")
access_log = logging.getLogger("plp.access")


def scrub_uri(uri: str) -> str:
    """The URI with secret-looking query values replaced by `***`."""
    return _SECRET_QUERY.sub(r"\1***", uri)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            data.update(access)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Send logs to stderr in the chosen format; replaces handlers set earlier."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # No format here uses the caller's file/line, thread or process, so skip collecting
    # them for every record (the logging HOWTO's "Optimization" switches): a third of the
    # cost of each access-log line.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(level.upper())
    # Tornado's own access log repeats ours without scrubbing.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def log_request(handler: RequestHandler) -> None:
    """One line per request: status, method, scrubbed URI, duration; no cookies or bodies.

    Also tells the Context's `on_request` hooks (metrics).
    """
    status = handler.get_status()
    request = handler.request
    seconds = request.request_time()
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if access_log.isEnabledFor(level):
        uri = scrub_uri(request.uri or "")
        access_log.log(
            level,
            "%d %s %s %.1fms",
            status,
            request.method,
            uri,
            1000.0 * seconds,
            extra={
                "access": {
                    "status": status,
                    "method": request.method,
                    "uri": uri,
                    "ms": round(1000.0 * seconds, 1),
                }
            },
        )
    ctx = getattr(handler.application, "ctx", None)
    if ctx is not None:
        ctx.hooks.request_done(status, seconds)
