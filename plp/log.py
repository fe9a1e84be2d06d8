"""Logging setup: text or JSON lines, and an access log that never shows secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any
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

    FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._time(record.created, record.msecs)

    def _time(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(created))
            self._second = second
        return self.default_msec_format % (self._stamp, msecs)

    def access_line(self, created: float, level: int, access: dict[str, Any]) -> str:
        """What `format` makes of an access record (FORMAT only): see `log_request`."""
        return "%s %s plp.access: %d %s %s %.1fms" % (  # noqa: UP031 - as the record's
            self._time(created, _msecs(created)),
            logging.getLevelName(level),
            access["status"],
            access["method"],
            access["uri"],
            access["seconds"] * 1000.0,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    _second = -1
    _stamp = ""

    def utc_time(self, record: logging.LogRecord) -> str:
        """ISO 8601 UTC with milliseconds; the date part made once per second."""
        return self._time(record.created, record.msecs)

    def _time(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            self._second = second
        return f"{self._stamp}.{int(msecs):03d}Z"

    def access_line(self, created: float, level: int, access: dict[str, Any]) -> str:
        """What `format` makes of an access record: see `log_request`."""
        ms = 1000.0 * access["seconds"]
        message = "%d %s %s %.1fms" % (  # noqa: UP031 - as the record's
            access["status"],
            access["method"],
            access["uri"],
            ms,
        )
        return json.dumps(
            {
                "time": self._time(created, _msecs(created)),
                "level": logging.getLevelName(level).lower(),
                "logger": "plp.access",
                "message": message,
                "status": access["status"],
                "method": access["method"],
                "uri": access["uri"],
                "ms": round(ms, 1),
            }
        )

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


def _msecs(created: float) -> float:
    return int((created - int(created)) * 1000) + 0.0  # as logging.LogRecord computes it


class _Direct:
    """The access line written straight to plp's own handler, skipping `logging`'s record,
    logger and handler chain: about two thirds of the cost of a line (each request has one).

    Used only while that handler is the only one a `plp.access` record would reach, with no
    filters, so the bytes written are those `logging` would write (tests/test_log.py
    compares them). Anything else (a test's capture handler, a changed level) takes the
    ordinary path.
    """

    def __init__(self, handler: logging.StreamHandler, formatter: TextFormatter | JsonFormatter):
        self.handler = handler
        self.formatter = formatter
        self.root = logging.getLogger()
        self.parent = logging.getLogger("plp")

    def usable(self) -> bool:
        return (
            self.root.handlers == [self.handler]
            and not access_log.handlers
            and not self.parent.handlers
            and access_log.propagate
            and self.parent.propagate
            and not (access_log.filters or self.parent.filters or self.root.filters)
            and not self.handler.filters
        )

    def write(self, level: int, access: dict[str, Any]) -> None:
        if level < self.handler.level:
            return
        line = self.formatter.access_line(time.time(), level, access)
        handler = self.handler
        try:
            with handler.lock:  # a line from another thread must not interleave with this one
                handler.stream.write(line + handler.terminator)
                handler.stream.flush()
        except Exception:  # as logging.Handler.handleError: a broken stream stops no request
            pass


_direct: _Direct | None = None


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Send logs to stderr in the chosen format; replaces handlers set earlier."""
    global _direct
    handler = logging.StreamHandler(sys.stderr)
    formatter: TextFormatter | JsonFormatter
    if fmt == "json":
        formatter = JsonFormatter()
    else:
        formatter = TextFormatter(TextFormatter.FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _direct = _Direct(handler, formatter)
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
        access = {"status": status, "method": method, "uri": uri, "seconds": seconds}
        if _direct is not None and _direct.usable():
            _direct.write(level, access)
        else:
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
