"""Helpers for the capture tests: an engine against the in-process simulator, run in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import polars as pl
import pyarrow as pa

from tick_assets.capture.engine import CaptureEngine, CaptureReport, CaptureSettings, Shard
from tick_assets.sim.accounts import SimApp
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token
from tick_assets.sources.kite.stream import KiteCredentials, KiteStream

DAY = date(2026, 11, 20)
#: Columns that say when and where a row arrived, not what it says.
RECEIPT = ("received_at", "connection")


def sim_clock(server: SimServer) -> Callable[[], int]:
    clock = server.kite.clock
    return lambda: int(clock.now() * 1e9)


def kite_shard(
    server: SimServer, app: SimApp, name: str, tokens, token: str | None = None
) -> Shard:
    token = token or access_token(server.endpoints, app)
    return Shard(name, tuple(int(t) for t in tokens), KiteCredentials(app.api_key, token))


def make_engine(
    server: SimServer, home: Path, shards: list[Shard], notifiers=None, **settings
) -> CaptureEngine:
    return CaptureEngine(
        KiteStream(server.endpoints["kite_ws"], "full"),
        shards,
        CaptureSettings(home=home, day=DAY, **settings),
        clock=sim_clock(server),
        notifiers=notifiers,
    )


class Running:
    """An engine running on its own thread (as a Dagster op or a CLI would run it)."""

    def __init__(self, engine: CaptureEngine) -> None:
        self.engine = engine
        self.result: Future[CaptureReport] = Future()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        self.wait_for(lambda: len(engine.runners) == len(engine.shards), timeout=10)

    def _main(self) -> None:
        try:
            self.result.set_result(asyncio.run(self.engine.run()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test through the future
            self.result.set_exception(exc)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.result.done():
                self.result.result()  # raises the engine's error, if any
                raise AssertionError("the engine stopped before the condition held")
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            time.sleep(0.02)

    def runner(self, name: str):
        return next(r for r in self.engine.runners if r.shard.name == name)

    def stop(self, timeout: float = 30.0) -> CaptureReport:
        self.engine.stop("test stop")
        return self.result.result(timeout)


def quiesce_and_stop(
    server: SimServer, running: Running, api_keys: list[str], settle: float = 0.6
) -> CaptureReport:
    """Freeze the simulator's side (stall: nothing more is sent), let in-flight data land, stop.

    With nothing in flight, the two ends' counters must agree exactly.
    """
    for key in api_keys:
        server.stall_connections(None, api_key=key)
    time.sleep(settle)  # shorter than the engine's stall timeout
    return running.stop()


def sim_totals(server: SimServer, api_key: str, since: float = 0.0) -> dict[str, int]:
    """The simulator's counters summed over the key's connections opened after `since`."""
    keys = ("frames_sent", "packets_sent", "lvc_packets_sent", "heartbeats_sent", "texts_sent",
            "malformed_frames_sent")  # fmt: skip
    stats = [c for c in server.connection_stats()
             if c["api_key"] == api_key and c["connected_at"] >= since]  # fmt: skip
    return {k: sum(c[k] for c in stats) for k in keys} | {"connections": len(stats)}


def live_connection(server: SimServer, api_key: str) -> int:
    live = [c["id"] for c in server.connection_stats()
            if c["api_key"] == api_key and c["closed_at"] is None]  # fmt: skip
    assert live, f"no live simulator connection for {api_key}"
    return max(live)


def duplicate_rows(table: pa.Table) -> list[int]:
    """Rows whose whole content (receipt aside) repeats an earlier row, minus one known artefact.

    The simulator computes the cached tick it sends on subscribe at its clock's "now", which can
    run a batch ahead of its own stream: the stream then sends older ticks, then the very tick
    the cached one already showed (real Kite's cached tick is the last tick it relayed, so this
    cannot happen there; only index ticks, which carry no per-tick depth, repeat exactly). A
    repeat of a connection's first (cached) tick of an instrument, after an older tick of that
    instrument, is that artefact and is not counted.
    """
    df = pl.from_arrow(table).with_row_index("row").with_columns(pl.col("mode").cast(pl.String))
    content = [c for c in df.columns if c not in ("row", *RECEIPT)]
    cached = set(df.group_by("connection", "instrument_token").agg(pl.col("row").min())["row"])
    dups = df.filter(pl.struct(content).is_duplicated()).with_columns(
        group=pl.struct(content).hash()
    )
    stamps = df.select("row", "instrument_token", "exchange_timestamp")
    unexplained = []
    for group in dups.partition_by("group"):
        rows = sorted(group["row"].to_list())
        first, token, when = rows[0], group["instrument_token"][0], group["exchange_timestamp"][0]
        for later in rows[1:]:
            between = stamps.filter(
                (pl.col("row") > first) & (pl.col("row") < later)
                & (pl.col("instrument_token") == token) & (pl.col("exchange_timestamp") < when)
            )  # fmt: skip
            if first not in cached or between.is_empty():
                unexplained.append(later)
    return unexplained


class WebhookRecorder(BaseHTTPRequestHandler):
    """A local webhook endpoint that records each JSON body it is sent."""

    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return


@contextlib.contextmanager
def webhook_server():
    """(url, list of received alert bodies) of a webhook listening on 127.0.0.1."""
    handler = type("Recorder", (WebhookRecorder,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts/s3cr3t-hook", handler.received
    finally:
        server.shutdown()
