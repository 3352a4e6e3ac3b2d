"""The Parquet lake: one hive-partitioned dataset per asset, each partition with a manifest.

Layout (DESIGN.md): ``<home>/lake/<venue>/<asset>/<key>=<value>/.../part-<n>.parquet`` plus a
``_manifest.json`` beside the files that records row counts, the time range, the sha256 of each
file and the accounting of how the partition was made.

A partition is written into a hidden sibling directory, every file is fsynced, and the directory
is then renamed into place (the old one renamed aside first, then deleted), so a reader sees the
old partition or the new one, never a mix; in the instant between the two renames the partition
is absent and a reader gets PartitionNotFoundError. A re-run replaces the partition instead of
appending to it. A crash leaves hidden leftovers (removed by the next write of the partition)
and, only if it struck between the two renames, a missing partition to re-materialize. One
writer per partition at a time (Dagster's partitioned runs give that). Readers read exactly the
files the manifest lists, and ``verify_partition`` re-hashes them, so a torn or tampered file
is found and named.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT = 1
PARQUET_COMPRESSION = "zstd"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,127}$")
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "+00:00", "Z"})
_HASH_CHUNK = 1 << 20


class LakeError(Exception):
    """Base class for lake errors."""


class PartitionNotFoundError(LakeError, FileNotFoundError):
    """The partition has no manifest: it was never written (or was deleted)."""


class LakeIntegrityError(LakeError):
    """A partition's files do not match its manifest (missing, altered, extra or torn)."""


@dataclass(frozen=True)
class FileEntry:
    """One data file of a partition, as recorded in the manifest."""

    name: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class TimeRange:
    """Smallest and largest value of a UTC timestamp column, ISO-8601 with offset."""

    column: str
    min: str | None
    max: str | None


@dataclass(frozen=True)
class Manifest:
    """The ``_manifest.json`` of one lake partition."""

    venue: str
    asset: str
    partition: dict[str, str]
    files: tuple[FileEntry, ...]
    rows: int
    columns: tuple[tuple[str, str], ...]
    time_range: TimeRange | None
    accounting: dict[str, Any]
    created_at: str
    source: str
    format: int = MANIFEST_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> dict[str, str]:
        """File name -> sha256 hex digest."""
        return {f.name: f.sha256 for f in self.files}

    def to_json(self) -> str:
        doc = asdict(self)
        doc["columns"] = [{"name": n, "type": t} for n, t in self.columns]
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: Path | str = "<manifest>") -> Manifest:
        try:
            doc = json.loads(text)
            if doc.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unsupported manifest format {doc.get('format')!r}")
            time_range = doc.get("time_range")
            return cls(
                venue=doc["venue"],
                asset=doc["asset"],
                partition=dict(doc["partition"]),
                files=tuple(FileEntry(**f) for f in doc["files"]),
                rows=int(doc["rows"]),
                columns=tuple((c["name"], c["type"]) for c in doc["columns"]),
                time_range=TimeRange(**time_range) if time_range else None,
                accounting=dict(doc["accounting"]),
                created_at=doc["created_at"],
                source=doc["source"],
                format=doc["format"],
                extra=dict(doc.get("extra", {})),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LakeIntegrityError(f"manifest {origin} is unreadable: {exc}") from exc


# ---------------------------------------------------------------- paths and validation


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid lake {kind} {name!r}: use lowercase letters, digits and '_' "
            "(starting with a letter, at most 64 characters)"
        )
    return name


