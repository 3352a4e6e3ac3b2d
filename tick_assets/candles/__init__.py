"""The venue-agnostic historical-candle engine (as capture/ is for streams).

timeframes (names and session grids), parse (responses to Arrow), fetch (rate-limited GETs with
retries), plan (fewest requests per span), lakeio (day partitions, ledger of missing/failed
candles), backfill (the run: check, plan, fetch in parallel, write), reconcile (bars from ticks
vs vendor candles), symbols (symbol lists from config). Venue clients live in
sources/<venue>/ and implement ``source.CandleSource``.
"""
