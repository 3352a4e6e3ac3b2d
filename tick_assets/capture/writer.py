"""A shard's writer thread: every flush interval, archive, decode, journal, fsync.

Per flush, in this order: drain the inbox; append every message (and sent request and
connection event) to the raw archive and fsync it; decode and drop cached repeats; append the
rows to the journal and fsync it (the rows are now durable: that instant is "journaled" for the
latency figures); then update the gap ledger, the live quotes file and the counters file. The
raw archive is synced first, so it always holds at least what the journal holds.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tick_assets.capture.clock import Clock
from tick_assets.capture.counters import ShardCounters
from tick_assets.capture.gaps import GapLedger, iso
from tick_assets.capture.inbox import Event, Inbox, Item, encode_payload
from tick_assets.capture.latency import LatencyRecorder
from tick_assets.capture.layout import ShardPaths
from tick_assets.capture.live import last_per_slot, read_live_file
from tick_assets.capture.pipeline import Batch, TickPipeline, connection_name
from tick_assets.capture.venue import VenueAdapter
from tick_assets.store.journal import JournalWriter, read_segments
from tick_assets.store.raw_archive import BINARY, SENT, TEXT, RawArchiveWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterSettings:
    flush_interval_s: float = 0.2
    segment_max_bytes: int = 256 << 20
    journal_compression: str | None = "lz4"
    raw_level: int = 1


class ShardWriter:
    def __init__(
        self,
        shard: str,
        paths: ShardPaths,
        run: int,
        adapter: VenueAdapter,
        inbox: Inbox,
        counters: ShardCounters,
        instruments: Sequence[int],
        settings: WriterSettings,
        clock: Clock,
    ) -> None:
        self.shard, self.paths, self.run = shard, paths, run
        self.adapter, self.inbox, self.counters = adapter, inbox, counters
        self.settings, self.clock = settings, clock
        self.pipeline = TickPipeline(adapter, counters, instruments)
        self.ledger = GapLedger(paths.gaps, shard)
        self.latency = LatencyRecorder(shard, paths.latency)
        self.part = 0
        self.journal: JournalWriter | None = None
        self.raw: RawArchiveWriter | None = None
        self.error: BaseException | None = None
        self.state = "new"
        self.started = False
        self._connection: int | None = None  # current connection, None while down
        self._await_first = False  # a gap is open and a connection is up: next message ends it
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"capture-writer-{shard}", daemon=True
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open this run's files, remember the earlier runs' latest ticks, open a restart gap."""
        previous = [r for r in self.paths.runs() if r < self.run]
        if previous:
            self._resume_after(previous[-1])
        self._open_segments()
        self._write_counters()
        self.state = "running"

    def start(self) -> None:
        self._thread.start()
        self.started = True

    def stop(self) -> None:
        """Ask the thread to drain everything, close the files and finish."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        interval = self.settings.flush_interval_s
        try:
            deadline = time.monotonic() + interval
            while not self._stop.wait(max(0.0, deadline - time.monotonic())):
                self.flush()
                deadline = max(deadline + interval, time.monotonic())
            while self.flush():  # drain what is left, then close
                pass
            self._close()
        except BaseException as exc:  # noqa: BLE001 - handed to the engine, which stops and raises
            self.error = exc
            self.state = "failed"
            log.exception("capture writer of shard %s failed", self.shard)

    # --- one flush ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything queued so far; returns how many items it took."""
        items = self.inbox.drain()
        if not items:
            return 0
        self.write(items)
        return len(items)

    def write(self, items: list[Item]) -> None:
        assert self.raw is not None and self.journal is not None
        c = self.counters
        batch = Batch([], [], [], [], [])
        add = self.raw.add
        messages, received, monotonic, connections = (
            batch.messages, batch.received_ns, batch.monotonic_ns, batch.connections)  # fmt: skip
        for stamp, mono, conn, payload in items:
            kind, data = encode_payload(payload)
            add(kind, conn, stamp, data)
            if kind in (BINARY, TEXT):
                if self._await_first:
                    self._await_first = False
                    self.ledger.close(stamp, connection_name(self.shard, conn))
                messages.append(payload)  # type: ignore[arg-type]
                received.append(stamp)
                monotonic.append(mono)
                connections.append(conn)
            elif kind == SENT:
                instruments = self.adapter.subscribed_instruments(payload.text)  # type: ignore[union-attr]
                if instruments is not None:
                    batch.subscribes.append((len(messages), instruments))
            else:
                last = received[-1] if received else c.last_message_ns
                self._on_event(stamp, conn, payload, last)  # type: ignore[arg-type]
        self.raw.sync()
        if messages or batch.subscribes:  # a subscribe alone still primes the dedupe
            c.messages_written += len(messages)
            c.last_message_ns = received[-1] if received else c.last_message_ns
            rows = self.pipeline.process(batch, self.shard)
            self.journal.append(rows.table)
            self.journal.sync()
            done = time.monotonic_ns()
            c.rows_journaled += rows.table.num_rows
            self.latency.add(rows.received_ns, rows.event_ns, done - rows.monotonic_ns)
            if self.pipeline.latest.dirty:
                self.pipeline.latest.write(self.paths.live)
        c.spilled_messages = self.inbox.spilled_items
        c.spill_drained = self.inbox.drained_spill_items
        c.flushes += 1
        self._write_counters()
        if self.journal.size > self.settings.segment_max_bytes:
            self._close_segments()
            self._open_segments()

    def _on_event(self, stamp: int, conn: int, event: Event, last_message: int | None) -> None:
        """Keep the gap ledger: a gap opens on a loss and closes at the next first message."""
        ledger, detail = self.ledger, event.detail
        if event.name == "connected":
            ledger.attempt()
            self._connection = conn
            self._await_first = ledger.current is not None
        elif event.name in ("disconnected", "connect_failed"):
            before = self._connection
            if event.name == "disconnected":
                kind = "stall" if detail.get("stall") else "disconnect"
            else:
                kind = "token_rejected" if detail.get("auth") else "connect_failed"
            ledger.open(
                kind,
                str(detail.get("cause", "")),
                last_message or stamp,
                stamp,
                None if before is None else connection_name(self.shard, before),
            )
            if event.name == "connect_failed":
                ledger.attempt()
            self._connection = None
            self._await_first = False

    # --- files ----------------------------------------------------------------------------------

    def _open_segments(self) -> None:
        self.part += 1
        self.journal = JournalWriter(
            self.paths.journal_segment(self.run, self.part),
            self.adapter.schema,
            self.settings.journal_compression,
        )
        self.raw = RawArchiveWriter(
            self.paths.raw_segment(self.run, self.part), self.settings.raw_level
        )

    def _close_segments(self) -> None:
        if self.raw is not None:
            self.raw.close()
        if self.journal is not None:
            self.journal.close()

    def _close(self) -> None:
        now = self.clock()
        if self.ledger.current is not None:
            self.ledger.close(now, None, at_stop=True)
        self.latency.close()
        self._close_segments()
        if self.pipeline.latest.dirty:
            self.pipeline.latest.write(self.paths.live)
        self.inbox.close()
        self.state = "stopped"
        self._write_counters()

    def _write_counters(self) -> None:
        path = self.paths.counters(self.run)
        body = {
            "venue": self.adapter.name,
            "shard": self.shard,
            "run": self.run,
            "state": self.state,
            "updated_at": iso(self.clock()),
            "counters": self.counters.snapshot(),
            "journal_segments": [p.name for p in self.paths.journal_segments(self.run)],
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(body, indent=1))
        os.replace(tmp, path)

    # --- restart --------------------------------------------------------------------------------

    def _resume_after(self, previous: int) -> None:
        """Seed the cached-tick memory from earlier runs and open the gap since the last one."""
        pipeline = self.pipeline
        if self.paths.live.exists():
            try:
                pipeline.seed(read_live_file(self.paths.live))
            except (pa.ArrowInvalid, OSError) as exc:
                log.warning(
                    "live quotes of shard %s unreadable (%s); not seeding from it", self.shard, exc
                )
        last_segment = self.paths.journal_segments(previous)[-1:]
        table, reports = read_segments(last_segment, self.adapter.schema)
        for report in reports:
            if report.torn or not report.complete:
                log.warning("journal %s: %s", report.path.name, report.detail)
        if table.num_rows:
            keys = table.column(self.adapter.key_column).to_numpy(zero_copy_only=False)
            _, last = last_per_slot(pipeline.index.slots(keys))
            pipeline.seed(table.take(pa.array(last)))
        for run in range(1, previous + 1):
            spill = self.paths.spill(run)
            if spill.exists() and spill.stat().st_size:
                log.error(
                    "shard %s: %s holds %d bytes of messages that run %d received but may not "
                    "have journaled (it stopped while spilling); kept for a manual replay",
                    self.shard, spill.name, spill.stat().st_size, run,
                )  # fmt: skip
        state, last_ns = _previous_state(self.paths.counters(previous))
        if last_ns is None and table.num_rows:
            last_ns = table.column("received_at").cast(pa.int64())[-1].as_py()
        if last_ns is None:
            return
        how = ("stopped cleanly" if state == "stopped"
               else "ended without a clean stop (crash or kill); rows not yet fsynced were lost")  # fmt: skip
        cause = f"capture not running: run {previous} {how}; run {self.run} started"
        self.ledger.open("restart", cause, last_ns, self.clock())
        self._await_first = False  # closed by the first message after the first connect


def _previous_state(path: Path) -> tuple[str | None, int | None]:
    if not path.exists():
        return None, None
    try:
        body = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        log.warning("counters file %s unreadable (%s)", path.name, exc)
        return None, None
    return body.get("state"), body.get("counters", {}).get("last_message_ns")
