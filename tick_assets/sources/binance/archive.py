"""Client of Binance's public bulk archive (data.binance.vision): checksummed kline zips.

Paths (spot, 1m): ``data/spot/monthly/klines/SYM/1m/SYM-1m-YYYY-MM.zip`` and
``data/spot/daily/klines/SYM/1m/SYM-1m-YYYY-MM-DD.zip``, each with ``.zip.CHECKSUM`` in
sha256sum format (``<hex>  <file name>``). ``fetch_csv`` downloads the CHECKSUM and the zip,
checks the zip's sha256 against it and opens the zip (CRC of its one CSV member); a file that
fails either check is downloaded once more, and if it is still bad ``ArchiveIntegrityError``
names the URL and both problems. A file the archive does not have (404) raises
``ArchiveFileMissing``, which callers answer by falling back (daily files, then REST).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import date

import requests

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
_CHECKSUM_RE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S+)\s*$")
TRANSIENT_ATTEMPTS = 3


class ArchiveError(RuntimeError):
    """A bulk-archive download failed; the message names the URL."""


class ArchiveFileMissing(ArchiveError):
    """The archive has no such file (HTTP 404): not published (yet), or never."""


class ArchiveIntegrityError(ArchiveError):
    """A file failed its checksum or zip check twice (the first download and one refetch)."""


def check_symbol(symbol: str) -> str:
    if not SYMBOL_RE.match(symbol):
        raise ValueError(
            f"{symbol!r} is not a Binance spot symbol (upper-case letters and digits, e.g. BTCUSDT)"
        )
    return symbol


def monthly_path(symbol: str, year: int, month: int, interval: str = "1m") -> str:
    s = check_symbol(symbol)
    return f"data/spot/monthly/klines/{s}/{interval}/{s}-{interval}-{year:04d}-{month:02d}.zip"


def daily_path(symbol: str, day: date, interval: str = "1m") -> str:
    s = check_symbol(symbol)
    return f"data/spot/daily/klines/{s}/{interval}/{s}-{interval}-{day.isoformat()}.zip"


@dataclass
class FetchRecord:
    """What one archive file took: for the partition manifest."""

    path: str
    sha256: str = ""
    bytes: int = 0
    downloads: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "downloads": self.downloads,
            "problems": list(self.problems),
        }


def parse_checksum(text: str, zip_name: str) -> str:
    """The hex digest of a ``.CHECKSUM`` body, which must name ``zip_name``."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or not (m := _CHECKSUM_RE.match(lines[0])):
        raise ValueError(f"CHECKSUM is not '<sha256>  <file>' (got {text[:120]!r})")
    if m[2] != zip_name:
        raise ValueError(f"CHECKSUM names {m[2]!r}, not {zip_name!r}")
    return m[1].lower()


def unzip_single_csv(data: bytes, zip_name: str) -> bytes:
    """The one CSV inside a kline zip, CRC-checked; ValueError describing any damage."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            expected = zip_name.removesuffix(".zip") + ".csv"
            if names != [expected]:
                raise ValueError(f"zip holds {names}, expected exactly [{expected!r}]")
            return zf.read(expected)  # raises BadZipFile on a CRC mismatch
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ValueError(f"corrupt zip ({type(exc).__name__}: {exc})") from None


class BinanceArchive:
    """Downloads verified kline CSVs from an archive root (real or the simulator's)."""

    def __init__(
        self, root: str, *, timeout: float = 60.0, session: requests.Session | None = None
    ) -> None:
        self.root = root.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def url(self, path: str) -> str:
        return f"{self.root}/{path}"

    def _get(self, path: str) -> requests.Response:
        """GET with a few retries on connection errors and 5xx (not on 404 or 4xx)."""
        url = self.url(path)
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                response = self.session.get(url, timeout=self.timeout)
            except requests.RequestException as exc:
                if attempt == TRANSIENT_ATTEMPTS:
                    raise ArchiveError(f"GET {url} failed: {type(exc).__name__}: {exc}") from None
            else:
                if response.status_code < 500 or attempt == TRANSIENT_ATTEMPTS:
                    return response
            time.sleep(0.5 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _download(self, path: str, record: FetchRecord) -> tuple[bytes | None, str]:
        """One download of CHECKSUM + zip: (csv bytes, "") if good, (None, problem) if not."""
        zip_name = path.rsplit("/", 1)[1]
        record.downloads += 1
        checksum = self._get(path + ".CHECKSUM")
        data = self._get(path)
        if data.status_code == 404:
            raise ArchiveFileMissing(f"{self.url(path)}: not in the archive (HTTP 404)")
        if data.status_code != 200:
            return None, f"zip: HTTP {data.status_code}"
        if checksum.status_code != 200:
            return None, f"CHECKSUM: HTTP {checksum.status_code} (cannot verify the zip)"
        record.bytes = len(data.content)
        record.sha256 = hashlib.sha256(data.content).hexdigest()
        try:
            expected = parse_checksum(checksum.text, zip_name)
        except ValueError as exc:
            return None, str(exc)
        if record.sha256 != expected:
            return None, f"sha256 {record.sha256} does not match the CHECKSUM's {expected}"
        try:
            return unzip_single_csv(data.content, zip_name), ""
        except ValueError as exc:
            return None, str(exc)

    def fetch_csv(self, path: str) -> tuple[bytes, FetchRecord]:
        """The verified CSV of an archive zip, refetching once if it arrives damaged."""
        record = FetchRecord(path)
        for _ in range(2):
            csv_bytes, problem = self._download(path, record)
            if csv_bytes is not None:
                return csv_bytes, record
            record.problems.append(problem)
        raise ArchiveIntegrityError(
            f"{self.url(path)} is still bad after one refetch: first download: "
            f"{record.problems[0]}; refetch: {record.problems[1]}. Nothing was written for "
            "this partition; retry later (Binance re-uploads damaged files) or report it."
        )
