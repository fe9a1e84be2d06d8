"""plp/handlers/static.py: static files over real HTTP, compressed for clients that accept it.

Each case fetches a versioned URL as the pages link it and checks the bytes a browser ends
up with: the gzip form decompresses to exactly the file, a client without gzip gets the
file as it is, a Range request gets its plain bytes, a small file is not compressed, both
forms say `Vary: Accept-Encoding`, carry different ETags, revalidate with 304, and keep the
ten-year cache and the security headers.
"""

from __future__ import annotations

import gzip
import re

import pytest
from tornado.httpclient import HTTPRequest

from plp.app import STATIC_PATH

CSS = (STATIC_PATH / "style.css").read_bytes()


async def fetch(http_client, base_url, path, **headers):
    request = HTTPRequest(base_url + path, headers=headers, decompress_response=False)
    return await http_client.fetch(request, raise_error=False)


async def versioned(http_client, base_url, name: str) -> str:
    """The URL the login page links for a static file (with its ?v= hash)."""
    page = (await fetch(http_client, base_url, "/login")).body.decode()
    found = re.search(r"/static/" + re.escape(name) + r"\?v=[0-9a-f]+", page)
    assert found, f"/login links no {name}"
    return found.group()


@pytest.mark.gen_test
async def test_css_is_gzipped_for_clients_that_accept_it(http_client, base_url):
    url = await versioned(http_client, base_url, "style.css")
    packed = await fetch(http_client, base_url, url, **{"Accept-Encoding": "gzip, deflate"})
    assert packed.code == 200
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(packed.body) == CSS
    assert len(packed.body) < len(CSS) / 2
    assert int(packed.headers["Content-Length"]) == len(packed.body)
    assert "max-age=315360000" in packed.headers["Cache-Control"]
    assert packed.headers["X-Content-Type-Options"] == "nosniff"
    plain = await fetch(http_client, base_url, url, **{"Accept-Encoding": "identity"})
    assert plain.code == 200 and plain.body == CSS
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    assert plain.headers["Etag"] != packed.headers["Etag"]
    # Each form revalidates against its own ETag.
    again = await fetch(
        http_client,
        base_url,
        url,
        **{"Accept-Encoding": "gzip", "If-None-Match": packed.headers["Etag"]},
    )
    assert again.code == 304
    other = await fetch(
        http_client,
        base_url,
        url,
        **{"Accept-Encoding": "identity", "If-None-Match": packed.headers["Etag"]},
    )
    assert other.code == 200 and other.body == CSS


@pytest.mark.gen_test
async def test_range_requests_and_small_files_are_served_plain(http_client, base_url):
    ranged = await fetch(
        http_client,
        base_url,
        "/static/style.css",
        **{"Accept-Encoding": "gzip", "Range": "bytes=0-9"},
    )
    assert ranged.code == 206 and ranged.body == CSS[:10]
    assert "Content-Encoding" not in ranged.headers
    icon = (STATIC_PATH / "favicon.svg").read_bytes()
    assert len(icon) < 1024
    small = await fetch(http_client, base_url, "/static/favicon.svg", **{"Accept-Encoding": "gzip"})
    assert small.code == 200 and small.body == icon
    assert "Content-Encoding" not in small.headers


@pytest.mark.gen_test
async def test_head_gives_the_length_of_what_get_sends(http_client, base_url):
    get = await fetch(http_client, base_url, "/static/chat/main.js", **{"Accept-Encoding": "gzip"})
    head = await http_client.fetch(
        HTTPRequest(
            base_url + "/static/chat/main.js",
            method="HEAD",
            headers={"Accept-Encoding": "gzip"},
            decompress_response=False,
        ),
        raise_error=False,
    )
    assert get.code == head.code == 200
    assert head.headers["Content-Encoding"] == "gzip"
    assert head.headers["Content-Length"] == str(len(get.body))
    assert gzip.decompress(get.body) == (STATIC_PATH / "chat" / "main.js").read_bytes()
