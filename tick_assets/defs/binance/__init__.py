"""Binance spot: the daily universe of USDT pairs (dynamic partitions) and 1-minute klines."""
