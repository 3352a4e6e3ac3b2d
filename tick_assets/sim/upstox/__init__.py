"""Simulated Upstox API v3: historical and intraday candles, the instruments file, limits."""
