"""A point-in-time top-N ranking from CoinGecko /coins/markets rows.

Rows without a market cap (unverified supply: null or 0) cannot be ranked; a coin seen twice
(the ranking moved between two page calls) counts once; the rest are ordered by market cap
and cut at N. Each reason is counted, so the snapshot's accounting balances:
received = written + dropped. ``stablecoin`` and ``wrapped`` flag coins in CoinGecko's
stablecoin and wrapped/liquid-staking categories as seen at the same time, for the universe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import polars as pl

RANKING_SCHEMA = {
    "rank": pl.Int32,
    "id": pl.String,
    "symbol": pl.String,
    "name": pl.String,
    "market_cap": pl.Float64,
    "total_volume": pl.Float64,
    "current_price": pl.Float64,
    "market_cap_rank": pl.Int64,  # CoinGecko's own rank (null for unranked coins)
    "circulating_supply": pl.Float64,
    "stablecoin": pl.Boolean,
    "wrapped": pl.Boolean,
    "last_updated": pl.Datetime("us", "UTC"),
    "snapshot_at": pl.Datetime("us", "UTC"),
}
STABLECOIN_CATEGORY = "stablecoins"
WRAPPED_CATEGORIES = ("wrapped-tokens", "liquid-staking-tokens")


class RankingError(ValueError):
    """The markets data cannot make a ranking (the message says why)."""


def _float(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_ranking(
    rows: Sequence[dict],
    n: int,
    snapshot_at: datetime,
    stablecoin_ids: Iterable[str] = (),
    wrapped_ids: Iterable[str] = (),
) -> tuple[pl.DataFrame, dict[str, int]]:
    """(ranking frame in RANKING_SCHEMA, rows dropped by reason)."""
    if snapshot_at.tzinfo is None:
        raise ValueError("snapshot_at must be timezone-aware")
    stable, wrapped = set(stablecoin_ids), set(wrapped_ids)
    dropped = {"no_market_cap": 0, "duplicate_id": 0, "below_top_n": 0, "malformed": 0}
    seen: set[str] = set()
    kept = []
    for row in rows:
        cid, symbol = row.get("id"), row.get("symbol")
        if not isinstance(cid, str) or not isinstance(symbol, str) or not cid:
            dropped["malformed"] += 1
            continue
        if cid in seen:
            dropped["duplicate_id"] += 1
            continue
        seen.add(cid)
        cap = _float(row.get("market_cap"))
        if not cap or cap <= 0:
            dropped["no_market_cap"] += 1
            continue
        rank = row.get("market_cap_rank")
        kept.append(
            {
                "id": cid,
                "symbol": symbol.lower(),
                "name": str(row.get("name") or ""),
                "market_cap": cap,
                "total_volume": _float(row.get("total_volume")),
                "current_price": _float(row.get("current_price")),
                "market_cap_rank": rank if isinstance(rank, int) else None,
                "circulating_supply": _float(row.get("circulating_supply")),
                "stablecoin": cid in stable,
                "wrapped": cid in wrapped,
                "last_updated": _when(row.get("last_updated")),
            }
        )
    kept.sort(key=lambda r: -r["market_cap"])
    dropped["below_top_n"] = max(len(kept) - n, 0)
    top = kept[:n]
    if not top:
        raise RankingError(f"no coin with a market cap among {len(rows)} /coins/markets rows")
    for i, row in enumerate(top, start=1):
        row["rank"] = i
        row["snapshot_at"] = snapshot_at.astimezone(UTC)
    frame = pl.DataFrame(top, schema=RANKING_SCHEMA).select(list(RANKING_SCHEMA))
    return frame, {k: v for k, v in dropped.items() if v}
