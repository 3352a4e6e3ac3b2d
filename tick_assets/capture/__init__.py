"""The venue-agnostic streaming engine (issue 4): connection supervisor, watchdog, backoff,
journal writer, live quotes, latency and the gap ledger. Imports sources and store only.
"""
