"""A captured day into the lake: every shard's journals -> one sorted, deduplicated partition.

After the close, for one venue and day, the archive reads the journals of every shard and run
under staging/<venue>/<day>/, keeps the session window, drops duplicates (the same packet
captured twice: on two shards, or again by a rerun), joins the lookup (symbol, table name),
sorts by (symbol, event time, receipt time) and writes lake/<venue>/ticks/date=DAY/ with its
manifest. It never holds the whole day in memory: a first pass reads only the key columns
and a hash of each row's payload and decides which rows to keep and in which order; the
second pass reads the journals once per group of instruments and writes each group as
row groups of the Parquet file.

The accounting chain (DESIGN.md "nothing lost") comes from each run's counters file and from
the journals themselves; each link is a named boolean with its numbers.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tick_assets.capture.layout import ShardPaths, check_name
from tick_assets.store import lake
from tick_assets.store.journal import SegmentReport, iter_segment

ASSET = "ticks"
RECEIPT_COLUMNS = ("received_at", "connection")
#: Rows per write group: bounds the memory of the second pass (~270 B per full-mode row).
GROUP_ROWS = 1_000_000
ROW_GROUP_ROWS = 256_000
MAX_LISTED = 200
#: Cumulative counters of the day: delta-encoded in the lake (see writer_options).
_DELTA = ("volume_traded", "total_buy_quantity", "total_sell_quantity", "oi", "oi_day_high",
          "oi_day_low")  # fmt: skip


class ArchiveError(RuntimeError):
    """The day cannot be archived (yet); the message names the day, the path and what to do."""


@dataclass(frozen=True)
class ArchiveSpec:
    home: Path
    venue: str
    day: date
    session_start: datetime  # aware; rows at or after it are kept
    session_end: datetime  # aware; rows at or before it are kept
    key_column: str = "instrument_token"
    event_column: str = "exchange_timestamp"

    def __post_init__(self) -> None:
        check_name("venue", self.venue)
        for name in ("session_start", "session_end"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"ArchiveSpec.{name} must be timezone-aware")

    @property
    def staging(self) -> Path:
        return Path(self.home) / "staging" / self.venue / self.day.isoformat()


@dataclass
class DayArchive:
    manifest: lake.Manifest
    accounting: dict[str, int | dict[str, int]]
    chain: dict[str, bool]
    shards: dict[str, dict[str, Any]]
    instruments_without_ticks: list[dict[str, Any]]
    ticks_per_instrument: dict[str, int | float]
    fingerprint: dict[str, str]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(self.chain.values())


# --- shards, locks, staging ----------------------------------------------------------------------


def shard_names(home: Path | str, venue: str, day: date) -> list[str]:
    root = Path(home) / "staging" / venue / day.isoformat()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def busy_shards(home: Path | str, venue: str, day: date) -> list[str]:
    """Shards of the day whose capture lock is held right now (a capture is still running)."""
    busy = []
    for shard in shard_names(home, venue, day):
        lock = ShardPaths(Path(home), venue, day, shard).staging / "capture.lock"
        if not lock.exists():
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            busy.append(shard)
        finally:
            os.close(fd)
    return busy


def _refuse_busy(home: Path | str, venue: str, day: date, doing: str) -> None:
    busy = busy_shards(home, venue, day)
    if busy:
        raise ArchiveError(
            f"cannot {doing} {venue} {day}: shards {busy} are still capturing (their "
            "capture.lock is held); wait for the capture runs to stop (stop_at) or stop them"
        )


def delete_staging(home: Path | str, venue: str, day: date) -> int:
    """Remove staging/<venue>/<day>/ (journals, ledgers, counters); raw/ stays. Bytes freed."""
    _refuse_busy(home, venue, day, "delete the staging of")
    root = Path(home) / "staging" / venue / day.isoformat()
    if not root.is_dir():
        return 0
    freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    shutil.rmtree(root)
    return freed


# --- counters ---------------------------------------------------------------------------------------

_SUMMED = ("messages_received", "messages_written", "binary_frames", "text_messages",
           "heartbeats", "data_frames", "packets_decoded", "rejected_frames", "rejected_packets",
           "cached_superseded", "duplicates", "rows_journaled", "disconnects", "stalls",
           "spilled_messages")  # fmt: skip


def _run_counters(paths: ShardPaths, run: int) -> tuple[str, dict[str, int]]:
    path = paths.counters(run)
    if not path.exists():
        return "missing", {}
    try:
        body = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return f"unreadable ({exc})", {}
    counters = body.get("counters", {})
    return str(body.get("state")), {k: int(counters.get(k, 0)) for k in _SUMMED}


def day_runs(home: Path | str, venue: str, day: date) -> dict[str, dict[str, Any]]:
    """Every shard of the day in staging with each run's state and counters (from the
    counters files the writers keep): {shard: {"runs": {run: {"state": ..., counts...}}}}."""
    found: dict[str, dict[str, Any]] = {}
    for shard in shard_names(home, venue, day):
        paths = ShardPaths(Path(home), venue, day, shard)
        runs = {}
        for run in paths.runs():
            state, counters = _run_counters(paths, run)
            runs[run] = {"state": state, **counters}
        found[shard] = {"runs": runs}
    return found


def _previous_archive(spec: ArchiveSpec, staged: set[str]) -> tuple[set[str], list[Path]] | None:
    """When the day's lake partition holds runs whose staging is gone (deleted after an earlier
    archive, then the day was captured again), its runs and files, to carry them over."""
    partition = {"date": spec.day.isoformat()}
    try:
        manifest = lake.read_manifest(spec.home, spec.venue, ASSET, partition)
    except lake.PartitionNotFoundError:
        return None
    covered = set(manifest.extra.get("runs_archived", []))
    if covered <= staged:
        return None
    directory = lake.partition_dir(spec.home, spec.venue, ASSET, partition)
    return covered, [directory / entry.name for entry in manifest.files]


# --- pass 1: keys ------------------------------------------------------------------------------------


@dataclass
class _Segment:
    shard: str
    run: int
    path: Path
    rows: int = 0
    kind: str = "journal"  # or "lake": a file of the day's previous archive, carried over


def _batches(segment: _Segment, schema: pa.Schema) -> Iterator[pa.RecordBatch | SegmentReport]:
    """A source's record batches in the journal schema, then its SegmentReport."""
    if segment.kind == "journal":
        yield from iter_segment(segment.path)
        return
    rows = batches = 0
    for batch in pq.ParquetFile(segment.path).iter_batches(65_536, columns=schema.names):
        table = pa.Table.from_batches([batch]).cast(schema)
        rows, batches = rows + table.num_rows, batches + 1
        yield from table.to_batches()
    yield SegmentReport(segment.path, batches, rows, True, False, "previous archive", schema)


