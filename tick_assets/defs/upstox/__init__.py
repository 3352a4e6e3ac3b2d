"""Upstox: historical candles (upstox/candles) from the v3 API."""
