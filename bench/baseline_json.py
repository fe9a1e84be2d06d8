"""Baseline: a bare Tornado JSON handler on the default asyncio loop (no plp code at all).

`python bench/baseline_json.py PORT` serves `GET /api/users/me` with a fixed JSON user, so
`bench/run.py` can compare plp's full request path with the least Tornado can do.
"""

from __future__ import annotations

import asyncio
import json
import sys

import tornado.web

USER = {
    "user": {
        "id": 1,
        "username": "bench",
        "displayName": "Bench",
        "role": "student",
        "createdAt": "2025-01-01T00:00:00Z",
    }
}


class MeHandler(tornado.web.RequestHandler):
    """The minimal handler: serialise a dict and finish."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(USER))


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/api/users/me", MeHandler), (r"/healthz", MeHandler)])
    app.listen(port, "127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
