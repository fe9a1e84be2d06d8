"""plp/app.py: routes with a literal path are found by a dict lookup, with the same result
as Tornado's ordered scan."""

from __future__ import annotations

import pytest
import tornado.web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from plp.app import exact_routes


class First(tornado.web.RequestHandler):
    def get(self, *args: str) -> None:
        self.write("first")


class Second(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("second")


def test_a_literal_path_shadowed_by_an_earlier_pattern_is_left_to_the_scan():
    app = tornado.web.Application(
        [(r"/a/(.*)", First), (r"/a/b", Second), (r"/c", Second), (r"/d\.txt", Second)]
    )
    exact = exact_routes(app.wildcard_router.rules)
    assert list(exact) == ["/c"]  # /a/b is First's; /d\.txt is a pattern, not a literal
    assert exact["/c"].target is Second


def test_the_first_of_two_equal_literals_wins_as_in_the_scan():
    app = tornado.web.Application([(r"/c", First), (r"/c", Second)])
    assert exact_routes(app.wildcard_router.rules)["/c"].target is First


def test_every_exact_route_of_plp_is_the_one_the_scan_finds(app):
    assert "/api/users/me" in app.exact and "/healthz" in app.exact
    for path, rule in app.exact.items():
        request = HTTPServerRequest(
            start_line=RequestStartLine("GET", path + "?q=1", "HTTP/1.1"),
            headers=HTTPHeaders({"Host": "localhost"}),
        )
        scanned = app.default_router.find_handler(request)
        assert scanned is not None and scanned.handler_class is rule.target, path


@pytest.mark.gen_test
async def test_requests_reach_the_same_handlers(client):
    me = await client.fetch("/api/users/me")
    assert me.code == 401  # the API's own refusal, not the not-found page
    assert (await client.fetch("/healthz?x=1")).code == 200
    missing = await client.fetch("/healthz/")
    assert missing.code == 404
