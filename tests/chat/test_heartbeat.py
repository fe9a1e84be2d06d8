"""The shared chat heartbeat (plp/chat/heartbeat.py): pings every 25 s, silence limit 60 s.

The schedule is checked as numbers (`visit_period`, `verdict`): a dead peer is pinged and
dropped soon after 60 s, a peer that answers never is, and a loop too busy to ping on time
does not cost a live peer its socket. With real WebSocket clients on the served app at
fast settings: a peer that answers pings stays open through many of them, a closed socket
leaves the heartbeat and its timer stops, and a socket whose visit fails does not stop the
visits of the others.
"""

from __future__ import annotations

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from plp.chat.heartbeat import MIN_TICK, SLOTS, Heartbeat, verdict, visit_period
from plp.handlers.chat import heartbeat
from tests.support import wait_until
from tests.support.ws import Peer, ws_url


def test_visit_period_of_the_contract():
    # A visit every 12.5 s: a ping every second visit, 25 s apart; 4.8 visits per 60 s.
    assert visit_period(25, 60) == 12.5
    assert visit_period(0, 60) == 15  # no pings: silence still checked
    assert visit_period(0.05, 0.4) == SLOTS * MIN_TICK  # test speeds: the smallest round


def _simulate(visits, heard_at, interval=25.0, silence=60.0):
    """Run `verdict` over visit times for a socket opened at 0; (pings, drop time or None).
    `heard_at(t)` is when the peer was last heard at time t."""
    pinged, asked, pings = 0.0, 0.0, []
    for now in visits:
        action, pinged, asked = verdict(now, heard_at(now), pinged, asked, interval, silence)
        if action == "drop":
            return pings, now
        if action == "ping":
            pings.append(now)
    return pings, None


def test_a_dead_peer_is_pinged_every_25_s_and_dropped_soon_after_60_s():
    visits = [5 + 12.5 * i for i in range(20)]
    pings, dropped = _simulate(visits, heard_at=lambda now: 0.0)
    assert pings[:2] == [30.0, 55.0] and all(
        b - a == 25 for a, b in zip(pings, pings[1:], strict=False)
    )
    assert dropped is not None and 60 < dropped <= 60 + 2 * 12.5


def test_a_peer_that_answers_is_never_dropped():
    # It answers each ping at once: heard = the last ping at or before now.
    visits = [5 + 12.5 * i for i in range(40)]
    pings: list[float] = []

    def heard(now: float) -> float:
        return max([p for p in pings if p <= now] or [0.0])

    pinged, asked = 0.0, 0.0
    for now in visits:
        action, pinged, asked = verdict(now, heard(now), pinged, asked, 25.0, 60.0)
        assert action != "drop"
        if action == "ping":
            pings.append(now)
    assert len(pings) >= 18


def test_a_loop_too_busy_to_ping_does_not_drop_a_live_peer():
    # The first visit comes 90 s after the socket opened (the loop was swamped): the peer is
    # "silent" only because nobody asked. It is pinged, and has time to answer.
    action, pinged, asked = verdict(90.0, 0.0, 0.0, 0.0, 25.0, 60.0)
    assert action == "ping" and asked == 90.0
    action, pinged, asked = verdict(91.0, 0.0, pinged, asked, 25.0, 60.0)
    assert action == "wait"
    action, _, asked = verdict(92.0, 91.5, pinged, asked, 25.0, 60.0)  # the pong came
    assert action == "wait" and asked == 0.0
    # Had it not answered within 35 s (60 - 25) of that ping, it would go.
    assert verdict(126.0, 0.0, 90.0, 90.0, 25.0, 60.0)[0] == "drop"


def test_without_pings_silence_alone_drops():
    assert verdict(61.0, 0.0, 0.0, 0.0, 0.0, 60.0)[0] == "drop"
    assert verdict(59.0, 0.0, 0.0, 0.0, 0.0, 60.0)[0] == "wait"


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
    # Pings went out at least 8 times (more than 3 silence limits): only the pongs keep it.
    seen: set[float] = set()

    def pinged_often() -> bool:
        seen.update(pinged for pinged, _ in slot.values())
        return len(seen) >= 8

    await wait_until(pinged_often, what="eight heartbeat pings")
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
