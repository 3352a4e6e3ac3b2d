"""The capture engine: one process, one websocket per shard, a writer thread per shard.

Per shard a supervisor coroutine connects (the venue adapter says where and how), sends the
subscribe requests, and runs the receive loop, which only stamps each message (venue clock and
monotonic clock) and hands it to the shard's inbox: decoding and disk I/O happen on the writer
thread, so a slow disk never stalls the socket. When the connection is lost, or the watchdog
finds it silent (no message, heartbeats included, for `stall_timeout_s`) and cuts it, the
supervisor reconnects after a capped, jittered exponential backoff and resubscribes. A connect
refused for bad credentials (Kite: HTTP 403, an expired access token) stops that shard for
good, with an alert: retrying cannot help until someone logs in again.

The engine stops on `stop()` (thread-safe), on SIGINT/SIGTERM (`run_capture`), at `stop_at_ns`
on the venue's clock, when its task is cancelled, or when no shard is left running; it then
closes the websockets, lets every writer drain and close its files, and returns a report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tick_assets.capture.backoff import Backoff
from tick_assets.capture.clock import Clock, wall_clock
from tick_assets.capture.counters import ShardCounters
from tick_assets.capture.gaps import iso
from tick_assets.capture.inbox import Event, Inbox, Sent
from tick_assets.capture.layout import ShardPaths, check_name
from tick_assets.capture.notify import Alert, AlertDispatcher, LogNotifier, Notifier
from tick_assets.capture.pipeline import CONNECTIONS_PER_RUN
from tick_assets.capture.venue import Credentials, VenueAdapter
from tick_assets.capture.writer import ShardWriter, WriterSettings
from tick_assets.sources.stream import redact

log = logging.getLogger(__name__)
# websockets logs the request line (with the access token in the URL) at DEBUG; never emit it.
_WS_LOG = logging.getLogger("tick_assets.capture.websocket")
_WS_LOG.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Shard:
    """One websocket's worth of instruments and the credentials to open it."""

    name: str
    instruments: tuple[int, ...]
    credentials: Credentials

    def __post_init__(self) -> None:
        check_name("shard", self.name)
        if not self.instruments:
            raise ValueError(f"shard {self.name!r} has no instruments")


@dataclass(frozen=True)
class CaptureSettings:
    home: Path  # TICK_ASSETS_HOME
    day: date  # the trading day the files belong to
    flush_interval_s: float = 0.2
    stall_timeout_s: float = 5.0  # no message at all for this long: cut and reconnect
    connect_timeout_s: float = 10.0
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 30.0
    stable_after_s: float = 5.0  # a connection up this long resets the backoff
    queue_max_bytes: int = 128 << 20  # per shard, in memory; beyond it messages spill to disk
    segment_max_bytes: int = 256 << 20
    journal_compression: str | None = "lz4"
    raw_level: int = 1
    down_alert_s: float = 30.0
    no_ticks_alert_s: float = 120.0  # in session, by the venue's clock
    stop_at_ns: int | None = None  # venue clock

    def __post_init__(self) -> None:
        positive = ("flush_interval_s", "stall_timeout_s", "connect_timeout_s",
                    "backoff_base_s", "backoff_cap_s", "down_alert_s", "no_ticks_alert_s")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"capture setting {name}={getattr(self, name)} must be > 0")
        if self.queue_max_bytes < 1 or self.segment_max_bytes < 1:
            raise ValueError("capture settings queue_max_bytes and segment_max_bytes must be >= 1")

    def writer_settings(self) -> WriterSettings:
        return WriterSettings(self.flush_interval_s, self.segment_max_bytes,
                              self.journal_compression, self.raw_level)  # fmt: skip


@dataclass
class ShardReport:
    shard: str
    run: int
    state: str  # stopped | failed
    failure: str | None
    counters: dict
    accounting: dict[str, bool]
    gaps: list[dict]
    latency: dict
    paths: ShardPaths


@dataclass
class CaptureReport:
    venue: str
    day: date
    stop_reason: str
    shards: list[ShardReport] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def shard(self, name: str) -> ShardReport:
        return next(s for s in self.shards if s.shard == name)


