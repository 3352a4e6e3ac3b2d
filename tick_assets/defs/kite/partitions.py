"""Kite partitions: one static partition per configured Kite app (kite/access_token).

Built from [kite.apps] of the config file at code-load time, in the file's order; adding an
app there adds its partition on the next reload of the code location. Trading-day
partitions are shared by every source (tick_assets/defs/partitions.py).
"""

import dagster as dg

from tick_assets.config import load_settings


def build_kite_apps() -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(load_settings().kite_apps))


kite_apps = build_kite_apps()
