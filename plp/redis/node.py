"""Socket caps and presence shared by every plp process through Redis (SPEC §8, §11).

Each process is a *node* with a random id. It proves it is alive with a key `node:<id>`
that expires after `NODE_TTL` seconds unless its heartbeat (every `HEARTBEAT` seconds)
renews it. Everything a node adds to the shared counts is recorded under its id, so when a
node dies without cleaning up (crash, kill -9, network cut) its entries stop counting as
soon as its key expires, and the next heartbeat of any other node reaps them.

Keys, under the session store's prefix (`plp:` by default):

- `node:<node>`       liveness, with a TTL; `nodes`: set of node ids ever seen (for reaping).
- `ws:u:<user_id>`, `ws:a:<address>`: hash node -> that node's open sockets of the user /
                      address. A count is the sum over live nodes.
- `ws:n:<node>`       set of the `ws:*` keys the node has a field in.
- `pr:<channel>`      hash user id -> public user JSON, for users online in the channel.
- `pr:<channel>:<uid>` set of nodes where the user has a socket in the channel.
- `pr:n:<node>`       set of `<channel>:<uid>` the node has put into presence.

Every change is one Lua script (the `node_*.lua` files beside this module), so two nodes never
both decide "first socket" or "last socket". Presence changes are announced by the same
script, which PUBLISHes a `presence` frame on the chat broker's channel in the broker's own
format (`broker.event_pattern`), so every node (this one included) delivers it to its
sockets: exactly one `online` when a user's first socket in a channel anywhere joins, one
`offline` when the last one anywhere leaves.

Ordering: a node's changes go through one queue worked in order (batches pipelined on one
connection), so "leave then join again" can never reach Redis as "join then leave".

Redis unreachable: admission raises `SessionStoreUnavailable` (handshake 503) and the
join-time presence list raises it too (the socket closes with 1013). Changes that cannot be
written (a socket closing, a user leaving) are not retried one by one: the node marks itself
*dirty*, and as soon as Redis answers it rewrites all its entries from its own in-memory
truth in one script, announcing whatever changed meanwhile. The same resync runs when a
heartbeat finds the node's key had expired (it was reaped while cut off).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from ..sessions.base import SessionStoreUnavailable
from .broker import CHAT_CHANNEL, MESSAGE, NOBODY, event_pattern
from .client import DEFAULT_PREFIX, channel_name, connect, is_down, lua

log = logging.getLogger(__name__)

NODE_TTL = 30.0  # seconds a node counts as alive after its last heartbeat
HEARTBEAT = 10.0  # seconds between heartbeats (renew, reap dead nodes, resync if dirty)
BATCH = 256
CLOSE_TIMEOUT = 3.0  # seconds to finish queued writes at shutdown
# Broker-format origin of presence frames published by the scripts: matches no process,
# so every process (the publishing one too) delivers them.
SCRIPT_ORIGIN = "presence"
PRESENCE_EVENT = event_pattern(SCRIPT_ORIGIN, MESSAGE)

# Every script starts with node_prelude.lua (ARGV[1..5]: prefix, this node, the chat channel,
# PRESENCE_EVENT, NOBODY); the comment atop each file lists the rest.
_SCRIPTS = {
    name: lua("node_prelude", f"node_{name}")
    for name in ("acquire", "release", "pr_add", "pr_remove", "pr_list", "sync", "beat", "leave")
}


class HasTruth(Protocol):
    """What a resync needs from a part built on the node: its local state, as script args."""

    def truth(self) -> Any: ...


@dataclass(slots=True)
class _Op:
    script: str
    args: list[Any]
    # Awaited ops (admission, the presence list) get their result or exception here;
    # the others are fire-and-forget and are covered by a resync if they cannot be written.
    future: asyncio.Future | None = None
    on_success: Any = None


class RedisNode:
    """This process as a node: the ordered op queue, the heartbeat and the resync."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        node_ttl: float = NODE_TTL,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.prefix = prefix
        self.node = secrets.token_hex(8)
        self.node_ttl = node_ttl
        self.heartbeat = heartbeat
        self._client = connect(url)
        self.channel = channel_name(self._client, prefix, CHAT_CHANNEL)
        self._scripts = {
            name: self._client.register_script(source) for name, source in _SCRIPTS.items()
        }
        # Set by the counter and presence built on this node (shared.py): a resync asks
        # them for this node's truth.
        self.sockets: HasTruth | None = None
        self.presence: HasTruth | None = None
        self._queue: asyncio.Queue[_Op | None] | None = None
        self._worker: asyncio.Task | None = None
        self._beater: asyncio.Task | None = None
        self._dirty = True  # nothing written yet: the first batch writes the whole truth
        self._closed = False
        self._started = False
        self._synced = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this node (Redis must answer: SessionStoreUnavailable otherwise)."""
        if self._started or self._closed:
            return
        try:
            await self.beat()
            await self._resync()  # now, so the first changes are not coalesced
        except Exception as exc:
            if is_down(exc):
                raise SessionStoreUnavailable("cannot register this process in Redis") from exc
            raise
        self._started = True
        self._ensure_running()

    async def close(self) -> None:
        """Withdraw this node's entries (announcing offline) and stop; best effort."""
        if self._closed:
            return
        self._closed = True
        # No cancelling a task inside a Redis call (the client may swallow the cancellation):
        # the worker stops at a sentinel after writing what was queued before it.
        if self._worker is not None and self._queue is not None:
            # Queued changes are moot: the withdrawal below removes all of this node's entries.
            waiting = []
            while not self._queue.empty():
                op = self._queue.get_nowait()
                if op is not None and op.future is not None:
                    waiting.append(op)
            for op in waiting:
                self._queue.put_nowait(op)
            self._queue.put_nowait(None)
            await asyncio.wait([self._worker], timeout=CLOSE_TIMEOUT)
        if self._beater is not None:
            self._beater.cancel()
            await asyncio.wait([self._beater], timeout=CLOSE_TIMEOUT)
        self._beater = self._worker = None
        if self._queue is not None:
            while not self._queue.empty():
                op = self._queue.get_nowait()
                if op is not None and op.future is not None and not op.future.done():
                    op.future.set_exception(SessionStoreUnavailable("shutting down"))
        if not self._started and self._queue is None:
            await self._client.aclose()
            return  # never registered (Redis was down at start): nothing to withdraw
        try:
            await self._run("leave")
        except Exception as exc:
            log.warning("could not withdraw this process from Redis (%s)", type(exc).__name__)
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def _ensure_running(self) -> None:
        if self._closed:
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._worker = loop.create_task(self._work())
        if self._beater is None:
            self._beater = loop.create_task(self._beat_forever())

    # -- operations ------------------------------------------------------------------------

    def _args(self, *args: Any) -> list[Any]:
        return [self.prefix, self.node, self.channel, PRESENCE_EVENT, NOBODY, *args]

    async def _run(self, script: str, *args: Any) -> Any:
        return await self._scripts[script](args=self._args(*args))

    def submit(self, script: str, *args: Any, on_success: Any = None) -> None:
        """Queue a change; its effect is also in local state, so a resync can redo it."""
        if self._closed:
            return
        self._ensure_running()
        assert self._queue is not None
        self._queue.put_nowait(_Op(script, list(args), None, on_success))

    async def call(self, script: str, *args: Any, on_success: Any = None) -> Any:
        """Queue an operation and wait for its result (in order with every change before it)."""
        if self._closed:
            raise SessionStoreUnavailable("shutting down")
        self._ensure_running()
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(script, list(args), future, on_success))
        return await future

    def mark_dirty(self) -> None:
        self._dirty = True

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        stopping = False
        while not stopping:
            batch: list[_Op] = []
            item = await queue.get()
            while True:
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= BATCH or queue.empty():
                    break
                item = queue.get_nowait()
            if not batch:
                continue
            try:
                await self._write(batch)
            except Exception as exc:
                self._dirty = True
                if not is_down(exc):
                    log.exception("shared chat state: a Redis write failed")
                error = SessionStoreUnavailable(f"Redis cannot be reached ({type(exc).__name__})")
                for op in batch:
                    if op.future is not None and not op.future.done():
                        op.future.set_exception(error)

    async def _write(self, batch: list[_Op]) -> None:
        if self._dirty:
            # The resync writes the local truth, which already includes every queued
            # change: only the awaited operations still need to run.
            await self._resync()
            batch = [op for op in batch if op.future is not None]
        batch = [op for op in batch if op.script]
        if not batch:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for op in batch:
                await self._scripts[op.script](args=self._args(*op.args), client=pipe)
            results = await pipe.execute(raise_on_error=False)
        for op, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                log.error("shared chat state: script %s failed: %s", op.script, result)
                self._dirty = True
                if op.future is not None and not op.future.done():
                    op.future.set_exception(SessionStoreUnavailable("shared state failed"))
                continue
            # Run here, in queue order, so a resync never misses a slot just admitted.
            if op.on_success is not None:
                op.on_success(result)
            if op.future is not None and not op.future.done():
                op.future.set_result(result)

    async def _resync(self) -> None:
        truth: dict[str, Any] = {"ws": {}, "pr": []}
        if self.sockets is not None:
            truth["ws"] = self.sockets.truth()
        if self.presence is not None:
            truth["pr"] = self.presence.truth()
        self._dirty = False
        try:
            await self._run("sync", json.dumps(truth, separators=(",", ":"), ensure_ascii=False))
        except BaseException:
            self._dirty = True
            raise
        synced, self._synced = self._synced, True
        # The first write at start is routine; later ones follow an outage or a reaping.
        log.log(
            logging.INFO if synced else logging.DEBUG,
            "shared chat state written for this process (%d socket keys, %d presences)",
            len(truth["ws"]),
            len(truth["pr"]),
        )

    # -- heartbeat ---------------------------------------------------------------------------

    async def beat(self) -> None:
        """Renew this node, reap dead nodes; queue a resync if this node had been reaped."""
        lost = await self._run("beat", max(1, int(self.node_ttl * 1000)))
        if lost and self._started:
            log.warning("this process's Redis registration had expired; rewriting its state")
        if lost or self._dirty:
            self._dirty = True
            if self._started or self._queue is not None:
                self.kick()

    def kick(self) -> None:
        """Wake the worker so a pending resync runs now rather than with the next change."""
        if self._queue is not None and not self._closed:
            self._queue.put_nowait(_Op("", []))

    async def _beat_forever(self) -> None:
        failing = False
        # start() has just beaten; a node started lazily (first use) registers at once.
        delay = self.heartbeat if self._started else 0.0
        while not self._closed:
            await asyncio.sleep(delay)
            delay = self.heartbeat
            try:
                await self.beat()
                if failing:
                    log.info("shared chat state: Redis answers again")
                failing = False
            except Exception as exc:
                self._dirty = True
                if not failing:
                    log.warning(
                        "shared chat state: heartbeat failed (%s); retrying", type(exc).__name__
                    )
                failing = True
