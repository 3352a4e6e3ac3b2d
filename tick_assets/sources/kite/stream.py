"""Kite's websocket as a capture venue: connect URL, subscribe/mode requests, decoding, errors.

What the venue-agnostic engine (`tick_assets.capture`) needs to stream Kite, per
shared/reference/kite.md §1: `wss://ws.kite.trade?api_key=..&access_token=..` with header
`X-Kite-Version: 3`; `{"a":"subscribe","v":[tokens]}` then `{"a":"mode","v":[mode,[tokens]]}`
(tokens as JSON numbers); a failed upgrade with HTTP 403 means the api_key/access_token pair is
rejected (expired at 06:00 IST, or revoked) and no retry can succeed until a new login; the
server sends a cached last tick (LVC) on subscribe and again on a mode change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from websockets.exceptions import InvalidStatus

from tick_assets.calendars import IST, is_trading_day, session_bounds_utc
from tick_assets.sources.kite.codec import DecodeResult, decode_frames
from tick_assets.sources.kite.limits import MAX_INSTRUMENTS_PER_CONNECTION
from tick_assets.sources.kite.schema import MODES, TICK_SCHEMA
from tick_assets.sources.stream import CachedTickPolicy, ConnectFailure, ConnectRequest

#: HTTP statuses of a refused upgrade that no retry can fix: the credentials are bad.
AUTH_STATUSES = (401, 403)


@dataclass(frozen=True)
class KiteCredentials:
    api_key: str
    access_token: str

    def __repr__(self) -> str:
        return f"KiteCredentials(api_key={self.api_key!r}, access_token=***)"


class KiteStream:
    """The Kite ticker for `tick_assets.capture.CaptureEngine`."""

    name = "kite"
    schema = TICK_SCHEMA
    key_column = "instrument_token"
    event_time_column = "exchange_timestamp"

    def __init__(self, ws_root: str, mode: str = "full") -> None:
        if mode not in MODES:
            raise ValueError(f"Kite streaming mode {mode!r} is not one of {MODES}")
        if not ws_root.startswith(("ws://", "wss://")):
            raise ValueError(f"Kite websocket root {ws_root!r} must start with wss:// (or ws://)")
        self.ws_root = ws_root
        self.mode = mode
        self.cached_ticks = CachedTickPolicy(mode_column="mode", target_mode=mode)

    def connect_request(self, credentials: KiteCredentials) -> ConnectRequest:
        url = (
            f"{self.ws_root}?api_key={credentials.api_key}&access_token={credentials.access_token}"
        )
        return ConnectRequest(url, {"X-Kite-Version": "3"}, (credentials.access_token,))

    def subscribe_messages(self, instruments: Sequence[int]) -> list[str]:
        tokens = [int(t) for t in instruments]
        if not tokens:
            raise ValueError("a Kite shard needs at least one instrument token")
        if len(tokens) > MAX_INSTRUMENTS_PER_CONNECTION:
            raise ValueError(
                f"a Kite connection takes at most {MAX_INSTRUMENTS_PER_CONNECTION} instruments; "
                f"this shard has {len(tokens)}: split it into more shards"
            )
        return [
            json.dumps({"a": "subscribe", "v": tokens}),
            json.dumps({"a": "mode", "v": [self.mode, tokens]}),
        ]

    def subscribed_instruments(self, sent: str) -> list[int] | None:
        message = json.loads(sent)
        return message["v"] if message.get("a") == "subscribe" else None

    def decode(self, messages: Sequence[bytes | str]) -> DecodeResult:
        return decode_frames(messages)

    def classify_connect_error(self, exc: BaseException) -> ConnectFailure:
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status in AUTH_STATUSES:
                return ConnectFailure(
                    "auth",
                    f"Kite refused the websocket with HTTP {status}: the access token is expired "
                    "or invalid. Log in again (kite/access_token) and restart the capture",
                )
            return ConnectFailure("retry", f"websocket upgrade refused with HTTP {status}")
        return ConnectFailure("retry", f"connect failed: {type(exc).__name__}")

    def in_session(self, venue_ns: int) -> bool:
        now = datetime.fromtimestamp(venue_ns / 1e9, UTC)
        day = now.astimezone(IST).date()
        if not is_trading_day(day):
            return False
        open_, close = session_bounds_utc(day)
        return open_ <= now < close
