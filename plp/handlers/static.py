"""Static files, gzip-compressed for clients that accept it.

URLs made by `static_url` carry `?v=<hash>` and are cached for ten years, so a browser
fetches each file once per deploy; that once, the CSS and scripts travel compressed (about a
third of their size). Each file is compressed once per version and kept in memory (the
static directory is small), so a request costs no compression. Range requests, files under
`MIN_LENGTH` and types that do not compress are served as they are. Both forms carry
`Vary: Accept-Encoding`, and the compressed one its own ETag.
"""

from __future__ import annotations

import gzip
import logging
from typing import Any

from .pages import StaticHandler as PlainStaticHandler

log = logging.getLogger(__name__)

COMPRESSIBLE = frozenset(
    {"text/css", "text/javascript", "application/javascript", "image/svg+xml", "text/plain"}
)
MIN_LENGTH = 1024  # smaller files gain less than the gzip header and the Vary costs
GZIP_LEVEL = 9  # once per file version, so the smallest output is worth the time
_compressed: dict[tuple[str, Any], bytes] = {}


def compressed(path: str, version: Any) -> bytes:
    """The gzip form of the file at `path`, made once per `version` (its modification time)."""
    key = (path, version)
    data = _compressed.get(key)
    if data is None:
        with open(path, "rb") as handle:
            # mtime=0: the same bytes (and ETag) from every process and every start.
            data = gzip.compress(handle.read(), compresslevel=GZIP_LEVEL, mtime=0)
        _compressed[key] = data
    return data


class StaticHandler(PlainStaticHandler):
    """plp's static files (security headers, 404s) with a cached gzip form."""

    _gzip: bytes | None = None
    _gzip_decided = False

    def gzip_body(self) -> bytes | None:
        """The compressed body when this response should be compressed, else None."""
        if not self._gzip_decided:
            self._gzip_decided = True
            headers = self.request.headers
            if (
                "gzip" in headers.get("Accept-Encoding", "")
                and "Range" not in headers
                and self.compressible()
                and super().get_content_size() >= MIN_LENGTH
            ):
                self._gzip = compressed(self.absolute_path, self.modified)
                # `get_content` stays the classmethod `static_url` versions files with; this
                # response alone reads the compressed bytes instead.
                self.get_content = self._gzip_content  # type: ignore[method-assign]
        return self._gzip

    def compressible(self) -> bool:
        return self.get_content_type().split(";")[0].strip() in COMPRESSIBLE

    def compute_etag(self) -> str | None:
        etag = super().compute_etag()
        if etag is not None and self.gzip_body() is not None:
            return etag[:-1] + '-gzip"'
        return etag

    def set_extra_headers(self, path: str) -> None:
        super().set_extra_headers(path)
        if self.compressible():
            self.set_header("Vary", "Accept-Encoding")
        if self.gzip_body() is not None:
            self.set_header("Content-Encoding", "gzip")

    def get_content_size(self) -> int:
        body = self.gzip_body()
        return len(body) if body is not None else super().get_content_size()

    def _gzip_content(
        self, abspath: str, start: int | None = None, end: int | None = None
    ) -> bytes:
        assert self._gzip is not None
        return self._gzip[start:end]