class ShardRunner:
    """Connect, subscribe, receive; reconnect with backoff; stop on rejected credentials."""

    def __init__(self, engine: CaptureEngine, shard: Shard) -> None:
        self.engine = engine
        self.shard = shard
        settings = engine.settings
        self.paths = ShardPaths(settings.home, engine.adapter.name, settings.day, shard.name)
        self.counters = ShardCounters()
        self.lock_fd = self.paths.lock()
        self.run_number = (self.paths.runs() or [0])[-1] + 1
        self.inbox = Inbox(self.paths.spill(self.run_number), settings.queue_max_bytes)
        self.writer = ShardWriter(
            shard.name, self.paths, self.run_number, engine.adapter, self.inbox, self.counters,
            shard.instruments, settings.writer_settings(), engine.clock,
        )  # fmt: skip
        self.request = engine.adapter.connect_request(shard.credentials)
        self.subscribe = engine.adapter.subscribe_messages(shard.instruments)
        self.state = "starting"
        self.failure: str | None = None
        self.ws: ClientConnection | None = None
        self._n = 0
        now = time.monotonic_ns()
        self.last_message_mono = now
        self.last_data_mono = self.connected_mono = now
        self.down_since: int | None = now  # not receiving yet
        self.down_alerted = False
        self.no_ticks_alerted = False
        self.stall_cause: str | None = None

    def _put(self, payload: Any, connection: int = 0) -> None:
        self.inbox.put((self.engine.clock(), time.monotonic_ns(), connection, payload))

    def _redact(self, text: str) -> str:
        return redact(text, self.request.secrets)[:300]

    async def run(self) -> None:
        engine, settings = self.engine, self.engine.settings
        backoff = Backoff(settings.backoff_base_s, settings.backoff_cap_s)
        c = self.counters
        while not engine.stopping:
            c.connect_attempts += 1
            self.state = "connecting"
            try:
                ws = await connect(
                    self.request.url,
                    additional_headers=dict(self.request.headers),
                    open_timeout=settings.connect_timeout_s,
                    close_timeout=1,
                    ping_interval=None,  # the venue's heartbeats and our watchdog do this job
                    max_size=None,
                    max_queue=64,
                    compression=None,
                    proxy=None,
                    logger=_WS_LOG,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified, recorded in the ledger, logged
                failure = engine.adapter.classify_connect_error(exc)
                reason = self._redact(failure.reason)
                c.connect_failures += 1
                self._put(
                    Event("connect_failed", {"cause": reason, "auth": failure.kind == "auth"})
                )
                if failure.kind == "auth":
                    self.failure = reason
                    self.state = "failed"
                    log.error("shard %s stopped: %s", self.shard.name, reason)
                    engine.alert("token_rejected", self.shard.name, reason)
                    return
                delay = backoff.next()
                log.warning("shard %s: %s (%s); retrying in %.2f s", self.shard.name, reason,
                            self._redact(str(exc)), delay)  # fmt: skip
                await engine.sleep(delay)
                continue
            self._n += 1
            connection = self.run_number * CONNECTIONS_PER_RUN + self._n
            connected_at = time.monotonic()
            cause, stalled = await self._stream(ws, connection)
            if engine.stopping:
                break
            c.disconnects += 1
            self._put(Event("disconnected", {"cause": cause, "stall": stalled}), connection)
            log.warning("shard %s connection %d lost: %s", self.shard.name, self._n, cause)
            if time.monotonic() - connected_at >= settings.stable_after_s:
                backoff.reset()
            self.state = "backoff"
            await engine.sleep(backoff.next())
        self.state = "stopped" if self.state != "failed" else self.state

    async def _stream(self, ws: ClientConnection, connection: int) -> tuple[str, bool]:
        """Subscribe and receive until the connection ends; returns (cause, was it a stall)."""
        self.ws = ws
        self.stall_cause = None
        self.counters.connects += 1
        self.last_message_mono = self.connected_mono = time.monotonic_ns()
        self._put(Event("connected", {"connection": connection}), connection)
        self.state = "streaming"
        put, now, mono = self.inbox.put, self.engine.clock, time.monotonic_ns
        c = self.counters
        try:
            for text in self.subscribe:
                self._put(Sent(text), connection)
                await ws.send(text)
            async for message in ws:
                m = mono()
                put((now(), m, connection, message))
                size = len(message)
                c.messages_received += 1
                c.bytes_received += size
                self.last_message_mono = m
                if size > 1:  # a 1-byte binary message is a heartbeat
                    self.last_data_mono = m
                if self.down_since is not None:
                    self._recovered()
            cause = f"closed by the server ({ws.close_code} {ws.close_reason or ''})".strip()
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                cause = "connection lost without a close frame"
            else:
                cause = f"closed by the server ({exc.rcvd.code} {exc.rcvd.reason})"
        finally:
            self.ws = None
            self.down_since = time.monotonic_ns()
        if self.stall_cause is not None:
            return self.stall_cause, True
        return cause, False

    def _recovered(self) -> None:
        if self.down_alerted:
            self.engine.alert("shard_recovered", self.shard.name, "receiving again")
        self.down_since = None
        self.down_alerted = False

    def check(self, now_mono: int, venue_now: int, loop_on_time: bool = True) -> None:
        """The watchdog, run by the engine's monitor a few times per second.

        When the monitor itself ran late, this process was starved (not the socket): data may
        be waiting unread, so no stall is declared until the receive loop had its turn.
        """
        settings = self.engine.settings
        ws = self.ws
        silent = (now_mono - self.last_message_mono) / 1e9
        if (
            ws is not None
            and loop_on_time
            and self.stall_cause is None
            and silent > settings.stall_timeout_s
        ):
            self.stall_cause = (
                f"stall: no message (heartbeats included) for {silent:.1f} s "
                f"(limit {settings.stall_timeout_s:g} s); connection cut by the watchdog"
            )
            self.counters.stalls += 1
            ws.transport.abort()
        if self.down_since is not None and not self.down_alerted and self.state != "failed":
            down = (now_mono - self.down_since) / 1e9
            if down > settings.down_alert_s:
                self.down_alerted = True
                self.engine.alert("shard_down", self.shard.name,
                                  f"not receiving for {down:.0f} s ({self.state})")  # fmt: skip
        # no ticks: counted while connected (while down, shard_down says it)
        quiet = (now_mono - max(self.last_data_mono, self.connected_mono)) / 1e9
        if ws is None or quiet <= settings.no_ticks_alert_s:
            self.no_ticks_alerted = False
        elif (
            not self.no_ticks_alerted
            and self.state != "failed"
            and self.engine.adapter.in_session(venue_now)
        ):
            self.no_ticks_alerted = True
            message = f"no ticks for {quiet:.0f} s during market hours"
            self.engine.alert("no_ticks", self.shard.name, message)

    async def close(self) -> None:
        ws = self.ws
        if ws is None:
            return
        try:
            await asyncio.wait_for(ws.close(), 2)
        except (TimeoutError, ConnectionClosed, OSError):
            ws.transport.abort()

    def report(self) -> ShardReport:
        return ShardReport(
            shard=self.shard.name,
            run=self.run_number,
            state="failed" if self.failure or self.writer.error else "stopped",
            failure=self.failure or (repr(self.writer.error) if self.writer.error else None),
            counters=self.counters.snapshot(),
            accounting=self.counters.accounting(),
            gaps=[g.to_json() for g in self.writer.ledger.closed],
            latency=self.writer.latency.day_summary(),
            paths=self.paths,
        )


class CaptureEngine:
    def __init__(
        self,
        adapter: VenueAdapter,
        shards: Sequence[Shard],
        settings: CaptureSettings,
        clock: Clock = wall_clock,
        notifiers: Sequence[Notifier] | None = None,
    ) -> None:
        if not shards:
            raise ValueError("the capture needs at least one shard")
        names = [s.name for s in shards]
        if len(set(names)) != len(names):
            raise ValueError(f"shard names must be unique, got {names}")
        self.adapter, self.shards, self.settings, self.clock = (
            adapter,
            list(shards),
            settings,
            clock,
        )
        self.notifiers = list(notifiers) if notifiers is not None else [LogNotifier()]
        self.stopping = False
        self.stop_reason = ""
        self.runners: list[ShardRunner] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._dispatcher: AlertDispatcher | None = None
        self._alerts: list[Alert] = []

    # --- control ----------------------------------------------------------------------------

    def stop(self, reason: str = "stop requested") -> None:
        """Ask a running engine to stop cleanly (safe from any thread or a signal handler)."""
        loop, event = self._loop, self._stop_event
        if loop is None or event is None:
            return
        if not self.stop_reason:
            self.stop_reason = reason
        loop.call_soon_threadsafe(event.set)

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking early if the engine stops."""
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    def alert(self, kind: str, shard: str, message: str) -> None:
        alert = Alert(kind, self.adapter.name, shard, message, at=iso(self.clock()) or "")  # type: ignore[arg-type]
        self._alerts.append(alert)
        if self._dispatcher is not None:
            self._dispatcher.alert(alert)

    # --- run ----------------------------------------------------------------------------------

    async def run(self) -> CaptureReport:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._dispatcher = AlertDispatcher(self.notifiers)
        try:
            for shard in self.shards:
                self.runners.append(ShardRunner(self, shard))
            for runner in self.runners:
                runner._put(Event("started", {"run": runner.run_number}))
                runner.writer.prepare()
                runner.writer.start()
            errors = await self._capture()
        finally:
            await self._shutdown()
        failed = [r for r in self.runners if r.writer.error is not None]
        if errors:
            raise errors[0]
        if failed:
            error = failed[0].writer.error
            raise RuntimeError(
                f"capture writer of shard {failed[0].shard.name} failed: {error!r}"
            ) from error
        return CaptureReport(self.adapter.name, self.settings.day, self.stop_reason,
                             [r.report() for r in self.runners], list(self._alerts))  # fmt: skip

    async def _capture(self) -> list[BaseException]:
        """Run every shard until a stop; returns the errors the shard tasks raised."""
        assert self._stop_event is not None
        tasks = [asyncio.create_task(r.run(), name=f"capture-{r.shard.name}") for r in self.runners]
        monitor = asyncio.create_task(self._monitor(tasks), name="capture-monitor")
        try:
            await self._stop_event.wait()
        finally:
            self.stopping = True
            if not self.stop_reason:
                self.stop_reason = "cancelled"
            self._stop_event.set()
            await asyncio.gather(*(r.close() for r in self.runners))
            results = await asyncio.gather(*tasks, return_exceptions=True)
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        return [r for r in results
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]  # fmt: skip

    async def _shutdown(self) -> None:
        """Let every writer drain and close its files; release the shard locks."""
        loop = asyncio.get_running_loop()
        self.stopping = True
        for runner in self.runners:
            runner._put(Event("stopping", {"reason": self.stop_reason}))
            runner.writer.stop()
        for runner in self.runners:
            if runner.writer.started:
                await loop.run_in_executor(None, runner.writer.join)
            os.close(runner.lock_fd)
        if self._dispatcher is not None:
            await loop.run_in_executor(None, self._dispatcher.close)

    async def _monitor(self, tasks: list[asyncio.Task]) -> None:
        period = min(0.25, self.settings.stall_timeout_s / 4)
        stop_at = self.settings.stop_at_ns
        previous = time.monotonic_ns()
        while not self.stopping:
            await asyncio.sleep(period)
            now_mono, venue_now = time.monotonic_ns(), self.clock()
            on_time = (now_mono - previous) / 1e9 < 2 * period
            previous = now_mono
            if stop_at is not None and venue_now >= stop_at:
                self.stop(f"deadline {iso(stop_at)} reached (venue clock)")
            for runner in self.runners:
                if runner.writer.error is not None:
                    self.stop(f"writer of shard {runner.shard.name} failed")
                runner.check(now_mono, venue_now, on_time)
            done = [t for t in tasks if t.done()]
            if len(done) == len(tasks):
                self.stop("no shard left running")
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self.stop(f"{task.get_name()} failed: {task.exception()!r}")


def run_capture(engine: CaptureEngine) -> CaptureReport:
    """Run the engine until it stops; SIGINT/SIGTERM stop it cleanly (main thread only)."""

    async def main() -> CaptureReport:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, engine.stop, f"signal {signal.Signals(sig).name}")
        return await engine.run()

    return asyncio.run(main())
