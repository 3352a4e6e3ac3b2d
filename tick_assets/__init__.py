"""tick_assets: market data as Dagster software-defined assets."""
