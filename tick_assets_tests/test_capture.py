"""The capture engine against the simulator over real loopback websockets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import time as dtime

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tick_assets.capture.gaps import read_gaps
from tick_assets.capture.latency import read_latency
from tick_assets.capture.live import read_live_file, read_live_quotes
from tick_assets.capture.replay import redecode
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.kite.ticker import MALFORMED
from tick_assets.sim.server import SimServer
from tick_assets.sources.kite.stream import KiteStream
from tick_assets.store.journal import read_journal
from tick_assets.store.raw_archive import BINARY, read_raw
from tick_assets_tests.capture_helpers import (
    DAY,
    Running,
    duplicate_rows,
    kite_shard,
    live_connection,
    make_engine,
    quiesce_and_stop,
    sim_totals,
)

INDICES, NIFTY500 = SIM_APPS["indices"], SIM_APPS["nifty500"]


@pytest.fixture(scope="module")
def server():
    with SimServer(day=DAY, rate=3000, speed=50) as srv:
        yield srv


def _tokens(server) -> list[int]:
    return [int(t) for t in server.kite.universe.tokens]


def test_every_packet_is_accounted_for_at_both_ends(server, tmp_path):
    """Two shards on two apps; the simulator's per-connection counts equal the capture's."""
    tokens = _tokens(server)
    shards = [kite_shard(server, INDICES, "idx", tokens[:500]),
              kite_shard(server, NIFTY500, "n500", tokens[500:])]  # fmt: skip
    since = time.time()
    running = Running(make_engine(server, tmp_path, shards))
    running.wait_for(lambda: all(r.counters.rows_journaled > 2000 for r in running.engine.runners))
    report = quiesce_and_stop(server, running, [INDICES.api_key, NIFTY500.api_key])
    for shard, app, n in (("idx", INDICES, 500), ("n500", NIFTY500, len(tokens) - 500)):
        sent, got = sim_totals(server, app.api_key, since), report.shard(shard)
        c = got.counters
        assert sent["connections"] == 1 and c["connects"] == 1
        assert c["packets_decoded"] == sent["packets_sent"]  # zero loss, both ends agree
        assert c["messages_received"] == (sent["frames_sent"] + sent["heartbeats_sent"]
                                          + sent["texts_sent"])  # fmt: skip
        assert c["heartbeats"] == sent["heartbeats_sent"]
        assert all(got.accounting.values()), got.accounting
        # subscribe LVCs (quote mode) superseded by the mode LVCs; the simulator's index ticks
        # that repeat the previous one exactly (same second, same price) are the duplicates
        assert c["cached_superseded"] == n and c["duplicates"] < c["rows_journaled"] / 100
        assert c["rows_journaled"] == sent["packets_sent"] - n - c["duplicates"]
        journal, reports = read_journal(got.paths.staging)
        assert journal.num_rows == c["rows_journaled"]
        assert all(r.complete and not r.torn for r in reports)
        assert journal.column("mode").cast(pa.string()).unique().to_pylist() == ["full"]
        assert duplicate_rows(journal) == []
        wanted = shards[0 if shard == "idx" else 1].instruments
        assert set(pc.unique(journal.column("instrument_token")).to_pylist()) <= set(wanted)
        received = journal.column("received_at").cast(pa.int64()).to_numpy()
        assert (np.diff(received) >= 0).all()  # journal order is arrival order
        # latency per minute, for every journaled row
        minutes = read_latency(got.paths.latency)
        assert sum(m["ticks"] for m in minutes) == c["rows_journaled"]
        assert got.latency["received_to_journaled_ms"]["p99"] < 1000
        assert got.gaps == [] and got.state == "stopped"


@pytest.fixture(scope="module")
def faulted(server, tmp_path_factory):
    """A capture that sees malformed frames and a dropped connection."""
    home = tmp_path_factory.mktemp("faulted")
    shard = kite_shard(server, INDICES, "idx", _tokens(server)[:300])
    running = Running(make_engine(server, home, [shard]))
    running.wait_for(lambda: running.runner("idx").counters.rows_journaled > 500)
    server.send_malformed(5, connection=live_connection(server, INDICES.api_key))
    time.sleep(0.5)
    server.drop_connections(api_key=INDICES.api_key)
    running.wait_for(lambda: running.runner("idx").counters.connects == 2)
    time.sleep(0.5)
    report = quiesce_and_stop(server, running, [INDICES.api_key])
    return report.shard("idx"), shard


def test_malformed_frames_are_counted_kept_in_the_raw_archive_and_the_stream_goes_on(faulted):
    got, _ = faulted
    c = got.counters
    # 4 frames whose framing is broken, 1 well-framed packet of an unknown length
    assert (c["rejected_frames"], c["rejected_packets"]) == (4, 1)
    assert sum(c["rejected_reasons"].values()) == 5
    assert any("truncated" in r or "overrunning" in r for r in c["rejected_reasons"])
    records = [r for p in got.paths.raw_segments() for r in read_raw(p)[0]]
    binary = [r.payload for r in records if r.kind == BINARY]
    assert all(bad in binary for bad in MALFORMED)
    last_bad = max(r.received_ns for r in records if r.kind == BINARY and r.payload in MALFORMED)
    journal, _ = read_journal(got.paths.staging)
    later = pc.sum(pc.greater(journal.column("received_at").cast(pa.int64()), last_bad)).as_py()
    assert later > 100  # ticks kept flowing after the bad frames
    assert all(got.accounting.values())


def test_a_dropped_connection_is_a_closed_gap_in_the_ledger(faulted):
    got, _ = faulted
    (gap,) = read_gaps(got.paths.gaps)
    assert gap["kind"] == "disconnect" and "without a close frame" in gap["cause"]
    assert gap["connection_before"] == "idx#1.1" and gap["connection_after"] == "idx#1.2"
    assert gap["start_ns"] < gap["end_ns"] and gap["reconnect_attempts"] == 1
    journal, _ = read_journal(got.paths.staging)
    received = journal.column("received_at").cast(pa.int64()).to_numpy()
    inside = (received > gap["start_ns"]) & (received < gap["end_ns"])
    assert not inside.any()  # the gap is exactly where nothing was received
    assert duplicate_rows(journal) == []


def test_the_raw_archive_redecodes_to_the_journal(faulted):
    got, shard = faulted
    journal, _ = read_journal(got.paths.staging)
    rebuilt, counters, reports = redecode(got.paths.raw_segments(), KiteStream("ws://x/ws"),
                                          "idx", shard.instruments)  # fmt: skip
    assert not any(r.torn for r in reports)
    assert rebuilt.equals(journal)
    assert counters.packets_decoded == got.counters["packets_decoded"]
    assert counters.cached_superseded == got.counters["cached_superseded"]


def test_live_quotes_are_readable_by_another_process_while_capturing(server, tmp_path):
    tokens = _tokens(server)[:200]
    running = Running(make_engine(server, tmp_path, [kite_shard(server, INDICES, "idx", tokens)]))
    running.wait_for(lambda: running.runner("idx").counters.rows_journaled > 300)
    reader = (
        "import sys, time, pyarrow as pa\n"
        "from tick_assets.capture.live import read_live_quotes\n"
        "from datetime import date\n"
        "seen = []\n"
        "for _ in range(40):\n"
        "    t = read_live_quotes(sys.argv[1], 'kite', date.fromisoformat(sys.argv[2]))\n"
        "    seen.append(t.num_rows)\n"
        "    time.sleep(0.02)\n"
        "print(seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", reader, str(tmp_path), DAY.isoformat()],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert len(seen) == 40 and min(seen) > 0  # every read saw a whole file
    report = quiesce_and_stop(server, running, [INDICES.api_key])
    got = report.shard("idx")
    live = read_live_quotes(tmp_path, "kite", DAY)
    assert sorted(live.column("instrument_token").to_pylist()) == sorted(tokens)
    # the live row of each instrument is its last journaled row
    journal, _ = read_journal(got.paths.staging)
    last = pl.from_arrow(journal).group_by("instrument_token", maintain_order=True).last()
    on_file = pl.from_arrow(read_live_file(got.paths.live))
    assert on_file.sort("instrument_token").equals(
        last.sort("instrument_token").select(on_file.columns)
    )


def test_the_capture_stops_itself_at_a_deadline_on_the_venue_clock(server, tmp_path):
    stop_at = int((server.kite.clock.now() + 60) * 1e9)  # 60 simulated seconds: ~1.2 s here
    engine = make_engine(server, tmp_path, [kite_shard(server, INDICES, "idx", _tokens(server)[:50])],
                         stop_at_ns=stop_at)  # fmt: skip
    started = time.monotonic()
    report = Running(engine).result.result(timeout=30)
    assert "deadline" in report.stop_reason and time.monotonic() - started < 10
    got = report.shard("idx")
    journal, reports = read_journal(got.paths.staging)
    assert all(r.complete for r in reports) and journal.num_rows == got.counters["rows_journaled"]
    counters = json.loads(got.paths.counters(1).read_text())
    assert counters["state"] == "stopped"


def test_past_its_queue_bound_the_capture_spills_to_disk_and_loses_nothing(server, tmp_path):
    shard = kite_shard(server, NIFTY500, "n500", _tokens(server))
    since = time.time()
    running = Running(make_engine(server, tmp_path, [shard], queue_max_bytes=4096))
    running.wait_for(lambda: running.runner("n500").counters.rows_journaled > 3000)
    report = quiesce_and_stop(server, running, [NIFTY500.api_key])
    got, sent = report.shard("n500"), sim_totals(server, NIFTY500.api_key, since)
    c = got.counters
    assert c["spilled_messages"] > 10 and c["spill_drained"] == c["spilled_messages"]
    assert c["packets_decoded"] == sent["packets_sent"] and all(got.accounting.values())
    journal, _ = read_journal(got.paths.staging)
    received = journal.column("received_at").cast(pa.int64()).to_numpy()
    assert (np.diff(received) >= 0).all()  # spilled messages came back in order
    assert not got.paths.spill(1).exists()


def test_cached_ticks_repeated_before_the_open_are_dropped_and_a_rerun_appends(tmp_path):
    """Before the open the LVC never changes: reconnects and a rerun add no rows at all."""
    with SimServer(day=DAY, rate=3000, speed=1, start=dtime(9, 0)) as srv:
        tokens = _tokens(srv)[:100]
        shard = kite_shard(srv, INDICES, "idx", tokens)
        running = Running(make_engine(srv, tmp_path, [shard]))
        runner = running.runner
        running.wait_for(lambda: runner("idx").counters.packets_decoded >= 200)
        for n in range(2, 5):  # three reconnects
            srv.drop_connections(api_key=INDICES.api_key)
            running.wait_for(lambda n=n: runner("idx").counters.connects == n
                             and runner("idx").counters.packets_decoded >= 200 * n)  # fmt: skip
        first = running.stop().shard("idx")
        c = first.counters
        assert c["rows_journaled"] == 100  # one full-mode cached tick per instrument, once
        assert (c["cached_superseded"], c["duplicates"]) == (400, 300)
        assert len(read_gaps(first.paths.gaps)) == 3
        run1 = {p.name: p.read_bytes() for p in first.paths.journal_segments()}

        rerun = make_engine(srv, tmp_path, [kite_shard(srv, INDICES, "idx", tokens)])
        running = Running(rerun)
        running.wait_for(lambda: running.runner("idx").counters.packets_decoded >= 200)
        second = running.stop().shard("idx")
    assert second.run == 2 and second.counters["rows_journaled"] == 0
    assert second.counters["duplicates"] == 100  # remembered from run 1's files
    assert {p.name: p.read_bytes() for p in first.paths.journal_segments(1)} == run1
    assert [p.name for p in second.paths.journal_segments(2)] == ["journal-r0002-p0001.arrows"]
    gaps = read_gaps(second.paths.gaps)
    assert gaps[-1]["kind"] == "restart" and "run 1 stopped cleanly" in gaps[-1]["cause"]
    journal, _ = read_journal(second.paths.staging)
    assert journal.num_rows == 100 and duplicate_rows(journal) == []
