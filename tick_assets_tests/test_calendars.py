"""NSE calendar: holidays, override file, expiry rule, session times, Dagster exclusions."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from importlib.resources import files
from pathlib import Path

import pytest

from tick_assets import calendars as cal
from tick_assets.calendars import CalendarError


@pytest.fixture(autouse=True)
def _no_user_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cal.HOLIDAYS_FILE_ENV, raising=False)


def _override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> Path:
    path = tmp_path / "holidays.csv"
    path.write_text(text)
    monkeypatch.setenv(cal.HOLIDAYS_FILE_ENV, str(path))
    return path


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 1, 22),  # special holiday, declared late
        date(2024, 1, 26),
        date(2024, 3, 8),
        date(2024, 3, 25),
        date(2024, 3, 29),
        date(2024, 5, 20),  # elections in Mumbai
        date(2024, 11, 1),  # Diwali (Muhurat session only)
        date(2024, 11, 20),
        date(2025, 2, 26),
        date(2025, 3, 14),
        date(2025, 3, 31),
        date(2025, 10, 21),
        date(2025, 12, 25),
        date(2026, 1, 15),  # municipal elections, declared Jan 2026
        date(2026, 3, 3),
        date(2026, 11, 10),
    ],
)
def test_known_holidays_are_not_trading_days(day: date) -> None:
    assert day.weekday() < 5
    assert day in cal.nse_holidays()
    assert not cal.is_trading_day(day)


def test_weekends_and_normal_days() -> None:
    assert not cal.is_trading_day(date(2025, 1, 4))  # Saturday
    assert not cal.is_trading_day(date(2025, 1, 5))  # Sunday
    assert cal.is_trading_day(date(2025, 1, 7))  # an ordinary Tuesday
    assert cal.is_trading_day(date(2024, 11, 21))  # day after the election holiday


def test_shipped_file_is_package_data_within_data_years() -> None:
    text = files("tick_assets").joinpath("data", "nse_holidays.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    years = {date.fromisoformat(r["date"]).year for r in rows}
    assert years == set(range(cal.DATA_YEARS[0], cal.DATA_YEARS[1] + 1))
    assert all(r["description"] for r in rows)
    # NSE's published weekday holidays per year (incl. those declared during the year)
    weekday = [date.fromisoformat(r["date"]) for r in rows]
    counts = {y: sum(1 for d in weekday if d.year == y and d.weekday() < 5) for y in years}
    assert counts == {2024: 17, 2025: 14, 2026: 16}


def test_trading_days_inclusive_and_year_counts() -> None:
    week = cal.trading_days(date(2025, 3, 10), date(2025, 3, 16))
    assert week == [date(2025, 3, d) for d in (10, 11, 12, 13)]  # Fri 14 is Holi
    assert cal.trading_days(date(2025, 3, 11), date(2025, 3, 11)) == [date(2025, 3, 11)]
    assert cal.trading_days(date(2025, 3, 12), date(2025, 3, 11)) == []
    # weekdays in the year minus weekday holidays
    assert len(cal.trading_days(date(2024, 1, 1), date(2024, 12, 31))) == 262 - 17
    assert len(cal.trading_days(date(2025, 1, 1), date(2025, 12, 31))) == 261 - 14


def test_previous_and_next_skip_holidays_and_weekends() -> None:
    assert cal.next_trading_day(date(2025, 3, 13)) == date(2025, 3, 17)
    assert cal.previous_trading_day(date(2025, 4, 1)) == date(2025, 3, 28)
    assert cal.previous_trading_day(date(2025, 1, 7)) == date(2025, 1, 6)  # strictly before
    assert cal.next_trading_day(date(2025, 10, 20)) == date(2025, 10, 23)  # Diwali 21-22


def test_year_without_data_raises_naming_date_and_fix() -> None:
    with pytest.raises(CalendarError) as err:
        cal.is_trading_day(date(2027, 1, 4))
    assert "2027-01-04" in str(err.value)
    assert cal.HOLIDAYS_FILE_ENV in str(err.value)
    with pytest.raises(CalendarError, match="2027-01-01"):
        cal.next_trading_day(date(2026, 12, 31))
    with pytest.raises(CalendarError, match="2023"):
        cal.trading_days(date(2023, 12, 1), date(2024, 1, 31))


def test_override_adds_and_removes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cal.is_trading_day(date(2026, 12, 30))
    _override(
        monkeypatch,
        tmp_path,
        "date,description,action\n"
        "# a comment line\n"
        "2026-12-30,Declared late,\n"
        '2024-11-01,"Diwali, treat the Muhurat day as a session",remove\n'
        "2027-01-26,Republic Day,add\n",
    )
    assert not cal.is_trading_day(date(2026, 12, 30))
    assert cal.is_trading_day(date(2024, 11, 1))
    assert cal.is_trading_day(date(2027, 1, 25))  # 2027 now has data
    assert not cal.is_trading_day(date(2027, 1, 26))
    assert 2027 in cal.covered_years()
    exclusions = cal.trading_day_exclusions(date(2024, 10, 1), date(2026, 12, 31))
    assert datetime(2026, 12, 30) in exclusions
    assert datetime(2024, 11, 1) not in exclusions


def test_a_gap_year_is_not_covered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _override(monkeypatch, tmp_path, "date,description\n2028-01-26,Republic Day\n")
    assert cal.covered_years() == (2024, 2025, 2026, 2028)
    with pytest.raises(CalendarError, match="2027"):
        cal.trading_day_exclusions(date(2026, 1, 1), date(2028, 12, 31))


def test_explicit_override_path(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("date,description\n2026-12-31,New Year's Eve\n")
    assert date(2026, 12, 31) in cal.nse_holidays(path)
    assert date(2026, 12, 31) not in cal.nse_holidays()


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("date,description\n2025-13-01,Bad month\n", 2, "not YYYY-MM-DD"),
        ("date,description\n\n2025/12/01,Slashes\n", 3, "not YYYY-MM-DD"),
        ("date,description,action\n2025-12-01,x,delete\n", 2, "'add' or 'remove'"),
        ("day,name\n2025-12-01,x\n", 1, "header"),
        ("date,description\n2025-12-01,a, b\n", 2, "quote descriptions"),
        ("date,description,action\n2025-12-02,not a holiday,remove\n", 2, "not a holiday"),
    ],
)
def test_malformed_override_names_file_line_and_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, line: int, expected: str
) -> None:
    path = _override(monkeypatch, tmp_path, text)
    with pytest.raises(CalendarError) as err:
        cal.is_trading_day(date(2025, 12, 1))
    assert f"{path}:{line}:" in str(err.value)
    assert expected in str(err.value)


def test_missing_override_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cal.HOLIDAYS_FILE_ENV, str(tmp_path / "nope.csv"))
    with pytest.raises(CalendarError, match=cal.HOLIDAYS_FILE_ENV) as err:
        cal.nse_holidays()
    assert "nope.csv" in str(err.value)


def test_override_edits_are_picked_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _override(monkeypatch, tmp_path, "date,description\n")
    assert cal.is_trading_day(date(2025, 12, 1))
    path.write_text("date,description\n2025-12-01,Added later\n")
    assert not cal.is_trading_day(date(2025, 12, 1))


# --- expiry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month"), [(2025, m) for m in range(9, 13)] + [(2026, m) for m in range(1, 13)]
)
def test_last_tuesday_expiry(year: int, month: int) -> None:
    d = cal.last_weekday_expiry(year, month)
    assert (d.year, d.month) == (year, month)
    assert cal.is_trading_day(d)
    last_tuesday = max(
        date(year, month, day)
        for day in range(22, 32)
        if _valid(year, month, day) and date(year, month, day).weekday() == 1
    )
    if cal.is_trading_day(last_tuesday):
        assert d == last_tuesday
    else:
        assert d < last_tuesday
        assert cal.trading_days(d, last_tuesday) == [d]


def _valid(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def test_expiry_known_values_and_holiday_shift() -> None:
    assert cal.last_weekday_expiry(2025, 9) == date(2025, 9, 30)
    assert cal.last_weekday_expiry(2025, 12) == date(2025, 12, 30)
    assert cal.last_weekday_expiry(2026, 3) == date(2026, 3, 30)  # 31 Mar: Mahavir Jayanti
    assert cal.last_weekday_expiry(2026, 11) == date(2026, 11, 23)  # 24 Nov: Guru Nanak
    assert cal.last_weekday_expiry(2025, 1, weekday=3) == date(2025, 1, 30)  # old Thursday rule


def test_expiry_moves_back_over_override_holidays(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _override(monkeypatch, tmp_path, "date,description\n2025-12-30,x\n2025-12-29,y\n")
    assert cal.last_weekday_expiry(2025, 12) == date(2025, 12, 26)  # Friday before


def test_expiry_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="month=13"):
        cal.last_weekday_expiry(2025, 13)
    with pytest.raises(ValueError, match="weekday=6"):
        cal.last_weekday_expiry(2025, 1, weekday=6)


# --- times -------------------------------------------------------------------------------


def test_session_bounds_in_utc() -> None:
    start, end = cal.session_bounds_utc(date(2025, 1, 7))
    assert start == datetime(2025, 1, 7, 3, 45, tzinfo=UTC)
    assert end == datetime(2025, 1, 7, 10, 0, tzinfo=UTC)
    assert start.utcoffset() == timedelta(0)
    assert cal.pre_open_utc(date(2025, 1, 7)) == datetime(2025, 1, 7, 3, 30, tzinfo=UTC)


def test_ist_utc_conversions() -> None:
    naive_ist = datetime(2025, 1, 7, 9, 15)
    assert cal.ist_to_utc(naive_ist) == datetime(2025, 1, 7, 3, 45, tzinfo=UTC)
    aware = datetime(2025, 1, 7, 3, 45, tzinfo=UTC)
    assert cal.ist_to_utc(aware) == aware
    ist = cal.utc_to_ist(datetime(2025, 1, 7, 3, 45))
    assert (ist.hour, ist.minute, ist.utcoffset()) == (9, 15, timedelta(hours=5, minutes=30))
    assert cal.utc_to_ist(aware).tzinfo == cal.IST


# --- Dagster exclusions ------------------------------------------------------------------


def test_exclusions_are_naive_midnights_of_weekday_holidays() -> None:
    ex = cal.trading_day_exclusions(date(2024, 1, 1), date(2024, 4, 30))
    assert all(e.tzinfo is None and e.time() == time(0) and e.weekday() < 5 for e in ex)
    assert datetime(2024, 1, 22) in ex
    assert datetime(2024, 4, 14) not in ex  # a Sunday holiday: covered by the weekend crons
    assert max(ex) <= datetime(2024, 4, 30)


def test_dagster_partitions_match_trading_days() -> None:
    import dagster as dg

    start, end = date(2025, 2, 20), date(2025, 4, 22)
    parts = dg.DailyPartitionsDefinition(
        start_date=start.isoformat(),
        end_date=end.isoformat(),
        timezone="Asia/Kolkata",
        exclusions=[*cal.WEEKEND_EXCLUSION_CRONS, *cal.trading_day_exclusions(start, end)],
    )
    keys = parts.get_partition_keys()
    expected = cal.trading_days(start, end - timedelta(days=1))  # end_date is exclusive
    assert keys == [d.isoformat() for d in expected]