def _read_keys(
    segments: list[_Segment], spec: ArchiveSpec, schema: pa.Schema, payload: list[str]
) -> tuple[pl.DataFrame, list[SegmentReport]]:
    """First pass: per journal row only its key, times, payload hash and where it is."""
    parts: list[pl.DataFrame] = []
    reports: list[SegmentReport] = []
    for index, segment in enumerate(segments):
        for item in _batches(segment, schema):
            if isinstance(item, SegmentReport):
                reports.append(item)
                continue
            frame = pl.from_arrow(item)
            assert isinstance(frame, pl.DataFrame)
            parts.append(
                pl.DataFrame(
                    {
                        "token": frame[spec.key_column].cast(pl.Int64),
                        "event": frame[spec.event_column].dt.epoch("ns").fill_null(-1),
                        "received": frame["received_at"].dt.epoch("ns"),
                        "conn": frame["connection"].hash(seed=3),
                        "digest": frame.select(payload).hash_rows(seed=7),
                        "segment": pl.repeat(index, frame.height, dtype=pl.Int32, eager=True),
                        "offset": pl.int_range(
                            segment.rows, segment.rows + frame.height, dtype=pl.Int32, eager=True
                        ),
                    }
                )
            )
            segment.rows += frame.height
    schema = {"token": pl.Int64, "event": pl.Int64, "received": pl.Int64, "conn": pl.UInt64,
              "digest": pl.UInt64, "segment": pl.Int32, "offset": pl.Int32}  # fmt: skip
    keys = pl.concat(parts, rechunk=True) if parts else pl.DataFrame(schema=schema)
    return keys, reports


# --- the archive --------------------------------------------------------------------------------------


@dataclass
class _Plan:
    rows: pl.DataFrame  # rank, segment, offset of every row to write, in the lake's order
    read: int  # rows read from the journals
    drops: dict[str, int]
    unknown: list[int]
    reports: list[SegmentReport]


