"""The Kite ticker websocket (`wss://ws.kite.trade` twin): auth on upgrade, subscriptions, LVC,
heartbeats, change-driven binary ticks, and fault injection.

Behaviour, with the choice made where Kite documents none:
- a bad/expired api_key:access_token fails the upgrade with HTTP 403 (kiteconnect logs
  "upgrade failed (403 - Forbidden)");
- a 4th concurrent connection for one api_key fails the upgrade with HTTP 429: Kite documents
  3 connections per key only as a soft limit, so this "refuse at the door" is our choice;
- subscribing past 3000 instruments sends the text error "Can't subscribe to more than 3000
  instruments." and ignores that whole message; the connection stays up;
- subscribe sets quote mode for new tokens and sends each a cached last tick (LVC); a mode
  message also sends the LVC in the new mode; ltp-mode rows tick only when the price changes;
- with nothing to send for a second the server sends a 1-byte heartbeat;
- a slow reader whose unsent backlog passes `max_backlog_bytes` is disconnected.
Packets are encoded by `tick_assets.sources.kite.codec.encode_frames`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from itertools import count

import numpy as np
from aiohttp import WSMsgType, web

from tick_assets.sim.clock import SimClock
from tick_assets.sim.kite.auth import KiteAuth
from tick_assets.sim.kite.market import LiveMarket
from tick_assets.sources.kite.codec import encode_frames
from tick_assets.sources.kite.limits import (
    HEARTBEAT_INTERVAL_S,
    MAX_CONNECTIONS_PER_API_KEY,
    MAX_INSTRUMENTS_PER_CONNECTION,
    SUBSCRIBE_LIMIT_ERROR,
)
from tick_assets.sources.kite.schema import MODES

HEARTBEAT = b"\x00"
# what a queued message is, for the counters
DATA, LVC, TEXT, MALFORMED_FRAME = range(4)
MAX_CATCHUP_BATCHES = 5
_MODE_NAMES = np.array(MODES, dtype=object)
_QUOTE = MODES.index("quote")
_LTP = MODES.index("ltp")


@dataclass
class Counters:
    """What the server did on one connection, for accounting against what a client saw."""

    frames_sent: int = 0  # binary market-data frames (not heartbeats, not malformed)
    packets_sent: int = 0  # packets inside those frames
    lvc_packets_sent: int = 0  # of which cached last ticks sent on subscribe / mode
    heartbeats_sent: int = 0
    texts_sent: int = 0
    malformed_frames_sent: int = 0
    bytes_sent: int = 0
    packets_suppressed: int = 0  # packets not sent because the connection was stalled
    messages_received: int = 0
    invalid_messages: int = 0


@dataclass
class Connection:
    id: int
    api_key: str
    rows: int
    ws: web.WebSocketResponse | None = None
    transport: asyncio.BaseTransport | None = None
    connected_at: float = field(default_factory=time.time)
    closed_at: float | None = None
    close_reason: str | None = None
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.subscribed = np.zeros(self.rows, dtype=bool)
        self.mode = np.full(self.rows, _QUOTE, dtype=np.int8)
        self.last_ltp = np.full(self.rows, np.nan)
        self.unknown: set[int] = set()
        self.pending: list[str] = []  # requests received while stalled
        self.queue: deque[tuple[bool, bytes | str, int, int]] = deque()
        self.backlog = 0
        self.wakeup = asyncio.Event()
        self.stall_until = 0.0
        self.last_sent = time.monotonic()

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self.stall_until

    def subscription_count(self) -> int:
        return int(self.subscribed.sum()) + len(self.unknown)

    def describe(self) -> dict:
        modes = {
            name: int((self.subscribed & (self.mode == i)).sum()) for i, name in enumerate(MODES)
        }
        return {
            "id": self.id,
            "api_key": self.api_key,
            "connected_at": self.connected_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "subscribed": self.subscription_count(),
            "modes": modes,
            "stalled": self.stalled,
            "backlog_bytes": self.backlog,
            **asdict(self.counters),
        }


class TickerHub:
    """All websocket connections of the Kite simulator and the broadcaster that feeds them."""

    def __init__(
        self,
        market: LiveMarket,
        auth: KiteAuth,
        clock: SimClock,
        packets_per_frame: int = 200,
        max_backlog_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.market, self.auth, self.clock = market, auth, clock
        self.packets_per_frame = packets_per_frame
        self.max_backlog_bytes = max_backlog_bytes
        self.active: dict[int, Connection] = {}
        self.history: deque[Connection] = deque(maxlen=1000)
        self._ids = count(1)
        self._next_batch: int | None = None
        self.batches_skipped = 0

    # --- websocket handler ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        api_key = request.query.get("api_key", "")
        access_token = request.query.get("access_token", "")
        if self.auth.check(api_key, access_token) is None:
            return web.Response(status=403, text="Forbidden: invalid api_key or access_token")
        live = sum(1 for c in self.active.values() if c.api_key == api_key)
        if live >= MAX_CONNECTIONS_PER_API_KEY:
            return web.Response(
                status=429,
                text=f"Too many connections: at most {MAX_CONNECTIONS_PER_API_KEY} per api_key",
            )
        conn = Connection(next(self._ids), api_key, len(self.market.universe))
        self.active[conn.id] = conn  # reserve the slot before awaiting the handshake
        self.history.append(conn)
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=16 * 1024 * 1024)
        conn.ws, conn.transport = ws, request.transport
        sender: asyncio.Task | None = None
        try:
            await ws.prepare(request)
            sender = asyncio.create_task(self._sender(conn))
            await self._reader(conn)
        finally:
            self._close(conn, conn.close_reason or "client closed")
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        return ws

    def _close(self, conn: Connection, reason: str) -> None:
        if conn.closed_at is None:
            conn.closed_at = time.time()
            conn.close_reason = reason
        self.active.pop(conn.id, None)
        conn.queue.clear()
        conn.backlog = 0
        conn.wakeup.set()

    async def _reader(self, conn: Connection) -> None:
        ws = conn.ws
        assert ws is not None
        while True:
            msg = await ws.receive()
            # A stalled connection keeps reading (so a client's close is noticed) but is
            # silent: no pongs, and requests wait until the stall ends.
            if msg.type == WSMsgType.TEXT:
                conn.counters.messages_received += 1
                if conn.stalled:
                    conn.pending.append(msg.data)
                else:
                    self._on_text(conn, msg.data)
            elif msg.type == WSMsgType.PING:
                if not conn.stalled:
                    await ws.pong(msg.data)
            elif msg.type == WSMsgType.BINARY:
                conn.counters.messages_received += 1
                conn.counters.invalid_messages += 1
            elif msg.type in (
                WSMsgType.CLOSE,
                WSMsgType.CLOSING,
                WSMsgType.CLOSED,
                WSMsgType.ERROR,
            ):
                return

    def _on_text(self, conn: Connection, text: str) -> None:
        try:
            message = json.loads(text)
            action, value = message["a"], message["v"]
        except (ValueError, TypeError, KeyError):
            conn.counters.invalid_messages += 1
            return
        if action == "subscribe" and isinstance(value, list):
            self._subscribe(conn, _tokens(value))
        elif action == "unsubscribe" and isinstance(value, list):
            tokens = _tokens(value)
            rows = self.market.universe.rows_of(np.array(tokens, dtype=np.int64))
            conn.subscribed[rows[rows >= 0]] = False
            conn.unknown.difference_update(tokens)
        elif (
            action == "mode"
            and isinstance(value, list)
            and len(value) == 2
            and value[0] in MODES
            and isinstance(value[1], list)
        ):
            rows = self.market.universe.rows_of(np.array(_tokens(value[1]), dtype=np.int64))
            rows = rows[(rows >= 0)]
            rows = rows[conn.subscribed[rows]]
            conn.mode[rows] = MODES.index(value[0])
            self._send_lvc(conn, rows)
        else:
            conn.counters.invalid_messages += 1

    def _subscribe(self, conn: Connection, tokens: list[int]) -> None:
        arr = np.array(tokens, dtype=np.int64)
        rows = self.market.universe.rows_of(arr)
        known = np.unique(rows[rows >= 0])
        unknown = set(arr[rows < 0].tolist())
        new = int((~conn.subscribed[known]).sum()) + len(unknown - conn.unknown)
        if conn.subscription_count() + new > MAX_INSTRUMENTS_PER_CONNECTION:
            self._enqueue_text(conn, json.dumps({"type": "error", "data": SUBSCRIBE_LIMIT_ERROR}))
            return
        fresh = known[~conn.subscribed[known]]
        conn.mode[fresh] = _QUOTE
        conn.subscribed[known] = True
        conn.unknown |= unknown
        self._send_lvc(conn, known)

    def _send_lvc(self, conn: Connection, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        cols = self.market.snapshot(rows, self.clock.now())
        modes = conn.mode[rows]
        conn.last_ltp[rows] = cols["last_price"]
        cols["mode"] = _MODE_NAMES[modes]
        self._enqueue_frames(conn, encode_frames(cols, self.packets_per_frame), lvc=True)

    # --- sending ----------------------------------------------------------------------------

    def _enqueue(
        self, conn: Connection, binary: bool, payload: bytes | str, packets: int, kind: int
    ) -> None:
        if conn.closed:
            return
        conn.queue.append((binary, payload, packets, kind))
        conn.backlog += len(payload)
        conn.wakeup.set()
        if conn.backlog > self.max_backlog_bytes:
            self._abort(conn, f"slow consumer: more than {self.max_backlog_bytes} bytes unsent")

    def _enqueue_frames(self, conn: Connection, frames: list[bytes], lvc: bool = False) -> None:
        for frame in frames:
            self._enqueue(conn, True, frame, frame[0] << 8 | frame[1], LVC if lvc else DATA)

    def _enqueue_text(self, conn: Connection, text: str) -> None:
        self._enqueue(conn, False, text, 0, TEXT)

    async def _sender(self, conn: Connection) -> None:
        ws = conn.ws
        assert ws is not None
        c = conn.counters
        try:
            while not ws.closed and not conn.closed:
                if conn.stalled:
                    await asyncio.sleep(min(0.05, conn.stall_until - time.monotonic()))
                    if not conn.stalled:
                        conn.last_sent = time.monotonic()
                        pending, conn.pending = conn.pending, []
                        for text in pending:
                            self._on_text(conn, text)
                    continue
                if not conn.queue:
                    conn.wakeup.clear()
                    wait = HEARTBEAT_INTERVAL_S - (time.monotonic() - conn.last_sent)
                    if wait <= 0:
                        await ws.send_bytes(HEARTBEAT)
                        c.heartbeats_sent += 1
                        c.bytes_sent += 1
                        conn.last_sent = time.monotonic()
                        continue
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(conn.wakeup.wait(), wait)
                    continue
                binary, payload, packets, kind = conn.queue.popleft()
                conn.backlog -= len(payload)
                if binary:
                    await ws.send_bytes(payload)  # type: ignore[arg-type]
                    if kind == MALFORMED_FRAME:
                        c.malformed_frames_sent += 1
                    else:
                        c.frames_sent += 1
                        c.packets_sent += packets
                        if kind == LVC:
                            c.lvc_packets_sent += packets
                else:
                    await ws.send_str(payload)  # type: ignore[arg-type]
                    c.texts_sent += 1
                c.bytes_sent += len(payload)
                conn.last_sent = time.monotonic()
        except ConnectionError as exc:
            self._close(conn, f"send failed: {exc.__class__.__name__}")

    # --- the broadcaster ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Publish market batches to subscribers at the market's batch cadence until `stop`."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.market.batches_per_second
        deadline = loop.time()
        while not stop.is_set():
            target = self.market.batch_at(self.clock.now())
            nxt = self._next_batch
            if nxt is None or target < nxt - 1:
                nxt = target
            elif target - nxt >= MAX_CATCHUP_BATCHES:
                self.batches_skipped += target - nxt - MAX_CATCHUP_BATCHES + 1
                nxt = target - MAX_CATCHUP_BATCHES + 1
            while nxt <= target:
                self.publish(nxt)
                nxt += 1
            self._next_batch = nxt
            deadline += interval
            delay = deadline - loop.time()
            if delay < 0:
                deadline = loop.time()
                delay = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def publish(self, batch: int) -> None:
        """Send one batch's change events to every connection subscribed to them."""
        targets = [c for c in self.active.values() if c.ws is not None and c.subscribed.any()]
        if not targets:
            return
        rows, cols = self.market.batch_ticks(batch)
        if len(rows) == 0:
            return
        for conn in targets:
            sel = conn.subscribed[rows]
            if conn.stalled:
                conn.counters.packets_suppressed += int(sel.sum())
                continue
            sub_rows = rows[sel]
            if len(sub_rows) == 0:
                continue
            modes = conn.mode[sub_rows]
            keep = _ltp_changes(conn, sub_rows, modes, cols["last_price"][sel])
            idx = np.flatnonzero(sel)[keep]
            if len(idx) == 0:
                continue
            subset = {k: v[idx] for k, v in cols.items()}
            subset["mode"] = _MODE_NAMES[modes[keep]]
            self._enqueue_frames(conn, encode_frames(subset, self.packets_per_frame))

    # --- faults and introspection (call on the loop thread) --------------------------------

    def targets(
        self, connection: int | None = None, api_key: str | None = None
    ) -> list[Connection]:
        return [
            c
            for c in self.active.values()
            if (connection is None or c.id == connection)
            and (api_key is None or c.api_key == api_key)
        ]

    def _abort(self, conn: Connection, reason: str) -> None:
        self._close(conn, reason)
        if conn.transport is not None:
            conn.transport.abort()

    def drop(self, connection: int | None = None, api_key: str | None = None) -> list[int]:
        """Cut the TCP connection with no close frame (the client sees 1006)."""
        hit = self.targets(connection, api_key)
        for conn in hit:
            self._abort(conn, "fault: drop")
        return [c.id for c in hit]

    def stall(
        self, seconds: float | None, connection: int | None = None, api_key: str | None = None
    ) -> list[int]:
        """Go silent without closing: no ticks, no heartbeats, no pongs for `seconds` (None =
        until the connection is dropped). Ticks due meanwhile are discarded and counted."""
        until = math.inf if seconds is None else time.monotonic() + float(seconds)
        hit = self.targets(connection, api_key)
        for conn in hit:
            conn.stall_until = until
            for binary, _payload, packets, _kind in conn.queue:
                conn.counters.packets_suppressed += packets if binary else 0
            conn.queue.clear()
            conn.backlog = 0
        return [c.id for c in hit]

    def malformed(
        self, frames: int = 1, connection: int | None = None, api_key: str | None = None
    ) -> list[int]:
        """Queue `frames` malformed binary frames (truncated, overrunning, unknown lengths...)."""
        hit = self.targets(connection, api_key)
        for conn in hit:
            for i in range(frames):
                self._enqueue(conn, True, MALFORMED[i % len(MALFORMED)], 0, MALFORMED_FRAME)
        return [c.id for c in hit]

    def stats(self) -> list[dict]:
        return [c.describe() for c in self.history]


