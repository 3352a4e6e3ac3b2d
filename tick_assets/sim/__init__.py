"""Protocol-exact simulators of the venues tick_assets talks to, served on one loopback port.

`tick_assets.sim.server.SimServer` runs them in a background thread; `tick-assets sim` runs
them in the foreground. Real client libraries (kiteconnect, python-binance, ...) work against
the endpoints, so the whole platform runs and is tested offline with no credentials.
"""
