"""Reconciliation: minute bars built from captured ticks against the vendor's 1-minute candles.

``bars_from_ticks`` turns a tick table (the tick schema: instrument_token, last_price,
volume_traded, exchange_timestamp) into minute bars: OHLC of last_price, and volume as the
change of the day's cumulative ``volume_traded`` between the last tick of the minute and the
last tick of the previous minute (unknown, so null, for the first minute captured unless it is
the session's first minute). ``reconcile`` joins bars and candles on (instrument, minute) and
reports per symbol the largest relative OHLC and volume drift, how many minutes drift past the
tolerances, and minutes present on one side only; the worst offenders come first.

Bars from ticks see only the seconds that ticked, so with sparse ticks high/low/volume drift
from the vendor's; the tolerances are for a liquid, fully captured instrument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import polars as pl

from tick_assets.calendars import IST, SESSION_OPEN
from tick_assets.candles.lakeio import ASSET
from tick_assets.store import lake

PRICE_TOLERANCE = 0.001  # 0.1 % of the vendor's price
VOLUME_TOLERANCE = 0.05  # 5 % of the vendor's volume
TOP = 10
BAR_COLUMNS = ("instrument", "timestamp", "open", "high", "low", "close", "volume")


class NoVendorCandlesError(LookupError):
    """The vendor's 1-minute candles of that day are not in the lake yet."""


def bars_from_ticks(
    ticks: pl.DataFrame,
    *,
    token: str = "instrument_token",
    price: str = "last_price",
    volume: str = "volume_traded",
    ts: str = "exchange_timestamp",
) -> pl.DataFrame:
    """Minute bars (``instrument`` as text, ``timestamp`` = minute start UTC) from ticks."""
    frame = (
        ticks.select(
            pl.col(token).cast(pl.String()).alias("instrument"),
            pl.col(ts).dt.replace_time_zone(None).dt.replace_time_zone("UTC")
            if ticks.schema[ts].time_zone is None  # type: ignore[union-attr]
            else pl.col(ts).dt.convert_time_zone("UTC"),
            pl.col(price).cast(pl.Float64()).alias("price"),
            pl.col(volume).cast(pl.Int64()).alias("cum"),
        )
        .rename({ts: "ts"})
        .sort(["instrument", "ts"], maintain_order=True)
        .with_columns(pl.col("ts").dt.truncate("1m").alias("timestamp"))
    )
    bars = (
        frame.group_by(["instrument", "timestamp"], maintain_order=True)
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("cum").last().alias("cum"),
            pl.len().alias("ticks"),
        )
        .sort(["instrument", "timestamp"])
    )
    open_utc = pl.col("timestamp").dt.convert_time_zone("Asia/Kolkata").dt.time() == SESSION_OPEN
    prev = pl.col("cum").shift(1).over("instrument")
    first = pl.col("timestamp") == pl.col("timestamp").min().over("instrument")
    return bars.with_columns(
        pl.when(first & open_utc)
        .then(pl.col("cum"))
        .when(first)
        .then(None)
        .otherwise(pl.col("cum") - prev)
        .alias("volume")
    ).select([*BAR_COLUMNS, "ticks"])


@dataclass
class Reconciliation:
    day: str
    per_symbol: pl.DataFrame
    worst: list[dict]
    passed: bool
    symbols: int

    def summary(self) -> str:
        bad = self.per_symbol.filter(pl.col("drifting_minutes") > 0)
        names = ", ".join(bad["symbol"].head(TOP).to_list())
        return f"{bad.height} of {self.symbols} symbols drift past tolerance (worst: {names})"


