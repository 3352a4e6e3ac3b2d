"""Capture engine parts on their own: backoff, inbox spill, cached-tick dedupe, latency, alerts."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from tick_assets.calendars import IST
from tick_assets.capture.backoff import Backoff
from tick_assets.capture.counters import ShardCounters
from tick_assets.capture.inbox import Event, Inbox, Sent
from tick_assets.capture.latency import Histogram, LatencyRecorder, read_latency
from tick_assets.capture.notify import Alert, AlertDispatcher, WebhookNotifier
from tick_assets.capture.pipeline import Batch, TickPipeline
from tick_assets.sources.kite.codec import encode_frames
from tick_assets.sources.kite.stream import KiteCredentials, KiteStream

T1, T2 = 408065, 738561  # NSE equities (segment 1)


# --- backoff -------------------------------------------------------------------------------------


def test_backoff_grows_to_the_cap_with_jitter_and_never_reaches_zero():
    b = Backoff(base=0.5, cap=8, seed=1)
    delays = [b.next() for _ in range(12)]
    ceilings = [min(8, 0.5 * 2**i) for i in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays) <= 8 and min(delays) >= 0.25
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter: capped delays still differ
    b.reset()
    assert b.next() <= 0.5
    with pytest.raises(ValueError):
        Backoff(base=0, cap=1)


# --- inbox ---------------------------------------------------------------------------------------


def test_inbox_spills_past_its_bound_and_keeps_arrival_order(tmp_path):
    inbox = Inbox(tmp_path / "spill.bin", max_bytes=1000)
    produced, consumed = [], []

    def produce():
        for i in range(5000):
            payload = (i.to_bytes(4, "big") * 50) if i % 10 else f"text {i}"
            item = (i, i, 7, payload)
            produced.append(item)
            inbox.put(item)
            if i % 500 == 0:
                inbox.put((i, i, 7, Event("connected", {"n": i})))
                produced.append((i, i, 7, Event("connected", {"n": i})))

    t = threading.Thread(target=produce)
    t.start()
    while t.is_alive() or inbox.pending:
        consumed.extend(inbox.drain())
    consumed.extend(inbox.drain())
    assert consumed == produced
    assert inbox.spilled_items > 1000  # most of it went through the spill file
    assert inbox.drained_spill_items == inbox.spilled_items
    assert not inbox.spilling  # caught up: memory again
    inbox.close()
    assert not (tmp_path / "spill.bin").exists()


# --- cached ticks (Kite LVC) --------------------------------------------------------------------


def _frame(rows: list[dict]) -> bytes:
    columns = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return encode_frames(columns)[0]


def _tick(token: int, price: float, second: int, mode: str = "full", bid_qty: int = 10) -> dict:
    return {
        "instrument_token": token,
        "mode": mode,
        "last_price": price,
        "close": 100.0,
        "volume_traded": 1000 + second,
        "exchange_timestamp": np.datetime64(1_795_000_000 + second, "s"),
        "last_trade_time": np.datetime64(1_795_000_000 + second, "s"),
        "bid_price_1": price - 0.05,
        "bid_quantity_1": bid_qty,
        "bid_orders_1": 1,
    }


class _Feed:
    """Feeds the writer's pipeline the way a connection does: subscribe, then messages."""

    def __init__(self) -> None:
        self.adapter = KiteStream("ws://127.0.0.1:1/ws", "full")
        self.counters = ShardCounters()
        self.pipeline = TickPipeline(self.adapter, self.counters, [T1, T2])
        self.t = 0

    def send(self, frames: list[bytes], subscribe: bool = False):
        n = len(frames)
        self.t += n
        received = [1_795_000_000_000_000_000 + 1000 * i for i in range(self.t, self.t + n)]
        batch = Batch(list(frames), received, [0] * n, [1] * n, [])
        if subscribe:
            batch.subscribes.append((0, [T1, T2]))
        return self.pipeline.process(batch, "s").table.to_pylist()


