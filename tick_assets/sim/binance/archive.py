"""The simulated data.binance.vision: spot 1m kline zips and their .CHECKSUM files.

Layout (as the real archive, under the venue's archive root):

    data/spot/monthly/klines/<SYM>/1m/<SYM>-1m-<YYYY>-<MM>.zip[.CHECKSUM]
    data/spot/daily/klines/<SYM>/1m/<SYM>-1m-<YYYY>-<MM>-<DD>.zip[.CHECKSUM]

Each zip holds one headerless CSV of the same base name; a .CHECKSUM is ``<sha256>  <name>``.
A daily file exists once its day has ended, a monthly file from the first Monday after its
month (Binance's publication rule), neither before the pair's listing nor after its
delisting; a missing file is a 404 with S3's NoSuchKey XML. Files are built on first request
(vectorised, deflate level 1 so a month builds in ~0.2 s) and kept in a byte-bounded cache.

Faults (``ArchiveFaults``) make a path serve a corrupt zip (a zip whose bytes are damaged,
with a CHECKSUM that matches those damaged bytes: only opening the zip finds it), a CHECKSUM
that does not match the zip, or a 404 for a whole month, each for the next ``times`` requests.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from tick_assets.sim.binance.market import (
    KlineModel,
    day_bounds_ms,
    klines_csv,
    month_index,
    month_start,
)

ZIP_LEVEL = 1
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
_MONTHLY = re.compile(
    r"^data/spot/monthly/klines/(?P<sym>[A-Z0-9]{2,20})/1m/(?P=sym)-1m-(?P<y>\d{4})-(?P<m>\d{2})\.zip(?P<ck>\.CHECKSUM)?$"
)
_DAILY = re.compile(
    r"^data/spot/daily/klines/(?P<sym>[A-Z0-9]{2,20})/1m/(?P=sym)-1m-(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\.zip(?P<ck>\.CHECKSUM)?$"
)


@dataclass(frozen=True)
class ArchiveFile:
    """A resolved archive path: which pair and period, and whether the .CHECKSUM is wanted."""

    path: str  # the zip's path (without .CHECKSUM)
    symbol: str
    start: datetime
    end: datetime
    monthly: bool
    checksum: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def parse_path(path: str) -> ArchiveFile | None:
    """The file a request path names, or None if it is not a spot 1m kline zip/CHECKSUM."""
    if m := _MONTHLY.match(path):
        start = datetime(int(m["y"]), int(m["m"]), 1, tzinfo=UTC)
        mi = month_index(start.year, start.month)
        end = month_start(mi + 1)
        monthly = True
    elif m := _DAILY.match(path):
        try:
            day = date(int(m["y"]), int(m["m"]), int(m["d"]))
        except ValueError:
            return None
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        monthly = False
    else:
        return None
    zip_path = path.removesuffix(".CHECKSUM")
    return ArchiveFile(zip_path, m["sym"], start, end, monthly, bool(m["ck"]))


def publication_time(f: ArchiveFile) -> datetime:
    """When Binance publishes the file: daily the next day, monthly the first Monday after."""
    if not f.monthly:
        return f.end
    day = f.end
    return day + timedelta(days=(7 - day.weekday()) % 7)


@dataclass
class ArchiveFaults:
    """Pending faults per zip path (counts of requests still to be served badly)."""

    corrupt: dict[str, int] = field(default_factory=dict)
    bad_checksum: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)  # 404 until cleared


def corrupt_bytes(good: bytes) -> bytes:
    """Damage a zip the way a broken upload does: scramble a run of its compressed data."""
    data = bytearray(good)
    middle = len(data) // 2
    for i in range(middle, min(middle + 64, len(data) - 200)):
        data[i] ^= 0x5A
    return bytes(data)


class Archive:
    """Builds, caches and serves archive files; thread-safe."""

    def __init__(self, model: KlineModel, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.model = model
        self.cache_bytes = cache_bytes
        self.faults = ArchiveFaults()
        self._cache: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self.stats = {"zip_requests": 0, "checksum_requests": 0, "not_found": 0,
                      "bytes_served": 0, "built": 0, "corrupt_served": 0,
                      "bad_checksum_served": 0}  # fmt: skip

    # --- availability -------------------------------------------------------------------

    def exists(self, f: ArchiveFile, now: datetime) -> bool:
        pair = self.model.pair(f.symbol)
        if pair is None or now < publication_time(f):
            return False
        if pair.listed_at >= f.end:
            return False
        if pair.delisted_at is not None and pair.delisted_at <= f.start:
            return False
        with self._lock:
            if self.faults.missing.get(f.path, 0):
                return False
        return True

    # --- building -------------------------------------------------------------------------

    def good(self, f: ArchiveFile) -> tuple[bytes, str]:
        """(zip bytes, sha256 hex) of the file as published, built once and cached."""
        with self._lock:
            hit = self._cache.get(f.path)
            if hit is not None:
                self._cache.move_to_end(f.path)
                return hit
            gate = self._building.setdefault(f.path, threading.Lock())
        with gate:  # one builder per path; others wait for it and take the cached result
            with self._lock:
                hit = self._cache.get(f.path)
                if hit is not None:
                    return hit
            built = self._build(f)
            with self._lock:
                self._cache[f.path] = built
                self._cached += len(built[0])
                self.stats["built"] += 1
                while self._cached > self.cache_bytes and len(self._cache) > 1:
                    _, (old, _) = self._cache.popitem(last=False)
                    self._cached -= len(old)
                self._building.pop(f.path, None)
            return built

    def _build(self, f: ArchiveFile) -> tuple[bytes, str]:
        start_ms = int(f.start.timestamp() * 1000)
        end_ms = int(f.end.timestamp() * 1000)
        if not f.monthly:
            start_ms, end_ms = day_bounds_ms(f.start.date())
        csv_bytes = klines_csv(self.model.klines_between(f.symbol, start_ms, end_ms))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
            info = zipfile.ZipInfo(
                f.name.removesuffix(".zip") + ".csv", date_time=(2025, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, csv_bytes, compresslevel=ZIP_LEVEL)
        data = buffer.getvalue()
        return data, hashlib.sha256(data).hexdigest()

    # --- serving (None: 404) -----------------------------------------------------------------

    def serve(self, f: ArchiveFile, now: datetime) -> bytes | None:
        with self._lock:
            self.stats["checksum_requests" if f.checksum else "zip_requests"] += 1
        if not self.exists(f, now):
            with self._lock:
                self.stats["not_found"] += 1
            return None
        data, sha = self.good(f)
        bad_sum = False
        with self._lock:
            corrupt = self.faults.corrupt.get(f.path, 0) > 0
            if f.checksum:
                bad_sum = self.faults.bad_checksum.get(f.path, 0) > 0
                if bad_sum:
                    self.faults.bad_checksum[f.path] -= 1
                    self.stats["bad_checksum_served"] += 1
            elif corrupt:
                self.faults.corrupt[f.path] -= 1
                self.stats["corrupt_served"] += 1
        if corrupt:
            data = corrupt_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
        if f.checksum:
            if bad_sum:
                sha = hashlib.sha256(sha.encode()).hexdigest()  # a well-formed, wrong digest
            body = f"{sha}  {f.name}\n".encode()
        else:
            body = data
        with self._lock:
            self.stats["bytes_served"] += len(body)
        return body

    # --- faults -----------------------------------------------------------------------------

    def inject(self, kind: str, path: str, times: int) -> None:
        table = {"corrupt_zip": self.faults.corrupt, "checksum_mismatch": self.faults.bad_checksum,
                 "missing": self.faults.missing}[kind]  # fmt: skip
        with self._lock:
            table[path] = times

    def clear(self) -> None:
        with self._lock:
            self.faults = ArchiveFaults()

    def prepare(self, paths: list[str]) -> int:
        """Build (and cache) these zips now; returns the bytes built. For benchmarks."""
        total = 0
        for path in paths:
            f = parse_path(path)
            if f is None:
                raise ValueError(f"{path!r} is not a spot 1m kline archive path")
            total += len(self.good(f)[0])
        return total


def monthly_path(symbol: str, year: int, month: int) -> str:
    return f"data/spot/monthly/klines/{symbol}/1m/{symbol}-1m-{year:04d}-{month:02d}.zip"


def daily_path(symbol: str, day: date) -> str:
    return f"data/spot/daily/klines/{symbol}/1m/{symbol}-1m-{day.isoformat()}.zip"
