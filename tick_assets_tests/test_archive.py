"""The day archive (tick_assets.capture.archive): journals of every shard and run -> one sorted,
deduplicated, checked lake partition; the staging it may delete; the locks it respects."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tick_assets.calendars import session_bounds_utc
from tick_assets.capture import archive
from tick_assets.capture.layout import ShardPaths
from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store import lake
from tick_assets.store.journal import JournalWriter

DAY = date(2026, 11, 20)
OPEN, CLOSE = session_bounds_utc(DAY)
LOOKUP = pl.DataFrame(
    {
        "instrument_token": [256265, 738561, 5633],
        "symbol": ["NIFTY 50", "RELIANCE", "ACC"],
        "table_name": ["NIFTY_50", "RELIANCE", "ACC"],
    }
)


def tick(token: int, at: datetime | None, received: datetime, price: float, **more) -> dict:
    row = {name: None for name in TICK_SCHEMA.names}
    row.update(
        instrument_token=token, mode="full", tradable=True, last_price=price,
        volume_traded=int(price * 10), exchange_timestamp=at, received_at=received,
        connection="s#1.1", bid_price_1=price - 0.05, ask_price_1=price + 0.05,
    )  # fmt: skip
    row.update(more)
    return row


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=TICK_SCHEMA)


def journal(home, shard: str, run: int, rows: list[dict], state: str = "stopped", **counts):
    """One run of a shard: a journal segment and its counters file (consistent by default)."""
    paths = ShardPaths(home, "kite", DAY, shard)
    paths.staging.mkdir(parents=True, exist_ok=True)
    paths.raw.mkdir(parents=True, exist_ok=True)
    writer = JournalWriter(paths.journal_segment(run, 1), TICK_SCHEMA)
    writer.append(table(rows))
    writer.sync()
    if state == "stopped":
        writer.close()
    n = counts.pop("rows_journaled", len(rows))
    counters = {"messages_received": 3, "messages_written": 3, "packets_decoded": n,
                "rows_journaled": n, **counts}  # fmt: skip
    paths.counters(run).write_text(json.dumps({"state": state, "counters": counters}))
    return paths


def spec(home) -> archive.ArchiveSpec:
    return archive.ArchiveSpec(home, "kite", DAY, OPEN, CLOSE)


def read(home) -> pl.DataFrame:
    frame = pl.from_arrow(lake.read_partition(home, "kite", "ticks", {"date": DAY.isoformat()}))
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_session_edges_duplicates_unknown_instruments_and_order(tmp_path):
    s = timedelta(seconds=1)
    rows_a = [
        tick(738561, OPEN - s, OPEN - s, 10.0),  # before the open: dropped
        tick(738561, OPEN, OPEN + s / 10, 10.05),  # at the open: kept
        tick(256265, OPEN + 5 * s, OPEN + 5 * s, 24000.0, connection="s#1.1"),  # kept (earliest)
        tick(999, OPEN + 6 * s, OPEN + 6 * s, 1.0),  # unknown instrument: dropped
        tick(5633, CLOSE, CLOSE + s, 2000.0),  # at the close: kept
        tick(5633, CLOSE + s, CLOSE + s, 2000.5),  # after the close: dropped
        tick(5633, None, OPEN + 9 * s, 1999.0),  # no exchange time: received_at decides, kept
    ]
    rows_b = [
        tick(256265, OPEN + 5 * s, OPEN + 7 * s, 24000.0, connection="b#1.1"),  # same packet later
        tick(256265, OPEN + 3 * s, OPEN + 3 * s, 23999.0, connection="b#1.1"),
    ]
    journal(tmp_path, "a", 1, rows_a)
    journal(tmp_path, "b", 1, rows_b)
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)

    assert day.ok, day.chain
    assert day.accounting["dropped"] == {
        "outside_session": 2, "duplicates": 1, "unknown_instrument": 1,
    }  # fmt: skip
    assert day.accounting["received"] == 9 and day.manifest.rows == 5
    assert day.manifest.extra["unknown_instruments"] == [999]
    frame = read(tmp_path)
    assert frame.select("symbol", "last_price", "connection").rows() == [
        ("ACC", 2000.0, "s#1.1"),
        ("ACC", 1999.0, "s#1.1"),  # null exchange_timestamp sorts last within the symbol
        ("NIFTY 50", 23999.0, "b#1.1"),
        ("NIFTY 50", 24000.0, "s#1.1"),  # the duplicate from shard b (received later) is gone
        ("RELIANCE", 10.05, "s#1.1"),
    ]
    assert frame["table_name"].to_list() == ["ACC", "ACC", "NIFTY_50", "NIFTY_50", "RELIANCE"]
    assert frame.schema["received_at"] == pl.Datetime("ns", "UTC")
    assert day.instruments_without_ticks == []

    ok, message = archive.verify_read_back(tmp_path, "kite", DAY, day)
    assert ok, message
    again = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)  # idempotent
    assert again.manifest.rows == 5 and again.fingerprint == day.fingerprint


def test_a_rerun_of_the_capture_is_deduplicated_and_silent_instruments_are_listed(tmp_path):
    first = [tick(738561, OPEN + timedelta(seconds=k), OPEN + timedelta(seconds=k), 10 + k)
             for k in range(5)]  # fmt: skip
    journal(tmp_path, "a", 1, first)
    # run 2 re-received the last two ticks (the cached tick and a replay) and one new one
    later = [dict(r, received_at=r["received_at"] + timedelta(minutes=1), connection="a#2.1")
             for r in first[3:]]  # fmt: skip
    new = tick(738561, OPEN + timedelta(seconds=9), OPEN + timedelta(seconds=70), 20.0)
    journal(tmp_path, "a", 2, [*later, new])
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    assert day.ok and day.manifest.rows == 6
    assert day.accounting["dropped"]["duplicates"] == 2
    assert {e["symbol"] for e in day.instruments_without_ticks} == {"NIFTY 50", "ACC"}


def test_a_broken_chain_is_reported_link_by_link(tmp_path):
    rows = [tick(738561, OPEN + timedelta(seconds=1), OPEN + timedelta(seconds=1), 10.0)]
    journal(tmp_path, "a", 1, rows, rows_journaled=2)  # the counters claim a row never written
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    assert not day.ok
    broken = [link for link, ok in day.chain.items() if not ok]
    assert broken == ["journal: rows read 1 == rows journaled 2"]


def test_a_crashed_run_is_said_and_its_journaled_rows_are_archived(tmp_path):
    rows = [tick(738561, OPEN + timedelta(seconds=k), OPEN + timedelta(seconds=k), 10 + k)
            for k in range(4)]  # fmt: skip
    paths = journal(tmp_path, "a", 1, rows, state="running", rows_journaled=3)
    segment = paths.journal_segment(1, 1)
    with open(segment, "ab") as fh:  # a torn write at the moment of the kill
        fh.write(b"\xff\xff\xff\xff\x10\x00")
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    assert day.ok, day.chain  # journal rows >= counted rows for a run that did not stop
    assert day.manifest.rows == 4
    assert any("run 1 ended 'running'" in n for n in day.notes)
    assert any(n.startswith("torn tail") for n in day.notes)
    assert day.shards["a"]["journal"]["torn"]


def test_read_back_finds_a_tampered_file(tmp_path):
    rows = [tick(738561, OPEN + timedelta(seconds=k), OPEN + timedelta(seconds=k), 10 + k)
            for k in range(3)]  # fmt: skip
    journal(tmp_path, "a", 1, rows)
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    directory = lake.partition_dir(tmp_path, "kite", "ticks", {"date": DAY.isoformat()})
    path = directory / day.manifest.files[0].name
    data = pq.read_table(path)
    prices = data.column("last_price").to_pylist()
    prices[1] += 0.05
    pq.write_table(data.set_column(data.schema.get_field_index("last_price"),
                                   data.schema.field("last_price"), pa.array(prices)), path)  # fmt: skip
    ok, message = archive.verify_read_back(tmp_path, "kite", DAY, day)
    assert not ok and str(path) in message


def test_a_running_capture_blocks_the_archive_and_staging_deletion_keeps_raw(tmp_path):
    rows = [tick(738561, OPEN + timedelta(seconds=1), OPEN + timedelta(seconds=1), 10.0)]
    paths = journal(tmp_path, "a", 1, rows)
    (paths.raw / "raw-r0001-p0001.zst").write_bytes(b"kept")
    fd = paths.lock()
    try:
        assert archive.busy_shards(tmp_path, "kite", DAY) == ["a"]
        with pytest.raises(archive.ArchiveError, match=r"shards \['a'\] are still capturing"):
            archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
        with pytest.raises(archive.ArchiveError, match="still capturing"):
            archive.delete_staging(tmp_path, "kite", DAY)
    finally:
        os.close(fd)
    assert archive.busy_shards(tmp_path, "kite", DAY) == []
    archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    assert archive.delete_staging(tmp_path, "kite", DAY) > 0
    assert not paths.staging.parent.exists()
    assert (paths.raw / "raw-r0001-p0001.zst").read_bytes() == b"kept"
    with pytest.raises(archive.ArchiveError, match="was the capture run for 2026-11-20"):
        archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)


def test_a_day_with_nothing_in_session_writes_an_empty_partition(tmp_path):
    late = CLOSE + timedelta(minutes=5)
    journal(tmp_path, "a", 1, [tick(738561, late, late, 10.0)])
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    assert day.ok and day.manifest.rows == 0
    assert day.accounting["dropped"]["outside_session"] == 1
    assert len(day.instruments_without_ticks) == 3
    empty = read(tmp_path)
    assert empty.height == 0 and empty.schema["exchange_timestamp"] == pl.Datetime("ns", "UTC")


def test_a_payload_that_recurs_on_one_connection_is_kept(tmp_path):
    """A, B, A within one second on one websocket are three ticks; the same three received
    again on a second shard are duplicates."""
    at = OPEN + timedelta(seconds=30)
    a = tick(738561, at, at, 10.0)
    b = tick(738561, at, at + timedelta(milliseconds=1), 10.05)
    a_again = dict(a, received_at=at + timedelta(milliseconds=2))
    journal(tmp_path, "a", 1, [a, b, a_again])
    shifted = [dict(r, received_at=r["received_at"] + timedelta(milliseconds=5),
                    connection="b#1.1") for r in (a, b, a_again)]  # fmt: skip
    journal(tmp_path, "b", 1, shifted)
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    assert day.manifest.rows == 3 and day.accounting["dropped"]["duplicates"] == 3
    assert read(tmp_path)["connection"].to_list() == ["s#1.1"] * 3


def test_a_day_captured_again_after_its_staging_was_deleted_keeps_the_earlier_archive(tmp_path):
    first = [tick(738561, OPEN + timedelta(seconds=k), OPEN + timedelta(seconds=k), 10 + k)
             for k in range(4)]  # fmt: skip
    journal(tmp_path, "a", 1, first)
    archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    archive.delete_staging(tmp_path, "kite", DAY)
    # later that day the shard is captured again: run 2 (the cached tick again, then new ticks)
    cached = dict(first[-1], received_at=first[-1]["received_at"] + timedelta(minutes=5),
                  connection="a#2.1")  # fmt: skip
    new = [tick(5633, OPEN + timedelta(minutes=6 + k), OPEN + timedelta(minutes=6 + k), 2000 + k,
                connection="a#2.1") for k in range(3)]  # fmt: skip
    journal(tmp_path, "a", 2, [cached, *new])
    day = archive.archive_day(spec(tmp_path), TICK_SCHEMA, LOOKUP)
    assert day.ok, day.chain
    assert day.manifest.rows == 7  # 4 from the earlier archive + 3 new; the cached tick dropped
    assert day.accounting["rows_from_previous_archive"] == 4
    assert day.accounting["dropped"]["duplicates"] == 1
    assert day.manifest.extra["runs_archived"] == ["a/1", "a/2"]
    assert any("carried over" in note for note in day.notes)
    frame = read(tmp_path)
    assert frame["connection"].to_list() == ["a#2.1"] * 3 + ["s#1.1"] * 4  # ACC, then RELIANCE
