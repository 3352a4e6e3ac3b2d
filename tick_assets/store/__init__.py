"""Storage layer: the Parquet lake with its manifests (and later the journal and SQL sink).

Nothing here imports dagster or any other layer of tick_assets, so the same code serves
Dagster assets, the capture engine and ad-hoc scripts.
"""