def _plan(
    segments: list[_Segment],
    spec: ArchiveSpec,
    schema: pa.Schema,
    payload: list[str],
    lookup: pl.DataFrame,
) -> _Plan:
    """Which journal rows to write and in which order (ties in receipt time broken by journal
    order), with the drop counts and the unknown tokens. Only this function holds the keys."""
    frame, reports = _read_keys(segments, spec, schema, payload)
    rows = frame.height
    start = int(spec.session_start.timestamp() * 1e9)
    end = int(spec.session_end.timestamp() * 1e9)
    when = pl.when(pl.col("event") >= 0).then(pl.col("event")).otherwise(pl.col("received"))
    in_session = (when >= start) & (when <= end)
    frame = frame.filter(in_session)
    outside = rows - frame.height

    # Duplicates: the same packet received on more than one connection (two shards holding an
    # instrument, a rerun, the cached tick after a reconnect). The k-th row of a payload on one
    # connection matches the k-th on another, so a payload that genuinely recurs on one
    # connection (A, B, A) is kept; of each match the earliest receipt stays.
    # Only rows whose payload occurs more than once need the matching (few, on a normal day).
    timed = pl.col("event") >= 0
    repeats = (
        frame.filter(timed & pl.struct("token", "digest").is_duplicated())
        .sort(["received", "segment", "offset"])
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.UInt32).over("token", "digest", "conn").alias("k")
        )
    )
    dropped = repeats.filter(~pl.struct("token", "digest", "k").is_first_distinct())
    frame = frame.drop("digest", "conn")
    if dropped.height:
        frame = frame.join(
            dropped.select("segment", "offset"), on=["segment", "offset"], how="anti"
        )
    duplicates = dropped.height

    ranks = (
        lookup.select(
            pl.col("instrument_token").cast(pl.Int64).alias("token"), "symbol", "table_name"
        )
        .sort("symbol", "token")
        .with_row_index("rank")
    )
    frame = frame.join(ranks.select("token", "rank"), on="token", how="left")
    unknown_rows = frame.filter(pl.col("rank").is_null())
    unknown = sorted(unknown_rows["token"].unique().to_list())
    frame = frame.filter(pl.col("rank").is_not_null())
    frame = frame.sort(
        [
            "rank",
            pl.when(timed).then(pl.col("event")).otherwise(None),
            "received",
            "segment",
            "offset",
        ],  # fmt: skip
        nulls_last=True,
    )
    drops = {
        "outside_session": outside,
        "duplicates": duplicates,
        "unknown_instrument": unknown_rows.height,
    }
    return _Plan(frame.select("rank", "segment", "offset"), rows, drops, unknown, reports)


def _groups(plan: pl.DataFrame) -> pl.DataFrame:
    """The plan with, per row, its write group (consecutive instruments, ~GROUP_ROWS rows
    per group) and its position within the group."""
    counts = plan.group_by("rank", maintain_order=True).len()
    group, size, ids = 0, 0, []
    for n in counts["len"].to_list():
        if size and size + n > GROUP_ROWS:
            group, size = group + 1, 0
        size += n
        ids.append(group)
    ranks = counts.select("rank").with_columns(pl.Series("group", ids, pl.Int32))
    return plan.join(ranks, on="rank", how="left", maintain_order="left").with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over("group").alias("pos")
    )


def _bucket(
    plan: pl.DataFrame, segments: list[_Segment], schema: pa.Schema, tmp: Path
) -> list[tuple[Path, int]]:
    """Second pass: read each journal once, sending every kept row to its group's file
    (Arrow IPC, with the row's position in the group); returns (file, rows) per group."""
    groups = int(plan["group"].max()) + 1 if plan.height else 0
    bucket_schema = schema.append(pa.field("_pos", pa.int64()))
    tmp.mkdir(parents=True, exist_ok=True)
    paths = [tmp / f"group-{g:04d}.arrows" for g in range(groups)]
    sinks = [pa.OSFile(str(p), "wb") for p in paths]
    writers = [pa.ipc.new_stream(sink, bucket_schema) for sink in sinks]
    rows = [0] * groups
    try:
        for index, segment in enumerate(segments):
            mine = plan.filter(pl.col("segment") == index).sort("offset")
            if mine.height == 0:
                continue
            offsets = mine["offset"].to_numpy()
            group_of = mine["group"].to_numpy()
            pos = mine["pos"].to_numpy()
            base = 0
            for item in _batches(segment, schema):
                if isinstance(item, SegmentReport):
                    continue
                lo = int(np.searchsorted(offsets, base))
                hi = int(np.searchsorted(offsets, base + item.num_rows))
                start_row, base = base, base + item.num_rows
                if hi == lo:
                    continue
                by_group = np.argsort(group_of[lo:hi], kind="stable")
                local = offsets[lo:hi][by_group] - start_row
                taken = item.take(pa.array(local)).append_column(
                    "_pos", pa.array(pos[lo:hi][by_group])
                )
                sorted_groups = group_of[lo:hi][by_group]
                cuts = (np.flatnonzero(np.diff(sorted_groups)) + 1).tolist()
                for start, end in zip([0, *cuts], [*cuts, len(sorted_groups)], strict=True):
                    g = int(sorted_groups[start])
                    writers[g].write_batch(taken.slice(start, end - start))
                    rows[g] += end - start
            if base <= int(offsets[-1]):
                raise ArchiveError(
                    f"{segment.path}: rows read in the first pass were not there in the "
                    "second; was the journal changed during the archive?"
                )
    finally:
        for writer, sink in zip(writers, sinks, strict=True):
            writer.close()
            sink.close()
    return list(zip(paths, rows, strict=True))


