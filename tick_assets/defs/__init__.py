"""Every Dagster object of tick_assets: one folder per source (kite/, later upstox/, binance/,
...) plus what they share (partitions.py, resources.py). Only this package and
tick_assets/definitions.py import dagster.
"""
