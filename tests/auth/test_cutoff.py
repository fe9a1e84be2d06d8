"""The per-user session cut-off written by another process (plp/auth/cutoff.py): HTTP refuses
older sessions at once, a chat send closes its socket, and the watcher closes idle sockets."""

from __future__ import annotations

import datetime as _dt

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from plp.auth.cutoff import CutoffWatcher
from tests.support import body, signed_in
from tests.support.ws import Peer, ws_url


def moment(seconds: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC)


async def open_peer(base_url: str, cookie: str, user) -> Peer:
    conn = await websocket_connect(HTTPRequest(ws_url(base_url), headers={"Cookie": cookie}))
    peer = Peer(conn, user, cookie)
    await peer.expect("hello")
    return peer


@pytest.mark.gen_test
async def test_http_refuses_sessions_begun_before_the_cut_off(make_client, make_user, ctx, clock):
    client = await signed_in(make_client, make_user, "kid")
    kid = (await ctx.db.get_credentials("kid"))[0]
    other = await signed_in(make_client, make_user, "other")
    clock.advance(1)
    # As the command line does it: straight in the database, nothing in this process told.
    await ctx.db.cut_sessions(kid.id, moment(clock.now))
    assert (await client.fetch("/api/users/me")).code == 401
    assert await ctx.store.list_for_user(kid.id) == []  # ended, not only refused
    assert (await other.fetch("/api/users/me")).code == 200
    fresh = make_client()
    assert (await fresh.login("kid")).code == 200
    assert body(await fresh.fetch("/api/users/me"))["user"]["username"] == "kid"


@pytest.mark.gen_test
async def test_send_after_a_cut_off_closes_the_socket(
    http_server, make_user, session_cookie, base_url, ctx, clock
):
    kid = await make_user("kid")
    peer = await open_peer(base_url, await session_cookie(kid.id), kid)
    try:
        await peer.join(1)
        clock.advance(1)
        await ctx.db.cut_sessions(kid.id, moment(clock.now))
        await peer.send({"type": "send", "channel": 1, "text": "still here?"})
        assert await peer.closed() == 4001
    finally:
        peer.conn.close()
    assert await ctx.db.list_messages(1) == []


@pytest.mark.gen_test
async def test_watcher_closes_idle_sockets_of_cut_off_users_only(
    http_server, make_user, session_cookie, base_url, ctx, clock
):
    kid = await make_user("kid")
    other = await make_user("other")
    watcher = CutoffWatcher(ctx)
    watcher.seen = await ctx.db.latest_sessions_cut()
    kid_peer = await open_peer(base_url, await session_cookie(kid.id), kid)
    other_peer = await open_peer(base_url, await session_cookie(other.id), other)
    try:
        assert await watcher.poll() == 0
        clock.advance(1)
        await ctx.db.cut_sessions(kid.id, moment(clock.now))
        await session_cookie(kid.id)  # a session begun at the cut-off: not cut
        assert await watcher.poll() == 1
        assert await kid_peer.closed() == 4001
        await other_peer.roundtrip()
        assert await watcher.poll() == 0  # each cut-off is handled once
        assert len(await ctx.store.list_for_user(kid.id)) == 1
    finally:
        kid_peer.conn.close()
        other_peer.conn.close()