def _tokens(values: list) -> list[int]:
    """Integer tokens only: Kite ignores tokens sent as strings (they give no ticks)."""
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32]


def _ltp_changes(
    conn: Connection, rows: np.ndarray, modes: np.ndarray, price: np.ndarray
) -> np.ndarray:
    """Mask of events to send: all quote/full ones, ltp ones only when the price changed."""
    keep = np.ones(len(rows), dtype=bool)
    ltp = modes == _LTP
    if not ltp.any():
        return keep
    idx = np.flatnonzero(ltp)
    order = idx[np.argsort(rows[idx], kind="stable")]
    r, p = rows[order], price[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = r[1:] != r[:-1]
    previous = np.where(first, conn.last_ltp[r], np.roll(p, 1))
    keep[order] = p != previous
    last = np.ones(len(order), dtype=bool)
    last[:-1] = r[1:] != r[:-1]
    conn.last_ltp[r[last]] = p[last]
    return keep


def _malformed_frames() -> tuple[bytes, ...]:
    ltp = struct.pack(">HHII", 1, 8, 408065, 157370)
    full_head = struct.pack(">HH", 1, 184) + bytes(range(184))
    return (
        full_head[:100],  # truncated: declares a 184-byte packet, ends early
        struct.pack(">HH", 3, 8) + ltp[4:],  # declares 3 packets, holds 1
        struct.pack(">HH", 1, 50) + b"\x01" * 50,  # unknown packet length 50
        b"\x00\x00\x00\x00\x00",  # zero packets
        b"\x00\x01\x00",  # too short to hold a packet
    )


MALFORMED = _malformed_frames()
