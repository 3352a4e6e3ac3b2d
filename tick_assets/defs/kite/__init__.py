"""Zerodha Kite: reference data (instruments), later access tokens, lookups and capture."""