def _check_partition(partition: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(partition, Mapping):
        raise TypeError(f"partition must be a mapping of column -> value, got {type(partition)}")
    checked: dict[str, str] = {}
    for key, value in partition.items():
        _check_name("partition column", key)
        if (
            not isinstance(value, str)
            or not _VALUE_RE.match(value)
            or ".." in value
            or value in (".", "..")
        ):
            raise ValueError(
                f"invalid value {value!r} for lake partition column {key!r}: use letters, digits "
                "and '_', '.', '+', '-' (no '/', no '..', not starting with a dot)"
            )
        checked[key] = value
    return checked


def lake_root(home: Path | str) -> Path:
    """``<home>/lake``."""
    return Path(home) / "lake"


def dataset_dir(home: Path | str, venue: str, asset: str) -> Path:
    """Directory of one asset's dataset: ``<home>/lake/<venue>/<asset>``."""
    return lake_root(home) / _check_name("venue", venue) / _check_name("asset", asset)


def partition_dir(home: Path | str, venue: str, asset: str, partition: Mapping[str, str]) -> Path:
    """Directory of one partition, e.g. ``<home>/lake/kite/instruments/date=2025-01-02``."""
    path = dataset_dir(home, venue, asset)
    for key, value in _check_partition(partition).items():
        path = path / f"{key}={value}"
    return path


# ---------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_arrow(table: pa.Table | pl.DataFrame) -> pa.Table:
    if isinstance(table, pl.DataFrame):
        return table.to_arrow()
    if isinstance(table, pa.Table):
        return table
    raise TypeError(f"expected a pyarrow.Table or polars.DataFrame, got {type(table).__name__}")


def _check_timestamps_utc(table: pa.Table) -> None:
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.tz not in _UTC_NAMES:
            raise ValueError(
                f"column {f.name!r} is {f.type}; lake timestamps must be timezone-aware UTC "
                "(convert with .dt.convert_time_zone('UTC') / .cast(pa.timestamp(unit, 'UTC')))"
            )


def _time_range(table: pa.Table, column: str) -> TimeRange:
    if column not in table.column_names:
        raise ValueError(f"time_column {column!r} is not a column of the table")
    col = table.column(column)
    if not pa.types.is_timestamp(col.type):
        raise ValueError(f"time_column {column!r} has type {col.type}, expected a UTC timestamp")
    mm = pc.min_max(col)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    return TimeRange(
        column=column,
        min=lo.astimezone(UTC).isoformat() if lo is not None else None,
        max=hi.astimezone(UTC).isoformat() if hi is not None else None,
    )


def _normalise_accounting(accounting: Mapping[str, Any], rows: int) -> dict[str, Any]:
    if not isinstance(accounting, Mapping):
        raise TypeError("accounting must be a mapping such as {'received': n, 'dropped': {...}}")
    out: dict[str, Any] = {}
    for key, value in accounting.items():
        if key == "dropped":
            if not isinstance(value, Mapping):
                raise ValueError("accounting['dropped'] must map a reason to a row count")
            for reason, n in value.items():
                if not isinstance(reason, str) or not isinstance(n, int) or n < 0:
                    raise ValueError(
                        f"accounting['dropped'][{reason!r}] = {n!r}: expected reason -> count >= 0"
                    )
            out[key] = dict(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"accounting[{key!r}] = {value!r}: expected a count >= 0")
        else:
            out[key] = value
    if out.setdefault("written", rows) != rows:
        raise ValueError(
            f"accounting['written'] = {out['written']} but the table has {rows} rows; "
            "pass the number of rows actually written (or leave it out)"
        )
    out.setdefault("dropped", {})
    return out


def unaccounted_rows(accounting: Mapping[str, Any]) -> int | None:
    """``received - written - sum(dropped)``: 0 when every received row is explained.

    None when the accounting has no ``received`` count to balance against.
    """
    if "received" not in accounting:
        return None
    dropped = sum(accounting.get("dropped", {}).values())
    return int(accounting["received"]) - int(accounting.get("written", 0)) - dropped


# ---------------------------------------------------------------- write


def write_partition(
    home: Path | str,
    venue: str,
    asset: str,
    partition: Mapping[str, str],
    table: pa.Table | pl.DataFrame,
    accounting: Mapping[str, Any],
    *,
    source: str = "",
    time_column: str | None = None,
    rows_per_file: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Manifest:
    """Write (or idempotently replace) one lake partition and its manifest.

    ``accounting`` explains how the rows came to be, e.g. ``{"received": 90_000, "dropped":
    {"outside_session": 12}}``; ``written`` is filled in (or checked) from the table. Partition
    columns live in the directory names, not in the files. Returns the manifest written.
    """
    arrow = _to_arrow(table)
    if rows_per_file is not None and rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    step = rows_per_file or max(arrow.num_rows, 1)
    files = [[arrow.slice(offset, step)] for offset in range(0, max(arrow.num_rows, 1), step)]
    return write_partition_files(
        home, venue, asset, partition, arrow.schema, files, accounting,
        source=source, time_column=time_column, extra=extra,
    )  # fmt: skip


def write_partition_files(
    home: Path | str,
    venue: str,
    asset: str,
    partition: Mapping[str, str],
    schema: pa.Schema,
    files: Iterable[Iterable[pa.Table]],
    accounting: Mapping[str, Any],
    *,
    source: str = "",
    time_column: str | None = None,
    extra: Mapping[str, Any] | None = None,
    writer_options: Mapping[str, Any] | None = None,
) -> Manifest:
    """Write (or replace) a partition streamed in pieces: ``files`` yields, per Parquet file,
    the tables that become its row groups, so a partition larger than memory can be written.

    ``writer_options`` are extra pyarrow.parquet.ParquetWriter arguments (encodings,
    compression level, dictionary columns). Same atomic replace and manifest as write_partition.
    """
    part = _check_partition(partition)
    clash = sorted(set(part) & set(schema.names))
    if clash:
        raise ValueError(
            f"columns {clash} are partition columns of {venue}/{asset}; drop them from the "
            "table (hive partitions carry them in the directory names)"
        )
    _check_timestamps_utc(schema.empty_table())
    if time_column is not None:
        _time_range(schema.empty_table(), time_column)  # validates the column
    options = {"compression": PARQUET_COMPRESSION, **(writer_options or {})}

    final = partition_dir(home, venue, asset, part)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(parent, final.name)

    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=parent))
    old: Path | None = None
    try:
        entries, lows, highs = [], [], []
        for n, pieces in enumerate(files):
            name = f"part-{n}.parquet"
            path = tmp / name
            rows = 0
            with open(path, "wb") as fh:
                with pq.ParquetWriter(fh, schema, **options) as writer:
                    for piece in pieces:
                        if not piece.schema.equals(schema):
                            raise ValueError(
                                f"a piece of {venue}/{asset} {part} has schema {piece.schema}, "
                                f"expected {schema}"
                            )
                        if piece.num_rows:
                            writer.write_table(piece)
                            rows += piece.num_rows
                            if time_column is not None:
                                mm = pc.min_max(piece.column(time_column))
                                lows.append(mm["min"].as_py())
                                highs.append(mm["max"].as_py())
                fh.flush()
                os.fsync(fh.fileno())
            entries.append(
                FileEntry(name=name, rows=rows, bytes=path.stat().st_size, sha256=sha256_file(path))
            )
        total = sum(e.rows for e in entries)
        time_range = None
        if time_column is not None:
            lo = min((v for v in lows if v is not None), default=None)
            hi = max((v for v in highs if v is not None), default=None)
            time_range = TimeRange(
                column=time_column,
                min=lo.astimezone(UTC).isoformat() if lo is not None else None,
                max=hi.astimezone(UTC).isoformat() if hi is not None else None,
            )
        manifest = Manifest(
            venue=venue,
            asset=asset,
            partition=part,
            files=tuple(entries),
            rows=total,
            columns=tuple((f.name, str(f.type)) for f in schema),
            time_range=time_range,
            accounting=_normalise_accounting(accounting, total),
            created_at=datetime.now(UTC).isoformat(),
            source=source,
            extra=dict(extra or {}),
        )
        with open(tmp / MANIFEST_NAME, "w", encoding="utf-8") as fh:
            fh.write(manifest.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)

        if final.exists():
            old = parent / f".{final.name}.old-{uuid.uuid4().hex}"
            os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError:
            if old is not None:
                os.rename(old, final)
                old = None
            raise
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)
    return manifest


