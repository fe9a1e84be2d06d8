"""Baseline: a naive Tornado chat broadcast, `write_message` per socket (no plp code at all).

`python bench/baseline_broadcast.py PORT` speaks enough of plp's /ws/chat protocol for the
load worker (hello, join/joined, send -> message to everyone in the channel), with no
authentication, storage or limits. Fan-out is what a first Tornado chat does: the event
dict goes to `write_message` once per subscriber, which encodes and frames it each time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from typing import Any

import tornado.web
import tornado.websocket

CHANNELS: dict[int, set[ChatSocket]] = {}
USER = {"id": 1, "username": "bench", "displayName": "Bench", "role": "student"}
counter = 0


class ChatSocket(tornado.websocket.WebSocketHandler):
    """One chat connection."""

    def open(self) -> None:
        self.channels: set[int] = set()
        self.write_message({"type": "hello", "user": USER})

    def on_message(self, message: str | bytes) -> None:
        global counter
        data: dict[str, Any] = json.loads(message)
        channel = data.get("channel")
        if data.get("type") == "join" and isinstance(channel, int):
            CHANNELS.setdefault(channel, set()).add(self)
            self.channels.add(channel)
            self.write_message({"type": "joined", "channel": channel})
        elif data.get("type") == "send" and channel in self.channels:
            counter += 1
            event = {
                "type": "message",
                "channel": channel,
                "message": {
                    "id": counter,
                    "author": USER,
                    "text": str(data.get("text", "")).strip(),
                    "createdAt": dt.datetime.now(dt.UTC).isoformat(),
                },
            }
            for sub in CHANNELS.get(channel, ()):
                sub.write_message(event)

    def on_close(self) -> None:
        for channel in getattr(self, "channels", ()):
            CHANNELS.get(channel, set()).discard(self)


class Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"status": "ok"})


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/ws/chat", ChatSocket), (r"/healthz", Health)])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
