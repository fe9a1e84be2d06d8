"""The shared chat heartbeat (plp/chat/heartbeat.py): pings every 25 s, silence limit 60 s.

The schedule is checked as numbers (`timing`); the behaviour with real WebSocket clients on
the served app at fast settings: a peer that answers pings stays open through many visits,
a closed socket leaves the heartbeat and its timer stops, and a socket whose visit fails
does not stop the visits of the others.
"""

from __future__ import annotations

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from plp.chat.heartbeat import MIN_TICK, SLOTS, Heartbeat, timing
from plp.handlers.chat import heartbeat
from tests.support import wait_until
from tests.support.ws import Peer, ws_url


def test_timing_of_the_contract():
    period, beats = timing(25, 60)
    # A visit every 12.5 s: a silent peer is dropped at most 12.5 s after its 60 s, and a
    # ping goes every second visit, 25 s apart.
    assert (period, beats) == (12.5, 2)
    assert period <= 60 / 4 and period * beats == 25


def test_timing_without_pings_and_at_test_speeds():
    period, beats = timing(0, 60)
    assert beats == 0 and period == 15  # silence still checked, no pings
    period, beats = timing(0.05, 0.4)
    assert (period, beats) == (SLOTS * MIN_TICK, 1)  # the smallest round; a ping each visit
    assert period <= 0.4 / 2


async def _open(base_url: str, cookie: str) -> Peer:
    conn = await websocket_connect(HTTPRequest(ws_url(base_url), headers={"Cookie": cookie}))
    peer = Peer(conn, None, cookie)
    await peer.expect("hello")
    return peer


@pytest.mark.gen_test(timeout=30)
async def test_a_peer_answering_pings_stays_open(
    app, http_server, base_url, make_user, session_cookie, ctx
):
    app.settings.update(websocket_ping_interval=0.05, websocket_ping_timeout=0.4)
    user = await make_user("lively")
    peer = await _open(base_url, await session_cookie(user.id))  # Tornado's client pongs
    beat = heartbeat(app)
    assert len(beat) == 1
    (slot,) = [s for s in beat._slots if s]
    # Ten visits span more than twice the silence limit: only the pongs keep it open.
    await wait_until(lambda: next(iter(slot.values()), 0) >= 10, what="ten heartbeat visits")
    assert ctx.hub.count() == 1
    await peer.roundtrip()  # the socket still answers
    peer.close()
    await wait_until(lambda: len(beat) == 0, what="the socket to leave the heartbeat")
    assert beat._timer is None  # nothing ticks while no socket is open
    assert ctx.hub.count() == 0


class _Sock:
    """A socket as the heartbeat sees it; `broken` ones raise on every visit."""

    def __init__(self, broken: bool = False) -> None:
        self.last_heard = 0.0
        self.beat_slot = -1
        self.broken = broken
        self.visits: list[tuple[bool, bool]] = []

    def beat(self, ping: bool, silent: bool) -> None:
        self.visits.append((ping, silent))
        if self.broken:
            raise RuntimeError("a broken socket")


@pytest.mark.gen_test(timeout=20)
async def test_a_failing_socket_does_not_stop_the_others(io_loop):
    beat = Heartbeat(lambda: (0.05, 0.4))
    broken, sound = _Sock(broken=True), _Sock()
    now = io_loop.time()
    broken.last_heard = sound.last_heard = now + 3600  # not silent during the test
    beat.add(broken)
    beat.add(sound)
    await wait_until(lambda: len(sound.visits) >= 3 and len(broken.visits) >= 3)
    assert all(ping and not silent for ping, silent in sound.visits)
    sound.last_heard = now - 10  # silent from now on: the next visit says so
    await wait_until(lambda: sound.visits[-1][1], what="a visit that finds it silent")
    beat.remove(broken)
    beat.remove(sound)
    assert len(beat) == 0 and beat._timer is None
