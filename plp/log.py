"""Logging setup: text or JSON lines, and an access log that never shows secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from urllib.parse import unquote_plus

from tornado.web import RequestHandler

# Query parameters whose values never reach a log line (compared after percent-decoding,
# case-insensitively, so `%5Fxsrf=` or `_XSRF=` is scrubbed too).
SECRET_PARAMS = frozenset({"_xsrf", "token", "password", "secret", "key", "code"})
METHOD_LOG_MAX = 16  # any token is a method to the HTTP parser; real ones are short
URI_LOG_MAX = 200  # longer URIs are cut: a 60 KB path must not make a 60 KB log line
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
access_log = logging.getLogger("plp.access")


def _scrub_pair(pair: str) -> str:
    name, sep, _value = pair.partition("=")
    if sep and unquote_plus(name).strip().lower() in SECRET_PARAMS:
        return name + "=***"
    return pair


def scrub_uri(uri: str) -> str:
    """The URI for a log line: secret query values as `***`, controls escaped, cut to 200.

    Cut first (cheap for a huge URI), then scrubbed: a pair cut inside its value keeps its
    name and is scrubbed; one cut inside its name has no value left to show.
    """
    cut = len(uri) > URI_LOG_MAX
    if cut:
        uri = uri[:URI_LOG_MAX]
    path, sep, query = uri.partition("?")
    if sep:
        uri = path + "?" + "&".join(_scrub_pair(pair) for pair in query.split("&"))
    if cut:
        uri += "…"
    # Tornado decodes the request line as Latin-1: escape controls so a URI cannot forge
    # log lines or terminal escapes.
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", uri)


class TextFormatter(logging.Formatter):
    """The text format, with the date part of each timestamp made once per second.

    `logging.Formatter.formatTime` runs `localtime` and `strftime` for every record: about
    two fifths of the cost of an access-log line. The cached part is the whole second, so
    the text is exactly what the default formatter writes.
    """

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    _second = -1
    _stamp = ""

    def utc_time(self, record: logging.LogRecord) -> str:
        """ISO 8601 UTC with milliseconds; the date part made once per second."""
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.utc_time(record),
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
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
        method = _CONTROL.sub("?", request.method or "")[:METHOD_LOG_MAX]
        access_log.log(
            level,
            "%d %s %s %.1fms",
            status,
            method,
            uri,
            1000.0 * seconds,
            extra={
                "access": {
                    "status": status,
                    "method": method,
                    "uri": uri,
                    "ms": round(1000.0 * seconds, 1),
                }
            },
        )
    ctx = getattr(handler.application, "ctx", None)
    if ctx is not None:
        ctx.hooks.request_done(status, seconds)
