"""The capture under faults: 50 drops and 5 silent stalls, an expired token, kill -9, alerts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import time as dtime

import polars as pl
import pyarrow as pa
import pytest
import websockets.sync.client as ws_sync

from tick_assets.calendars import session_bounds_utc
from tick_assets.capture import archive
from tick_assets.capture.gaps import read_gaps
from tick_assets.capture.layout import ShardPaths
from tick_assets.capture.notify import LogNotifier, WebhookNotifier
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token, ws_url
from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store import lake
from tick_assets.store.journal import read_journal
from tick_assets.store.raw_archive import read_raw
from tick_assets_tests.capture_helpers import (
    DAY,
    Running,
    duplicate_rows,
    kite_shard,
    live_connection,
    make_engine,
    quiesce_and_stop,
    sim_totals,
    webhook_server,
)

INDICES, NIFTY500 = SIM_APPS["indices"], SIM_APPS["nifty500"]


def _tokens(server, n: int) -> list[int]:
    return [int(t) for t in server.kite.universe.tokens[:n]]


@pytest.mark.timeout(120)
def test_fifty_drops_and_five_silent_stalls_are_all_recovered_and_ledgered(tmp_path):
    with SimServer(day=DAY, rate=2000, speed=20) as srv:
        tokens = _tokens(srv, 150)
        running = Running(make_engine(
            srv, tmp_path, [kite_shard(srv, INDICES, "idx", tokens)],
            flush_interval_s=0.1, stall_timeout_s=1.0, backoff_base_s=0.02, backoff_cap_s=0.1,
        ))  # fmt: skip
        runner = running.runner("idx")
        ledger = runner.writer.ledger
        running.wait_for(lambda: runner.counters.rows_journaled > 100)
        since = min(c["connected_at"] for c in srv.connection_stats()
                    if c["api_key"] == INDICES.api_key and c["closed_at"] is None)  # fmt: skip
        faults = []
        for i in range(55):
            conn = live_connection(srv, INDICES.api_key)
            if i % 11 == 10:  # 5 silent stalls: no data, no heartbeat, the socket stays open
                srv.stall_connections(3.0, connection=conn)
                faults.append("stall")
            else:
                srv.drop_connections(connection=conn)
                faults.append("disconnect")
            # recovered = the gap is closed by the first message of the next connection
            running.wait_for(lambda i=i: len(ledger.closed) == i + 1 and ledger.current is None)
        running.wait_for(lambda: runner.counters.rows_journaled > 100 + 10 * 55)
        report = quiesce_and_stop(srv, running, [INDICES.api_key], settle=0.5)
        sent = sim_totals(srv, INDICES.api_key, since)
    got = report.shard("idx")
    c = got.counters
    assert got.state == "stopped" and (c["connects"], c["disconnects"], c["stalls"]) == (56, 55, 5)
    gaps = read_gaps(got.paths.gaps)
    assert [g["kind"] for g in gaps] == faults
    assert Counter(faults) == {"disconnect": 50, "stall": 5}
    for n, gap in enumerate(gaps, 1):
        assert gap["start_ns"] < gap["end_ns"]
        assert (gap["connection_before"], gap["connection_after"]) == (
            f"idx#1.{n}",
            f"idx#1.{n + 1}",
        )
    assert all("watchdog" in g["cause"] for g in gaps if g["kind"] == "stall")
    assert all(a["end_ns"] <= b["start_ns"] for a, b in zip(gaps, gaps[1:], strict=False))
    journal, reports = read_journal(got.paths.staging)
    assert all(r.complete for r in reports) and journal.num_rows == c["rows_journaled"]
    # Ticks arrive in quote mode only until the mode message takes effect on each connection
    # (a market batch can land between `subscribe` and `mode`, as on real Kite); never after.
    modes = pl.from_arrow(journal.select(["connection", "instrument_token", "mode"]))
    modes = modes.with_columns(pl.col("mode").cast(pl.String), row=pl.int_range(pl.len()))
    first_full = (
        modes.filter(pl.col("mode") == "full")
        .group_by("connection", "instrument_token")
        .agg(pl.col("row").min().alias("first_full"))
    )
    late_quotes = (
        modes.filter(pl.col("mode") != "full")
        .join(first_full, on=["connection", "instrument_token"], how="left")
        .filter(pl.col("first_full").is_null() | (pl.col("row") > pl.col("first_full")))
    )
    assert late_quotes.height == 0, late_quotes.head()
    assert set(modes["mode"].unique()) <= {"full", "quote"}
    assert duplicate_rows(journal) == []
    assert all(got.accounting.values()), got.accounting
    assert c["cached_superseded"] == 56 * len(tokens)  # every resubscribe's quote-mode LVC
    # the simulator counts as sent what a drop cut off in flight; nothing else may be missing
    assert 0 <= sent["packets_sent"] - c["packets_decoded"] < 0.05 * sent["packets_sent"]
    received = journal.column("received_at").cast(pa.int64()).to_numpy()
    for gap in gaps:
        assert not ((received > gap["start_ns"]) & (received < gap["end_ns"])).any()


def test_an_expired_token_stops_the_shard_with_an_alert_and_no_hot_loop(tmp_path, caplog):
    with SimServer(day=DAY, rate=2000, speed=20) as srv, webhook_server() as (url, alerts):
        token = access_token(srv.endpoints, INDICES)
        shard = kite_shard(srv, INDICES, "idx", _tokens(srv, 50), token)
        engine = make_engine(srv, tmp_path, [shard], backoff_base_s=0.01, backoff_cap_s=0.05,
                             notifiers=[LogNotifier(), WebhookNotifier(url)])  # fmt: skip
        running = Running(engine)
        running.wait_for(lambda: running.runner("idx").counters.rows_journaled > 50)
        srv.expire_access_tokens(token)  # 06:00 IST came; the live socket is not kicked...
        srv.drop_connections(api_key=INDICES.api_key)  # ...but the next connect is refused
        report = running.result.result(timeout=30)  # the engine ends by itself
        time.sleep(0.5)
        attempts_after = sum(1 for c in srv.connection_stats() if c["api_key"] == INDICES.api_key)
    got = report.shard("idx")
    assert report.stop_reason == "no shard left running"
    assert got.state == "failed" and "HTTP 403" in got.failure and "Log in again" in got.failure
    c = got.counters
    assert (c["connect_attempts"], c["connect_failures"]) == (2, 1)  # one try, then stop
    assert attempts_after == 1
    assert [a["kind"] for a in alerts] == ["token_rejected"]
    assert alerts[0]["shard"] == "idx" and "HTTP 403" in alerts[0]["message"]
    gap = read_gaps(got.paths.gaps)[-1]
    assert gap["kind"] == "token_rejected" and gap["open_at_stop"]
    texts = [p.read_text() for p in got.paths.staging.iterdir() if p.suffix in (".json", ".jsonl")]
    assert not any(token in t for t in [*texts, caplog.text, json.dumps(alerts)])
    assert "s3cr3t-hook" not in caplog.text


def test_down_recovered_and_no_ticks_alerts(tmp_path):
    """A shard that cannot connect (its api_key's 3 sockets are taken: HTTP 429) raises
    shard_down, then shard_recovered once a socket frees up; a session without ticks raises
    no_ticks."""
    with SimServer(day=DAY, rate=0, speed=1, start=dtime(10, 0)) as srv, \
            webhook_server() as (url, alerts), contextlib.ExitStack() as sockets:  # fmt: skip
        token = access_token(srv.endpoints, INDICES)
        taken = [sockets.enter_context(ws_sync.connect(ws_url(srv.endpoints, INDICES, token),
                                                       proxy=None)) for _ in range(3)]  # fmt: skip
        engine = make_engine(
            srv, tmp_path, [kite_shard(srv, INDICES, "idx", _tokens(srv, 20), token)],
            notifiers=[WebhookNotifier(url)], down_alert_s=0.4, no_ticks_alert_s=0.6,
            backoff_base_s=0.05, backoff_cap_s=0.2,
        )  # fmt: skip
        running = Running(engine)
        running.wait_for(lambda: [a["kind"] for a in alerts] == ["shard_down"], timeout=10)
        taken[0].close()  # a slot frees up: the next retry gets in
        running.wait_for(lambda: "shard_recovered" in [a["kind"] for a in alerts], timeout=10)
        running.wait_for(lambda: "no_ticks" in [a["kind"] for a in alerts], timeout=10)
        report = running.stop()
    kinds = [a["kind"] for a in alerts]
    # recovered (first message after the reconnect) and no_ticks (connected but quiet for
    # 0.6 s) may come in either order on a loaded machine; each comes once, after shard_down
    assert kinds[0] == "shard_down" and sorted(kinds[1:]) == ["no_ticks", "shard_recovered"]
    got = report.shard("idx")
    assert got.counters["connect_failures"] >= 2 and got.counters["connects"] == 1
    (gap,) = read_gaps(got.paths.gaps)
    assert gap["kind"] == "connect_failed" and "HTTP 429" in gap["cause"]
    assert gap["reconnect_attempts"] == got.counters["connect_attempts"]


@pytest.mark.timeout(120)
def test_kill_minus_nine_then_restart_loses_at_most_one_flush(tmp_path):
    speed, flush = 10, 0.2
    with SimServer(day=DAY, rate=2000, speed=speed) as srv:
        token = access_token(srv.endpoints, INDICES)
        tokens = _tokens(srv, 300)
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({
            "venue": "kite", "ws_root": srv.endpoints["kite_ws"], "mode": "full",
            "home": str(tmp_path), "day": DAY.isoformat(),
            "clock": {"url": srv.endpoints["kite_control"] + "/clock"},
            "settings": {"flush_interval_s": flush},
            "shards": [{"name": "idx", "api_key": INDICES.api_key,
                        "access_token_env": "TEST_KITE_TOKEN", "instruments": tokens}],
        }))  # fmt: skip
        env = {**os.environ, "TEST_KITE_TOKEN": token}
        paths = ShardPaths(tmp_path, "kite", DAY, "idx")

        def start():
            return subprocess.Popen([sys.executable, "-m", "tick_assets.capture", str(spec)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)  # fmt: skip

        def journaled(run: int) -> int:
            try:
                return json.loads(paths.counters(run).read_text())["counters"]["rows_journaled"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                return 0

        first = start()
        deadline = time.monotonic() + 30
        while journaled(1) < 1500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert journaled(1) >= 1500, first.stderr.read() if first.poll() is not None else ""
        time.sleep(0.33)  # somewhere inside a flush interval
        first.send_signal(signal.SIGKILL)
        killed_at = srv.kite.clock.now()
        first.wait(10)
        durable = journaled(1)  # the counters file is written after each journal fsync

        second = start()
        deadline = time.monotonic() + 30
        while journaled(2) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["stop_reason"] == "signal SIGTERM" and final["shards"][0]["run"] == 2

    journal, reports = read_journal(paths.staging)  # never raises on the killed run's files
    run1 = journal.filter(pa.compute.starts_with(journal.column("connection"), "idx#1."))
    assert run1.num_rows >= durable  # everything journaled before the kill is readable
    last_before_kill = run1.column("received_at").cast(pa.int64())[-1].as_py()
    # loss bounded by one flush interval (plus scheduling slack), on the venue clock
    assert killed_at * 1e9 - last_before_kill <= (flush + 0.3) * speed * 1e9
    run1_reports = [r for r in reports if "-r0001-" in r.path.name]
    assert all(not r.complete for r in run1_reports)  # the killed writer never closed it
    assert [r.complete for r in reports if "-r0002-" in r.path.name] == [True]
    for path in paths.raw_segments():
        records, raw_report = read_raw(path)  # a torn tail, if any, is reported, not raised
        assert records
    gaps = read_gaps(paths.gaps)
    restart = [g for g in gaps if g["kind"] == "restart"]
    assert len(restart) == 1 and "without a clean stop" in restart[0]["cause"]
    assert restart[0]["start_ns"] >= last_before_kill and restart[0]["end_ns"] > killed_at * 1e9
    assert restart[0]["connection_after"] == "idx#2.1"
    assert duplicate_rows(journal) == []

    # the day's archive holds every tick journaled before the kill (the promise)
    lookup = pl.DataFrame({"instrument_token": tokens,
                           "symbol": [f"S{t}" for t in tokens], "table_name": [f"S{t}" for t in tokens]})  # fmt: skip
    day = archive.archive_day(
        archive.ArchiveSpec(tmp_path, "kite", DAY, *session_bounds_utc(DAY)), TICK_SCHEMA, lookup
    )
    assert day.ok, day.chain
    assert any("run 1 ended" in note for note in day.notes)  # the kill is said, not hidden
    lake_rows = pl.from_arrow(
        lake.read_partition(tmp_path, "kite", "ticks", {"date": DAY.isoformat()})
    )
    archived_run1 = lake_rows.filter(pl.col("connection").str.starts_with("idx#1."))
    in_session = pl.from_arrow(run1).filter(
        pl.col("exchange_timestamp").is_between(*session_bounds_utc(DAY))
    )
    key = ["instrument_token", "exchange_timestamp", "received_at", "last_price", "volume_traded"]
    missing = in_session.join(archived_run1.select(key), on=key, how="anti", nulls_equal=True)
    assert missing.height == 0
    assert archived_run1.height == in_session.height
