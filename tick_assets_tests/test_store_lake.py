"""The Parquet lake writer/reader: layout, manifests, idempotent replace, integrity checks."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tick_assets.store import lake

DAY = {"date": "2025-01-02"}


def _ticks(n: int, start: datetime | None = None) -> pa.Table:
    start = start or datetime(2025, 1, 2, 3, 45, tzinfo=UTC)
    return pa.table(
        {
            "instrument_token": pa.array(range(n), pa.int64()),
            "last_price": pa.array([100.0 + i for i in range(n)], pa.float64()),
            "exchange_timestamp": pa.array(
                [start + timedelta(seconds=i) for i in range(n)], pa.timestamp("ns", "UTC")
            ),
        }
    )


def test_write_then_read_round_trip_with_manifest(tmp_path):
    table = _ticks(10)
    manifest = lake.write_partition(
        tmp_path,
        "kite",
        "ticks",
        DAY,
        table,
        {"received": 12, "dropped": {"outside_session": 2}},
        source="unit test",
        time_column="exchange_timestamp",
    )
    directory = tmp_path / "lake" / "kite" / "ticks" / "date=2025-01-02"
    assert sorted(p.name for p in directory.iterdir()) == ["_manifest.json", "part-0.parquet"]
    data_file = directory / "part-0.parquet"
    assert pq.ParquetFile(data_file).metadata.row_group(0).column(0).compression == "ZSTD"

    on_disk = json.loads((directory / "_manifest.json").read_text())
    assert on_disk["rows"] == 10
    assert on_disk["partition"] == DAY
    assert on_disk["files"][0]["sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert on_disk["files"][0]["bytes"] == data_file.stat().st_size
    assert on_disk["accounting"] == {
        "received": 12,
        "written": 10,
        "dropped": {"outside_session": 2},
    }
    assert on_disk["time_range"] == {
        "column": "exchange_timestamp",
        "min": "2025-01-02T03:45:00+00:00",
        "max": "2025-01-02T03:45:09+00:00",
    }
    assert datetime.fromisoformat(on_disk["created_at"]).utcoffset() == timedelta(0)
    assert on_disk["source"] == "unit test"

    assert lake.read_manifest(tmp_path, "kite", "ticks", DAY) == manifest
    assert lake.read_partition(tmp_path, "kite", "ticks", DAY, verify=True).equals(table)
    assert lake.unaccounted_rows(manifest.accounting) == 0


def test_polars_frame_is_accepted_and_hive_readers_see_the_partition_column(tmp_path):
    frame = pl.DataFrame({"symbol": ["M&M", "BAJAJ-AUTO"], "token": [1, 2]})
    lake.write_partition(tmp_path, "kite", "instruments", DAY, frame, {"received": 2})
    back = pl.read_parquet(
        tmp_path / "lake" / "kite" / "instruments" / "**" / "*.parquet", hive_partitioning=True
    )
    assert back["symbol"].to_list() == ["M&M", "BAJAJ-AUTO"]
    assert back["date"].cast(pl.Utf8).to_list() == ["2025-01-02", "2025-01-02"]


def test_rewrite_replaces_partition_without_leftovers(tmp_path):
    lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(30), {}, rows_per_file=10)
    directory = lake.partition_dir(tmp_path, "kite", "ticks", DAY)
    assert sorted(p.name for p in directory.glob("*.parquet")) == [
        "part-0.parquet",
        "part-1.parquet",
        "part-2.parquet",
    ]
    second = lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(5), {})
    assert [f.name for f in second.files] == ["part-0.parquet"]
    assert sorted(p.name for p in directory.iterdir()) == ["_manifest.json", "part-0.parquet"]
    assert [p.name for p in directory.parent.iterdir()] == ["date=2025-01-02"]
    assert lake.read_partition(tmp_path, "kite", "ticks", DAY, verify=True).num_rows == 5


def test_rows_per_file_splits_and_reads_back_in_order(tmp_path):
    table = _ticks(25)
    manifest = lake.write_partition(tmp_path, "kite", "ticks", DAY, table, {}, rows_per_file=10)
    assert [f.rows for f in manifest.files] == [10, 10, 5]
    assert lake.read_partition(tmp_path, "kite", "ticks", DAY).equals(table)


def test_empty_table_keeps_its_schema(tmp_path):
    empty = _ticks(0)
    manifest = lake.write_partition(tmp_path, "kite", "ticks", DAY, empty, {"received": 0})
    assert manifest.rows == 0 and len(manifest.files) == 1
    back = lake.read_partition(tmp_path, "kite", "ticks", DAY, verify=True)
    assert back.num_rows == 0 and back.schema.equals(empty.schema)


def test_failed_write_leaves_previous_partition_intact(tmp_path, monkeypatch):
    lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(3), {})

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(lake.pq.ParquetWriter, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(7), {})
    monkeypatch.undo()
    assert lake.verify_partition(tmp_path, "kite", "ticks", DAY).rows == 3
    parent = lake.partition_dir(tmp_path, "kite", "ticks", DAY).parent
    assert [p.name for p in parent.iterdir()] == ["date=2025-01-02"]


def test_leftovers_of_a_crashed_write_are_removed_by_the_next_write(tmp_path):
    parent = lake.dataset_dir(tmp_path, "kite", "ticks")
    (parent / ".date=2025-01-02.tmp-dead").mkdir(parents=True)
    (parent / ".date=2025-01-02.tmp-dead" / "part-0.parquet").write_bytes(b"torn")
    lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(2), {})
    assert [p.name for p in parent.iterdir()] == ["date=2025-01-02"]


@pytest.mark.parametrize(
    "partition",
    [
        {"date": "../../etc"},
        {"date": ".."},
        {"date": "a/b"},
        {"date": "a\\b"},
        {"date": ".hidden"},
        {"date": "2025..01"},
        {"date": ""},
        {"Date": "2025-01-02"},
        {"da/te": "2025-01-02"},
        {"date": 20250102},
    ],
)
def test_unsafe_partition_keys_and_values_are_rejected(tmp_path, partition):
    with pytest.raises((ValueError, TypeError), match="partition"):
        lake.write_partition(tmp_path, "kite", "ticks", partition, _ticks(1), {})
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))


@pytest.mark.parametrize("venue,asset", [("../kite", "ticks"), ("kite", "ti/cks"), ("", "x")])
def test_unsafe_venue_or_asset_names_are_rejected(tmp_path, venue, asset):
    with pytest.raises(ValueError, match="invalid lake"):
        lake.write_partition(tmp_path, venue, asset, DAY, _ticks(1), {})


def test_partition_column_inside_table_is_rejected(tmp_path):
    table = _ticks(2).append_column("date", pa.array(["2025-01-02"] * 2))
    with pytest.raises(ValueError, match="partition columns"):
        lake.write_partition(tmp_path, "kite", "ticks", DAY, table, {})


@pytest.mark.parametrize("tz", [None, "Asia/Kolkata"])
def test_non_utc_timestamps_are_rejected(tmp_path, tz):
    table = pa.table({"t": pa.array([datetime(2025, 1, 2, 9, 15)], pa.timestamp("us", tz))})
    with pytest.raises(ValueError, match="timezone-aware UTC"):
        lake.write_partition(tmp_path, "kite", "ticks", DAY, table, {})


def test_accounting_is_validated(tmp_path):
    with pytest.raises(ValueError, match="accounting\\['written'\\] = 9 but the table has 3"):
        lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(3), {"written": 9})
    with pytest.raises(ValueError, match="dropped"):
        lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(3), {"dropped": {"dup": -1}})
    with pytest.raises(ValueError, match="received"):
        lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(3), {"received": "3"})
    assert lake.unaccounted_rows({"received": 10, "written": 7, "dropped": {"dup": 2}}) == 1
    assert lake.unaccounted_rows({"written": 7}) is None


def test_tampered_file_is_detected_and_named(tmp_path):
    lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(50), {})
    data_file = lake.partition_dir(tmp_path, "kite", "ticks", DAY) / "part-0.parquet"
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, different content
    data_file.write_bytes(bytes(raw))
    with pytest.raises(lake.LakeIntegrityError, match=r"part-0\.parquet: sha256 .* does not match"):
        lake.verify_partition(tmp_path, "kite", "ticks", DAY)
    with pytest.raises(lake.LakeIntegrityError, match="part-0.parquet"):
        lake.read_partition(tmp_path, "kite", "ticks", DAY, verify=True)


def test_truncated_missing_and_stray_files_are_detected(tmp_path):
    lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(20), {}, rows_per_file=10)
    directory = lake.partition_dir(tmp_path, "kite", "ticks", DAY)

    (directory / "extra.parquet").write_bytes((directory / "part-0.parquet").read_bytes())
    with pytest.raises(
        lake.LakeIntegrityError, match=r"\['extra.parquet'\] are not in the manifest"
    ):
        lake.verify_partition(tmp_path, "kite", "ticks", DAY)
    (directory / "extra.parquet").unlink()

    part1 = directory / "part-1.parquet"
    part1.write_bytes(part1.read_bytes()[:-100])
    with pytest.raises(lake.LakeIntegrityError, match=r"part-1\.parquet: size"):
        lake.verify_partition(tmp_path, "kite", "ticks", DAY)

    part1.unlink()
    with pytest.raises(lake.LakeIntegrityError, match=r"part-1\.parquet: listed in the manifest"):
        lake.verify_partition(tmp_path, "kite", "ticks", DAY)
    with pytest.raises(lake.LakeIntegrityError, match="part-1.parquet"):
        lake.read_partition(tmp_path, "kite", "ticks", DAY)


def test_edited_manifest_row_count_is_detected(tmp_path):
    lake.write_partition(tmp_path, "kite", "ticks", DAY, _ticks(4), {})
    path = lake.partition_dir(tmp_path, "kite", "ticks", DAY) / "_manifest.json"
    doc = json.loads(path.read_text())
    doc["rows"] = 5
    path.write_text(json.dumps(doc))
    with pytest.raises(lake.LakeIntegrityError, match="files hold 4 rows but the manifest says 5"):
        lake.verify_partition(tmp_path, "kite", "ticks", DAY)
    path.write_text("{not json")
    with pytest.raises(lake.LakeIntegrityError, match="_manifest.json is unreadable"):
        lake.read_manifest(tmp_path, "kite", "ticks", DAY)


def test_missing_partition_error_names_the_path(tmp_path):
    with pytest.raises(lake.PartitionNotFoundError, match=r"date=2025-01-03.*materialize it first"):
        lake.read_partition(tmp_path, "kite", "ticks", {"date": "2025-01-03"})


def test_multi_column_partitions_and_listing(tmp_path):
    for tf in ("5minute", "day"):
        for date in ("2025-01-02", "2025-01-03"):
            lake.write_partition(
                tmp_path, "upstox", "candles", {"timeframe": tf, "date": date}, _ticks(1), {}
            )
    assert (
        tmp_path / "lake/upstox/candles/timeframe=5minute/date=2025-01-03/_manifest.json"
    ).is_file()
    assert lake.list_partitions(tmp_path, "upstox", "candles") == [
        {"timeframe": "5minute", "date": "2025-01-02"},
        {"timeframe": "5minute", "date": "2025-01-03"},
        {"timeframe": "day", "date": "2025-01-02"},
        {"timeframe": "day", "date": "2025-01-03"},
    ]