def _remove_leftovers(parent: Path, name: str) -> None:
    """Delete temp/old directories a crashed earlier write of this partition left behind."""
    for prefix in (f".{name}.tmp-", f".{name}.old-"):
        for stale in parent.glob(prefix + "*"):
            shutil.rmtree(stale)


# ---------------------------------------------------------------- read and verify


def read_manifest(
    home: Path | str, venue: str, asset: str, partition: Mapping[str, str]
) -> Manifest:
    """The manifest of a partition; PartitionNotFoundError (naming the path) if absent."""
    path = partition_dir(home, venue, asset, partition) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PartitionNotFoundError(
            f"lake partition {venue}/{asset} {dict(partition)} has no manifest at {path}; "
            "materialize it first"
        ) from None
    return Manifest.from_json(text, origin=path)


def read_partition(
    home: Path | str,
    venue: str,
    asset: str,
    partition: Mapping[str, str],
    *,
    columns: list[str] | None = None,
    verify: bool = False,
) -> pa.Table:
    """Read exactly the files the manifest lists (optionally verifying their hashes first)."""
    manifest = (
        verify_partition(home, venue, asset, partition)
        if verify
        else read_manifest(home, venue, asset, partition)
    )
    directory = partition_dir(home, venue, asset, partition)
    tables = []
    for entry in manifest.files:
        path = directory / entry.name
        try:
            tables.append(pq.read_table(path, columns=columns))
        except FileNotFoundError:
            raise LakeIntegrityError(
                f"{path} is listed in {directory / MANIFEST_NAME} but missing"
            ) from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise LakeIntegrityError(f"{path} is not a readable Parquet file: {exc}") from exc
    return pa.concat_tables(tables)


