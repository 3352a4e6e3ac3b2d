"""The venue-agnostic streaming engine (issue 4). Imports sources and store only.

engine.py     CaptureEngine: one websocket per shard, supervisor, watchdog, stop/deadline/signals
writer.py     a shard's writer thread: raw archive, decode, dedupe, journal, fsync per flush
pipeline.py   messages -> journal rows (shared with replay.py, which re-decodes a raw archive)
dedupe.py     cached ticks resent on (re)subscribe and exact repeats: the rules and the key
inbox.py      receive loop -> writer hand-off, bounded in memory, spilling to disk beyond
gaps.py       the gap ledger; latency.py percentiles per minute; live.py live quotes
notify.py     alerts (log, webhook); backoff.py; clock.py (injectable venue clock)
layout.py     where a shard's files live; counters.py the accounting chain
venue.py      what a venue adapter provides (Kite's: tick_assets.sources.kite.stream)
"""
