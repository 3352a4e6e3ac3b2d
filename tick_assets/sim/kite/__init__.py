"""The Kite Connect simulator: REST, login pages, and the ticker websocket, on one aiohttp app."""
