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
import shutil
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
GROUP_ROWS = 1_500_000
ROW_GROUP_ROWS = 256_000
MAX_LISTED = 200
#: Parquet encodings for a sorted tick table: deltas for timestamps and counters, byte-split
#: floats, dictionaries for the low-cardinality text; zstd over all of it.
_DELTA = ("last_trade_time", "exchange_timestamp", "received_at", "volume_traded")


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


# --- pass 1: keys ------------------------------------------------------------------------------------


@dataclass
class _Segment:
    shard: str
    run: int
    path: Path
    rows: int = 0


@dataclass
class _Keys:
    token: np.ndarray
    event_ns: np.ndarray  # -1: null
    received_ns: np.ndarray
    digest: np.ndarray  # uint64 hash of the payload columns
    segment: np.ndarray  # index into the segment list
    offset: np.ndarray  # row within the segment


def _read_keys(
    segments: list[_Segment], spec: ArchiveSpec, payload: list[str]
) -> tuple[_Keys, list[SegmentReport]]:
    tokens, events, received, digests, seg_ids, offsets = [], [], [], [], [], []
    reports: list[SegmentReport] = []
    for index, segment in enumerate(segments):
        for item in iter_segment(segment.path):
            if isinstance(item, SegmentReport):
                reports.append(item)
                continue
            frame = pl.from_arrow(item)
            assert isinstance(frame, pl.DataFrame)
            tokens.append(frame[spec.key_column].cast(pl.Int64).to_numpy())
            events.append(frame[spec.event_column].dt.epoch("ns").fill_null(-1).to_numpy())
            received.append(frame["received_at"].dt.epoch("ns").to_numpy())
            digests.append(frame.select(payload).hash_rows(seed=7).to_numpy())
            seg_ids.append(np.full(frame.height, index, dtype=np.int32))
            offsets.append(np.arange(segment.rows, segment.rows + frame.height, dtype=np.int64))
            segment.rows += frame.height

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

    keys = _Keys(
        cat(tokens, np.int64), cat(events, np.int64), cat(received, np.int64),
        cat(digests, np.uint64), cat(seg_ids, np.int32), cat(offsets, np.int64),
    )  # fmt: skip
    return keys, reports


# --- the archive --------------------------------------------------------------------------------------


def _plan(
    keys: _Keys, spec: ArchiveSpec, lookup: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, int], list[int]]:
    """Rows to write, in order (with their symbol rank), the drop counts and unknown tokens."""
    start = int(spec.session_start.timestamp() * 1e9)
    end = int(spec.session_end.timestamp() * 1e9)
    frame = pl.DataFrame(
        {
            "token": keys.token,
            "event": keys.event_ns,
            "received": keys.received_ns,
            "digest": keys.digest,
            "segment": keys.segment,
            "offset": keys.offset,
        }
    ).with_row_index("row")
    when = pl.when(pl.col("event") >= 0).then(pl.col("event")).otherwise(pl.col("received"))
    in_session = (when >= start) & (when <= end)
    outside = frame.filter(~in_session).height
    frame = frame.filter(in_session)

    # duplicates: same instrument and payload (event time included); the earliest receipt stays
    frame = frame.sort(["received", "row"])
    timed = pl.col("event") >= 0
    first = pl.struct("token", "digest").is_first_distinct()
    keep = ~timed | first
    duplicates = frame.filter(~keep).height
    frame = frame.filter(keep)

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
        ["rank", pl.when(timed).then(pl.col("event")).otherwise(None), "received", "row"],
        nulls_last=True,
    )
    drops = {
        "outside_session": outside,
        "duplicates": duplicates,
        "unknown_instrument": unknown_rows.height,
    }
    return frame.select("rank", "segment", "offset"), drops, unknown


def _groups(plan: pl.DataFrame) -> list[pl.DataFrame]:
    """Consecutive slices of the plan, cut between instruments, of about GROUP_ROWS rows."""
    if plan.height == 0:
        return []
    counts = plan.group_by("rank", maintain_order=True).len()
    groups, start, size = [], 0, 0
    for n in counts["len"].to_list():
        if size and size + n > GROUP_ROWS:
            groups.append(plan.slice(start, size))
            start, size = start + size, 0
        size += n
    groups.append(plan.slice(start, size))
    return groups