def test_cached_ticks_after_a_reconnect_are_not_journaled_twice():
    feed = _Feed()
    a, b = _tick(T1, 101.0, 5), _tick(T2, 202.0, 5)
    lvc_quote = _frame([{**a, "mode": "quote"}, {**b, "mode": "quote"}])
    first = feed.send([lvc_quote, _frame([a, b]), _frame([_tick(T1, 101.5, 6)])], subscribe=True)
    # the quote-mode LVC is superseded by the full one; both full LVCs are new, then a live tick
    assert [(r["instrument_token"], r["mode"], r["last_price"]) for r in first] == [
        (T1, "full", 101.0), (T2, "full", 202.0), (T1, "full", 101.5)]  # fmt: skip
    last_a = _tick(T1, 101.5, 6)
    # reconnect: T1 did not change (its LVC repeats the last tick), T2 changed during the gap
    changed_b = _tick(T2, 203.0, 9)
    again = feed.send(
        [_frame([{**last_a, "mode": "quote"}, {**changed_b, "mode": "quote"}]),
         _frame([last_a, changed_b]), _frame([_tick(T1, 102.0, 10)])],
        subscribe=True,
    )  # fmt: skip
    assert [(r["instrument_token"], r["last_price"]) for r in again] == [(T2, 203.0), (T1, 102.0)]
    c = feed.counters
    assert (c.cached_superseded, c.duplicates) == (4, 1)
    assert c.packets_decoded == len(first) + len(again) + 5


def test_a_live_tick_before_the_mode_change_is_kept_and_same_second_ticks_are_not_merged():
    feed = _Feed()
    a = _tick(T1, 101.0, 5)
    feed.send([_frame([a])], subscribe=False)  # an earlier connection's tick
    premode = {**_tick(T1, 101.2, 7), "mode": "quote"}
    rows = feed.send(
        [_frame([{**a, "mode": "quote"}]), _frame([premode]), _frame([_tick(T1, 101.2, 7)])],
        subscribe=True,
    )
    # quote LVC superseded; the live quote tick kept; the full LVC adds depth, so it is kept
    assert [(r["mode"], r["last_price"]) for r in rows] == [("quote", 101.2), ("full", 101.2)]
    # two live ticks in the same second with the same price, differing only in depth: both kept
    rows = feed.send([_frame([_tick(T1, 101.3, 8, bid_qty=10), _tick(T1, 101.3, 8, bid_qty=11)])])
    assert [r["bid_quantity_1"] for r in rows] == [10, 11]
    assert feed.counters.duplicates == 0


def test_dedupe_memory_survives_a_restart_through_the_latest_ticks():
    first = _Feed()
    a = _tick(T1, 101.0, 5)
    first.send([_frame([{**a, "mode": "quote"}]), _frame([a])], subscribe=True)
    restarted = _Feed()
    restarted.pipeline.seed(first.pipeline.latest.table)
    rows = restarted.send([_frame([{**a, "mode": "quote"}]), _frame([a])], subscribe=True)
    assert rows == [] and restarted.counters.duplicates == 1


def test_kite_stream_requests_and_errors():
    stream = KiteStream("wss://ws.kite.trade", "full")
    request = stream.connect_request(KiteCredentials("key1", "secret-token"))
    assert request.url == "wss://ws.kite.trade?api_key=key1&access_token=secret-token"
    assert "secret-token" not in repr(request) and "secret-token" not in repr(
        KiteCredentials("key1", "secret-token")
    )
    sub, mode = (json.loads(m) for m in stream.subscribe_messages([1, 2]))
    assert sub == {"a": "subscribe", "v": [1, 2]} and mode == {"a": "mode", "v": ["full", [1, 2]]}
    with pytest.raises(ValueError, match="at most 3000"):
        stream.subscribe_messages(range(1, 3002))
    with pytest.raises(ValueError, match="mode"):
        KiteStream("wss://ws.kite.trade", "depth")


# --- latency -------------------------------------------------------------------------------------


