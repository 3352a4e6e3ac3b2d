"""Upstox API v3: historical candles (limits, client) and the instruments (BOD) file."""