def verify_partition(
    home: Path | str, venue: str, asset: str, partition: Mapping[str, str]
) -> Manifest:
    """Re-check every file against the manifest: presence, size, sha256, row counts.

    Raises LakeIntegrityError naming the first offending file; returns the manifest if all match.
    """
    manifest = read_manifest(home, venue, asset, partition)
    directory = partition_dir(home, venue, asset, partition)
    listed = {entry.name for entry in manifest.files}
    for entry in manifest.files:
        path = directory / entry.name
        if not path.is_file():
            raise LakeIntegrityError(f"{path}: listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.bytes:
            raise LakeIntegrityError(
                f"{path}: size {size} bytes, manifest says {entry.bytes}; the file was altered"
            )
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise LakeIntegrityError(
                f"{path}: sha256 {digest} does not match the manifest's {entry.sha256}; "
                "the file was altered or corrupted"
            )
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise LakeIntegrityError(f"{path}: not a readable Parquet file: {exc}") from exc
        if rows != entry.rows:
            raise LakeIntegrityError(f"{path}: {rows} rows, manifest says {entry.rows}")
    total = sum(entry.rows for entry in manifest.files)
    if total != manifest.rows:
        raise LakeIntegrityError(
            f"{directory / MANIFEST_NAME}: files hold {total} rows but the manifest says "
            f"{manifest.rows}"
        )
    strays = sorted(p.name for p in directory.glob("*.parquet") if p.name not in listed)
    if strays:
        raise LakeIntegrityError(
            f"{directory}: files {strays} are not in the manifest; they were not written by "
            "write_partition and would be read by glob-based readers"
        )
    return manifest


def list_partitions(home: Path | str, venue: str, asset: str) -> list[dict[str, str]]:
    """Partitions of a dataset that have a manifest, sorted by their directory path."""
    root = dataset_dir(home, venue, asset)
    found = []
    for manifest_path in sorted(root.rglob(MANIFEST_NAME)):
        rel = manifest_path.parent.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if any("=" not in part for part in rel.parts):
            raise LakeError(
                f"{manifest_path} is not in a <column>=<value> partition directory of {root}"
            )
        found.append(_check_partition(dict(part.split("=", 1) for part in rel.parts)))
    return found
