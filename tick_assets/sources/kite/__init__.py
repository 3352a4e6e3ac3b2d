"""Zerodha Kite Connect: websocket codec, instrument dump, REST limits."""