def _read_group(path: Path, schema: pa.Schema) -> pa.Table:
    """One group's rows in the group's order (restored from the _pos column)."""
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_stream(source).read_all()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    order = np.argsort(frame["_pos"].to_numpy(), kind="stable")
    return frame.drop("_pos")[order].to_arrow().cast(schema)


def _prefetch(items: Iterator[Any]) -> Iterator[Any]:
    """Produce the next item on a thread while the consumer handles this one (2 cores: the
    next group's gather overlaps this group's Parquet compression)."""
    done = object()
    box: queue.Queue = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            for item in items:
                box.put(item)
            box.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            box.put(exc)

    threading.Thread(target=run, name="archive-prefetch", daemon=True).start()
    while (item := box.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _with_lookup(table: pa.Table, ranks: np.ndarray, lookup: pl.DataFrame) -> pa.Table:
    symbols = pa.array(lookup["symbol"].to_list(), pa.string())
    tables = pa.array(lookup["table_name"].to_list(), pa.string())
    index = pa.array(ranks)
    return table.append_column("symbol", symbols.take(index)).append_column(
        "table_name", tables.take(index)
    )


def _fingerprint_update(state: dict[str, Any], table: pa.Table) -> None:
    """Order-sensitive content fingerprint: per column, a running hash of the written values."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    for name in frame.columns:
        digest = frame[name].hash(seed=11).to_numpy()
        weights = np.arange(state["rows"] + 1, state["rows"] + 1 + len(digest), dtype=np.uint64)
        with np.errstate(over="ignore"):
            state.setdefault(name, np.uint64(0))
            state[name] = np.uint64(state[name] + np.sum(digest * weights, dtype=np.uint64))
    state["rows"] += table.num_rows


def fingerprint(table_batches: Sequence[pa.Table]) -> dict[str, str]:
    state: dict[str, Any] = {"rows": 0}
    for table in table_batches:
        _fingerprint_update(state, table)
    rows = state.pop("rows")
    return {"rows": str(rows), **{k: f"{int(v):016x}" for k, v in state.items()}}


def writer_options(schema: pa.Schema, level: int = 8) -> dict[str, Any]:
    """Per-column Parquet encodings for a tick table sorted by instrument and time.

    Measured on synthetic full-mode days (benchmarks/bench_archive.py): deltas for exchange
    and trade times and the day's cumulative counters; a dictionary for received_at (a frame's
    packets share one receipt time, so a day has few distinct values), for prices (few
    distinct per instrument) and for text; byte-split order counts; plain per-tick quantities
    (their repeats are left to zstd).
    """
    encodings = {}
    for f in schema:
        if f.name in ("received_at", "instrument_token"):
            continue
        if pa.types.is_timestamp(f.type) or f.name in _DELTA:
            encodings[f.name] = "DELTA_BINARY_PACKED"
        elif "_orders_" in f.name:
            encodings[f.name] = "BYTE_STREAM_SPLIT"
        elif pa.types.is_integer(f.type):
            encodings[f.name] = "PLAIN"
    return {
        "compression": "zstd",
        "compression_level": level,
        "use_dictionary": [f.name for f in schema if f.name not in encodings],
        "column_encoding": encodings,
    }


def archive_day(spec: ArchiveSpec, schema: pa.Schema, lookup: pl.DataFrame) -> DayArchive:
    """Archive one captured day (see the module doc); raises ArchiveError when it cannot."""
    started = time.perf_counter()
    _refuse_busy(spec.home, spec.venue, spec.day, "archive")
    if not spec.staging.is_dir():
        raise ArchiveError(
            f"no staging for {spec.venue} {spec.day} at {spec.staging}: was the capture run for "
            f"{spec.day}? (if this day was archived before, its staging was deleted after the "
            "checks passed and the lake partition is already there)"
        )
    lookup = lookup.unique("instrument_token", keep="first", maintain_order=True)
    payload = [n for n in schema.names if n not in RECEIPT_COLUMNS]

    segments: list[_Segment] = []
    totals = dict.fromkeys(_SUMMED, 0)
    notes: list[str] = []
    shards = day_runs(spec.home, spec.venue, spec.day)
    for shard, entry in shards.items():
        paths = ShardPaths(Path(spec.home), spec.venue, spec.day, shard)
        for run, counters in entry["runs"].items():
            for key in _SUMMED:
                totals[key] += counters.get(key, 0)
            if counters["state"] != "stopped":
                notes.append(
                    f"shard {shard} run {run} ended {counters['state']!r} (not stopped: a crash "
                    "or kill); its journal files are the truth for rows after its last counters "
                    "write"
                )
            segments.extend(_Segment(shard, run, p) for p in paths.journal_segments(run))

    archived = {f"{shard}/{run}" for shard, entry in shards.items() for run in entry["runs"]}
    carried = _previous_archive(spec, archived)
    if carried:
        covered, files = carried
        notes.append(
            f"the previous archive of {spec.day} also holds runs {sorted(covered - archived)} "
            "whose staging is gone; its rows are carried over (duplicates dropped)"
        )
        archived |= covered
        segments.extend(_Segment("(previous archive)", 0, p, kind="lake") for p in files)

    found = _plan(segments, spec, schema, payload, lookup)
    reports, drops, unknown, rows_total = found.reports, found.drops, found.unknown, found.read
    carried_rows = sum(
        r.rows for seg, r in zip(segments, reports, strict=True) if seg.kind == "lake"
    )
    rows_read = rows_total - carried_rows
    torn = [r for r in reports if r.torn]
    for segment, report in zip(segments, reports, strict=True):
        if segment.kind == "lake":
            continue
        entry = shards[segment.shard].setdefault("journal", {"rows": 0, "segments": 0, "torn": []})
        entry["rows"] += report.rows
        entry["segments"] += 1
        if report.torn:
            entry["torn"].append(f"{report.path.name}: {report.detail}")
    notes.extend(f"torn tail: {r.path.name}: {r.detail}" for r in torn)

    ordered = lookup.select(pl.col("instrument_token").cast(pl.Int64), "symbol", "table_name").sort(
        "symbol", "instrument_token"
    )
    out_schema = schema.append(pa.field("symbol", pa.string())).append(
        pa.field("table_name", pa.string())
    )
    state: dict[str, Any] = {"rows": 0}
    plan = _groups(found.rows)
    del found
    tmp = Path(spec.home) / "tmp" / f"archive-{spec.venue}-{spec.day}-{os.getpid()}"

    def groups(buckets: list[tuple[Path, int]]) -> Iterator[pa.Table]:
        for (path, _), ranks in zip(buckets, plan.partition_by("group", maintain_order=True),
                                    strict=True):  # fmt: skip
            table = _with_lookup(_read_group(path, schema), ranks["rank"].to_numpy(), ordered)
            path.unlink()
            yield table

    def pieces(buckets: list[tuple[Path, int]]) -> Iterator[pa.Table]:
        for table in _prefetch(groups(buckets)):
            _fingerprint_update(state, table)
            for offset in range(0, table.num_rows, ROW_GROUP_ROWS):
                yield table.slice(offset, ROW_GROUP_ROWS)

    clean = all(r["state"] == "stopped" for s in shards.values() for r in s["runs"].values())
    accounting = {
        "received": rows_total,
        "rows_from_previous_archive": carried_rows,
        "messages_received": totals["messages_received"],
        "messages_written": totals["messages_written"],
        "messages_lost_unflushed": totals["messages_received"] - totals["messages_written"],
        "heartbeats": totals["heartbeats"],
        "packets_decoded": totals["packets_decoded"],
        "rejected_frames": totals["rejected_frames"],
        "rejected_packets": totals["rejected_packets"],
        "capture_cached_superseded": totals["cached_superseded"],
        "capture_duplicates": totals["duplicates"],
        "rows_journaled": totals["rows_journaled"],
        "rows_read": rows_read,
        "dropped": dict(drops),
    }
    try:
        buckets = _bucket(plan, segments, schema, tmp)
        manifest = lake.write_partition_files(
            spec.home, spec.venue, ASSET, {"date": spec.day.isoformat()}, out_schema,
            [pieces(buckets)], accounting,
            source=(
                f"staging/{spec.venue}/{spec.day} journals of shards {', '.join(shards) or 'none'} "
                f"({len(segments)} segments), session {spec.session_start.isoformat()} .. "
                f"{spec.session_end.isoformat()}"
            ),
            time_column=spec.event_column,
            extra={"shards": shards, "unknown_instruments": unknown[:MAX_LISTED], "notes": notes,
                   "runs_archived": sorted(archived)},
            writer_options=writer_options(out_schema),
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows_written = manifest.rows
    journaled = totals["rows_journaled"]
    chain = {
        f"capture: messages received {totals['messages_received']} == written to the raw "
        f"archive {totals['messages_written']}"
        + ("" if clean else " (or more: a killed run's last unflushed messages are lost)"): (
            totals["messages_received"] == totals["messages_written"]
            if clean
            else totals["messages_received"] >= totals["messages_written"]
        ),
        f"capture: packets decoded {totals['packets_decoded']} == journaled {journaled} + "
        f"cached superseded {totals['cached_superseded']} + duplicates {totals['duplicates']}": (
            totals["packets_decoded"]
            == journaled + totals["cached_superseded"] + totals["duplicates"]
        ),
        f"journal: rows read {rows_read} == rows journaled {journaled}"
        + (
            ""
            if clean
            else " (or more: a run did not stop cleanly and journaled rows after its last counters write)"
        ): (rows_read == journaled if clean else rows_read >= journaled),
        f"journal: no torn tail in a cleanly stopped run ({len(torn)} torn)": not torn or not clean,
        f"archive: read {rows_total} (journals {rows_read} + previous archive {carried_rows}) == "
        f"written {rows_written} + outside session "
        f"{drops['outside_session']} + duplicates {drops['duplicates']} + unknown instrument "
        f"{drops['unknown_instrument']}": rows_total == rows_written + sum(drops.values()),
    }
    counts = (
        pl.DataFrame({"rank": plan["rank"]}).group_by("rank").len()
        if plan.height
        else pl.DataFrame({"rank": [], "len": []}, schema={"rank": pl.UInt32, "len": pl.UInt32})
    )
    present = set(ordered.with_row_index("rank").join(counts, on="rank")["instrument_token"])
    silent = [
        {"symbol": s, "table_name": t, "instrument_token": int(tok)}
        for tok, s, t in ordered.iter_rows()
        if tok not in present
    ]
    lengths = counts["len"].to_numpy() if counts.height else np.zeros(1)
    fp = {"rows": str(state.pop("rows")), **{k: f"{int(v):016x}" for k, v in state.items()}}
    return DayArchive(
        manifest=manifest,
        accounting=manifest.accounting,
        chain=chain,
        shards=shards,
        instruments_without_ticks=silent,
        ticks_per_instrument={
            "instruments": int(counts.height),
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        fingerprint=fp,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def verify_read_back(
    home: Path | str, venue: str, day: date, archive: DayArchive
) -> tuple[bool, str]:
    """Re-read the lake partition (hashes, rows, content) and compare with what was written."""
    partition = {"date": day.isoformat()}
    try:
        manifest = lake.verify_partition(home, venue, ASSET, partition)
        tables = []
        directory = lake.partition_dir(home, venue, ASSET, partition)
        for entry in manifest.files:
            parquet = pq.ParquetFile(directory / entry.name)
            tables.extend(
                pa.Table.from_batches([b]) for b in parquet.iter_batches(batch_size=ROW_GROUP_ROWS)
            )
    except lake.LakeError as exc:
        return False, str(exc)
    found = fingerprint(tables)
    if found["rows"] != archive.fingerprint["rows"]:
        return False, f"read back {found['rows']} rows, wrote {archive.fingerprint['rows']}"
    differ = [k for k, v in archive.fingerprint.items() if found.get(k) != v]
    if differ:
        return False, f"columns {differ} read back differ from what was written"
    return True, f"{found['rows']} rows and {len(found) - 1} columns read back equal"