def reconcile(
    bars: pl.DataFrame,
    candles: pl.DataFrame,
    *,
    price_tolerance: float = PRICE_TOLERANCE,
    volume_tolerance: float = VOLUME_TOLERANCE,
    top: int = TOP,
    day: str = "",
) -> Reconciliation:
    """Per-symbol drift of ``bars`` (BAR_COLUMNS) against vendor ``candles`` (lake columns)."""
    c = candles.select(
        pl.col("instrument").cast(pl.String()),
        (pl.col("symbol") if "symbol" in candles.columns else pl.col("instrument")).alias("symbol"),
        pl.col("timestamp").dt.convert_time_zone("UTC"),
        *(pl.col(x).alias(f"v_{x}") for x in ("open", "high", "low", "close", "volume")),
    )
    b = bars.select(
        pl.col("instrument").cast(pl.String()),
        pl.col("timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("ms"),
        *(pl.col(x).alias(f"b_{x}") for x in ("open", "high", "low", "close", "volume")),
    )
    c = c.with_columns(pl.col("timestamp").dt.cast_time_unit("ms"))
    names = c.select("instrument", "symbol").unique("instrument")
    joined = b.join(c.drop("symbol"), on=["instrument", "timestamp"], how="full", coalesce=True)
    price_drift = [
        ((pl.col(f"b_{x}") - pl.col(f"v_{x}")).abs() / pl.col(f"v_{x}").abs()).alias(f"d_{x}")
        for x in ("open", "high", "low", "close")
    ]
    vol_drift = (
        (pl.col("b_volume") - pl.col("v_volume")).abs()
        / pl.max_horizontal(pl.col("v_volume"), pl.lit(1))
    ).alias("d_volume")
    both = pl.col("b_close").is_not_null() & pl.col("v_close").is_not_null()
    joined = joined.with_columns(*price_drift, vol_drift, both.alias("both"))
    drifting = (
        pl.max_horizontal(*(pl.col(f"d_{x}") for x in ("open", "high", "low", "close")))
        > price_tolerance
    ) | (pl.col("d_volume") > volume_tolerance)
    per = (
        joined.group_by("instrument")
        .agg(
            pl.col("both").sum().alias("minutes_both"),
            (pl.col("b_close").is_not_null() & pl.col("v_close").is_null()).sum().alias("only_bars"),
            (pl.col("b_close").is_null() & pl.col("v_close").is_not_null()).sum().alias("only_candles"),
            *(pl.col(f"d_{x}").filter(pl.col("both")).max().fill_null(0.0).alias(f"max_{x}_drift")
              for x in ("open", "high", "low", "close", "volume")),
            (drifting & pl.col("both")).fill_null(False).sum().alias("drifting_minutes"),
        )
        .join(names, on="instrument", how="left")
        .with_columns(pl.coalesce("symbol", "instrument").alias("symbol"))
    )  # fmt: skip
    price_max = pl.max_horizontal(
        *(pl.col(f"max_{x}_drift") for x in ("open", "high", "low", "close"))
    )
    per = per.with_columns(
        (price_max / price_tolerance + pl.col("max_volume_drift") / volume_tolerance).alias("score")
    ).sort(["drifting_minutes", "score"], descending=True)
    worst = [
        {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        for row in per.head(top).to_dicts()
    ]
    passed = per.filter(pl.col("drifting_minutes") > 0).height == 0
    return Reconciliation(day, per, worst, passed, per.height)


def vendor_minute_candles(home: Path | str, venue: str, day: str) -> pl.DataFrame:
    part = {"timeframe": "1minute", "date": day}
    try:
        table = lake.read_partition(home, venue, ASSET, part)
    except lake.PartitionNotFoundError:
        raise NoVendorCandlesError(
            f"no {venue} 1-minute candles for {day} in the lake yet; materialize "
            f"{venue}/candles partition {day}|1minute to reconcile"
        ) from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def reconcile_day(
    home: Path | str,
    venue: str,
    day: str,
    bars: pl.DataFrame,
    *,
    price_tolerance: float = PRICE_TOLERANCE,
    volume_tolerance: float = VOLUME_TOLERANCE,
) -> Reconciliation:
    """Reconcile one day's bars with the vendor's 1-minute candles in the lake.

    Only instruments present in the bars are compared (the vendor list may be longer), and
    only within the session of that day.
    """
    candles = vendor_minute_candles(home, venue, day)
    listed = bars["instrument"].cast(pl.String()).unique()
    candles = candles.filter(pl.col("instrument").is_in(listed.to_list()))
    lo = datetime.combine(date.fromisoformat(day), time(0, 0), tzinfo=IST)
    bars = bars.filter(
        pl.col("timestamp").dt.convert_time_zone("Asia/Kolkata").dt.date() == lo.date()
    )
    return reconcile(
        bars, candles, price_tolerance=price_tolerance, volume_tolerance=volume_tolerance, day=day
    )