def _gather(group: pl.DataFrame, segments: list[_Segment], schema: pa.Schema) -> pa.Table:
    """The group's rows from the journals, in the group's order (one segment batch at a time)."""
    order = group.with_row_index("position")
    pieces: list[pa.Table] = []
    positions: list[np.ndarray] = []
    for index in order["segment"].unique().sort().to_list():
        wanted = order.filter(pl.col("segment") == index).sort("offset")
        offsets = wanted["offset"].to_numpy()
        where = wanted["position"].to_numpy()
        base, taken = 0, 0
        for item in iter_segment(segments[index].path):
            if isinstance(item, SegmentReport):
                continue
            lo = int(np.searchsorted(offsets, base))
            hi = int(np.searchsorted(offsets, base + item.num_rows))
            if hi > lo:
                local = pa.array(offsets[lo:hi] - base)
                pieces.append(pa.Table.from_batches([item.take(local)], schema=schema))
                positions.append(where[lo:hi])
                taken += hi - lo
            base += item.num_rows
            if hi == len(offsets):
                break
        if taken != len(offsets):
            raise ArchiveError(
                f"{segments[index].path}: {len(offsets) - taken} rows read in the first pass "
                "were not there in the second; was the journal changed during the archive?"
            )
    table = pa.concat_tables(pieces)
    back = np.argsort(np.concatenate(positions), kind="stable")
    return table.take(pa.array(back))


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


def writer_options(schema: pa.Schema) -> dict[str, Any]:
    encodings = {}
    for f in schema:
        if f.name in _DELTA:
            encodings[f.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(f.type):
            encodings[f.name] = "BYTE_STREAM_SPLIT"
    dictionary = [f.name for f in schema if f.name not in encodings]
    return {
        "compression": "zstd",
        "compression_level": 6,
        "use_dictionary": dictionary,
        "column_encoding": encodings,
        "write_statistics": ["symbol", "exchange_timestamp", "instrument_token"],
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
    shards: dict[str, dict[str, Any]] = {}
    totals = dict.fromkeys(_SUMMED, 0)
    notes: list[str] = []
    for shard in shard_names(spec.home, spec.venue, spec.day):
        paths = ShardPaths(Path(spec.home), spec.venue, spec.day, shard)
        runs = {}
        for run in paths.runs():
            state, counters = _run_counters(paths, run)
            runs[run] = {"state": state, **counters}
            for key, value in counters.items():
                totals[key] += value
            if state != "stopped":
                notes.append(
                    f"shard {shard} run {run} ended {state!r} (not stopped: a crash or kill); "
                    "its journal files are the truth for rows after its last counters write"
                )
            segments.extend(_Segment(shard, run, p) for p in paths.journal_segments(run))
        shards[shard] = {"runs": runs}

    keys, reports = _read_keys(segments, spec, payload)
    torn = [r for r in reports if r.torn]
    for segment, report in zip(segments, reports, strict=True):
        entry = shards[segment.shard].setdefault("journal", {"rows": 0, "segments": 0, "torn": []})
        entry["rows"] += report.rows
        entry["segments"] += 1
        if report.torn:
            entry["torn"].append(f"{report.path.name}: {report.detail}")
    plan, drops, unknown = _plan(keys, spec, lookup)
    rows_read = len(keys.token)

    ordered = lookup.select(pl.col("instrument_token").cast(pl.Int64), "symbol", "table_name").sort(
        "symbol", "instrument_token"
    )
    out_schema = schema.append(pa.field("symbol", pa.string())).append(
        pa.field("table_name", pa.string())
    )
    state: dict[str, Any] = {"rows": 0}

    def pieces() -> Iterator[pa.Table]:
        for group in _groups(plan):
            table = _with_lookup(
                _gather(group, segments, schema), group["rank"].to_numpy(), ordered
            )
            _fingerprint_update(state, table)
            for offset in range(0, table.num_rows, ROW_GROUP_ROWS):
                yield table.slice(offset, ROW_GROUP_ROWS)

    clean = all(r["state"] == "stopped" for s in shards.values() for r in s["runs"].values())
    accounting = {
        "received": rows_read,
        "messages_received": totals["messages_received"],
        "messages_written": totals["messages_written"],
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
    manifest = lake.write_partition_files(
        spec.home, spec.venue, ASSET, {"date": spec.day.isoformat()}, out_schema, [pieces()],
        accounting,
        source=(
            f"staging/{spec.venue}/{spec.day} journals of shards {', '.join(shards) or 'none'} "
            f"({len(segments)} segments), session {spec.session_start.isoformat()} .. "
            f"{spec.session_end.isoformat()}"
        ),
        time_column=spec.event_column,
        extra={"shards": shards, "unknown_instruments": unknown[:MAX_LISTED], "notes": notes},
        writer_options=writer_options(out_schema),
    )  # fmt: skip
    rows_written = manifest.rows
    journaled = totals["rows_journaled"]
    chain = {
        f"capture: messages received {totals['messages_received']} == written to the raw "
        f"archive {totals['messages_written']}": totals["messages_received"]
        == totals["messages_written"],
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
        f"archive: read {rows_read} == written {rows_written} + outside session "
        f"{drops['outside_session']} + duplicates {drops['duplicates']} + unknown instrument "
        f"{drops['unknown_instrument']}": rows_read == rows_written + sum(drops.values()),
    }
    if torn:
        notes.extend(f"torn tail: {r.path.name}: {r.detail}" for r in torn)
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