def test_latency_histogram_percentiles_are_close_and_never_flattering():
    rng = np.random.default_rng(0)
    values = rng.lognormal(np.log(50e6), 0.5, 100_000).astype(np.int64)  # ~50 ms
    h = Histogram()
    h.add(values)
    for q in (0.5, 0.99):
        exact = np.quantile(values, q)
        got = h.quantile_ns(q)
        assert exact <= got <= exact * 1.011


def test_latency_is_written_per_minute(tmp_path):
    rec = LatencyRecorder("s", tmp_path / "latency.jsonl")
    minute = 60_000_000_000
    base = 29_916_666 * minute  # 2026-11-20 UTC
    received = np.array([base + 1, base + 2, base + minute + 5])
    exchange = np.array([base - 500_000_000, -1, base + minute - 1_000_000_000])
    rec.add(received, exchange, np.array([10_000_000, 20_000_000, 30_000_000]))
    lines = read_latency(tmp_path / "latency.jsonl")
    assert len(lines) == 1 and lines[0]["ticks"] == 2  # the first minute is over
    assert lines[0]["exchange_to_received_ms"]["count"] == 1
    rec.close()
    lines = read_latency(tmp_path / "latency.jsonl")
    assert [line["ticks"] for line in lines] == [2, 1]
    assert 29.9 < lines[1]["received_to_journaled_ms"]["p99"] <= 30.3


# --- alerts --------------------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: list = []
    statuses: list = []  # answer for each request in turn (then 200)

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).statuses.pop(0) if type(self).statuses else 200)
        self.end_headers()

    def log_message(self, *args):  # keep test output quiet
        return


@pytest.fixture
def webhook():
    _Hook.received = []
    _Hook.statuses = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/secret-path", _Hook
    server.shutdown()


def test_webhook_posts_json_and_failures_are_counted_not_fatal(webhook, caplog):
    url, hook = webhook
    hook.statuses = [200, 500]
    dispatcher = AlertDispatcher([WebhookNotifier(url)])
    dispatcher.alert(Alert("token_rejected", "kite", "s1", "log in again"))
    dispatcher.alert(Alert("shard_down", "kite", "s1", "down for 31 s"))
    dispatcher.close()
    assert [body["kind"] for _, body in hook.received] == ["token_rejected", "shard_down"]
    content_type, body = hook.received[0]
    assert content_type == "application/json"
    assert body["shard"] == "s1" and body["text"] == "[kite/s1] log in again"
    assert dispatcher.failures == 1 and "HTTP 500" in caplog.text
    assert "secret-path" not in caplog.text  # a webhook URL is never logged
    with pytest.raises(ValueError):
        WebhookNotifier("ftp://example")


def test_a_sent_request_and_events_survive_the_spill_file(tmp_path):
    inbox = Inbox(tmp_path / "spill.bin", max_bytes=1)
    items = [
        (1, 2, 3, Sent('{"a":"subscribe"}')),
        (4, 5, 6, Event("disconnected", {"stall": True})),
    ]
    for item in items:
        inbox.put(item)
    assert inbox.spilling and inbox.drain() == items


def test_a_linear_clock_follows_the_simulators_switch_to_real_time(monkeypatch):
    from tick_assets.capture import clock as clock_module
    from tick_assets.sim.clock import SimClock

    wall = [1_000.0]
    monkeypatch.setattr(clock_module.time, "monotonic_ns", lambda: int(wall[0] * 1e9))
    monkeypatch.setattr("tick_assets.sim.clock._time.monotonic", lambda: wall[0])
    start = datetime(2026, 11, 20, 15, 29, tzinfo=IST)
    close = datetime(2026, 11, 20, 15, 30, tzinfo=IST)
    sim = SimClock(start, 60.0, realtime_after=close)
    follower = clock_module.LinearClock(int(sim.now() * 1e9), 60.0, int(close.timestamp() * 1e9))
    for step in (0.5, 0.5, 1.0, 30.0):  # before the close, across it, and after it
        wall[0] += step
        assert follower() == pytest.approx(sim.now() * 1e9, abs=1e3)
    assert follower() == pytest.approx((close.timestamp() + 31) * 1e9, abs=1e3)
