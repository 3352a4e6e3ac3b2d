"""Latency percentiles per shard per minute: exchange -> received, and received -> journaled.

Each minute keeps two log-scale histograms (1% wide bins from 1 µs to ~10^6 s), so a whole day
costs a few kB per minute whatever the tick rate, and percentiles are read off with 1%
resolution (reported at the bin's upper edge, i.e. never flattering). A minute is written out as
one JSON line once the stream has moved past it, and the open minute at stop.

exchange -> received compares the venue's timestamp (Kite: whole seconds) with the receipt stamp
on the venue clock, so it carries up to a second of truncation. received -> journaled is
measured on the monotonic clock, from receipt to the fsync that made the row durable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

_GROWTH = 1.01
_FLOOR_NS = 1_000.0  # values under 1 µs share the first bin
BINS = int(np.ceil(np.log(1e15 / _FLOOR_NS) / np.log(_GROWTH))) + 1
_UPPER_EDGES_NS = _FLOOR_NS * _GROWTH ** np.arange(1, BINS + 1)
QUANTILES = (0.5, 0.9, 0.99, 0.999)
MINUTE_NS = 60_000_000_000


def bin_of(values_ns: np.ndarray) -> np.ndarray:
    v = np.maximum(values_ns.astype(np.float64), _FLOOR_NS)
    return np.minimum((np.log(v / _FLOOR_NS) / np.log(_GROWTH)).astype(np.int64), BINS - 1)


@dataclass
class Histogram:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))
    negative: int = 0  # e.g. an exchange clock ahead of ours
    max_ns: int = 0

    def add(self, values_ns: np.ndarray) -> None:
        if not len(values_ns):
            return
        neg = values_ns < 0
        self.negative += int(neg.sum())
        ok = values_ns[~neg]
        if len(ok):
            self.counts += np.bincount(bin_of(ok), minlength=BINS)
            self.max_ns = max(self.max_ns, int(ok.max()))

    def merge(self, other: Histogram) -> None:
        self.counts += other.counts
        self.negative += other.negative
        self.max_ns = max(self.max_ns, other.max_ns)

    @property
    def count(self) -> int:
        return int(self.counts.sum()) + self.negative

    def quantile_ns(self, q: float) -> float | None:
        """Upper bound of the q-quantile (negative values count as the lowest)."""
        total = self.count
        if total == 0:
            return None
        rank = q * total
        if rank <= self.negative:
            return 0.0
        cum = np.cumsum(self.counts) + self.negative
        i = int(np.searchsorted(cum, rank))
        return float(min(_UPPER_EDGES_NS[min(i, BINS - 1)], self.max_ns))

    def summary_ms(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"count": self.count, "negative": self.negative}
        for q in QUANTILES:
            v = self.quantile_ns(q)
            out[f"p{q * 100:g}"] = None if v is None else round(v / 1e6, 3)
        out["max"] = round(self.max_ns / 1e6, 3) if self.count else None
        return out


@dataclass
class _Minute:
    exchange: Histogram = field(default_factory=Histogram)
    journal: Histogram = field(default_factory=Histogram)


class LatencyRecorder:
    """Per-minute histograms of one shard, appended to `path` as JSON lines."""

    def __init__(self, shard: str, path: Path | None) -> None:
        self.shard = shard
        self.path = path
        self._minutes: dict[int, _Minute] = {}
        self.day_exchange = Histogram()
        self.day_journal = Histogram()

    def add(
        self, received_ns: np.ndarray, exchange_ns: np.ndarray, journaled_delay_ns: np.ndarray
    ) -> None:
        """One flush: per row its receipt (venue clock), venue timestamp (<0: none) and delay."""
        if not len(received_ns):
            return
        minute = received_ns // MINUTE_NS
        first, last = int(minute[0]), int(minute[-1])
        if first == last:
            ranges: list[tuple[int, slice | np.ndarray]] = [(first, slice(None))]
        else:
            ranges = [(int(m), minute == m) for m in np.unique(minute)]
        for m, sel in ranges:
            bucket = self._minutes.setdefault(m, _Minute())
            rec, exch = received_ns[sel], exchange_ns[sel]
            has = exch >= 0
            bucket.exchange.add(rec[has] - exch[has])
            bucket.journal.add(journaled_delay_ns[sel])
        self._write(done_before=last)

    def _write(self, done_before: int | None) -> None:
        done = sorted(m for m in self._minutes if done_before is None or m < done_before)
        lines = []
        for m in done:
            bucket = self._minutes.pop(m)
            self.day_exchange.merge(bucket.exchange)
            self.day_journal.merge(bucket.journal)
            lines.append(
                json.dumps({
                    "shard": self.shard,
                    "minute": datetime.fromtimestamp(m * 60, UTC).isoformat(),
                    "ticks": bucket.journal.count,
                    "exchange_to_received_ms": bucket.exchange.summary_ms(),
                    "received_to_journaled_ms": bucket.journal.summary_ms(),
                })
            )  # fmt: skip
        if lines and self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        """Write out the open minute(s)."""
        self._write(done_before=None)

    def day_summary(self) -> dict[str, dict]:
        """Whole-run percentiles (including minutes not yet written)."""
        exchange, journal = Histogram(), Histogram()
        exchange.merge(self.day_exchange)
        journal.merge(self.day_journal)
        for bucket in self._minutes.values():
            exchange.merge(bucket.exchange)
            journal.merge(bucket.journal)
        return {
            "exchange_to_received_ms": exchange.summary_ms(),
            "received_to_journaled_ms": journal.summary_ms(),
        }


def read_latency(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
