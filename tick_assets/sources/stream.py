"""Venue-neutral descriptions a streaming venue gives the capture engine.

They live in `sources` (not `capture`) so a venue's adapter in `sources/<venue>/stream.py` can
build them without importing the engine, which imports the adapters' layer, not the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every non-empty secret replaced, for logs, alerts and the gap ledger."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class ConnectRequest:
    """Where and how to open one websocket. `secrets` are redacted from anything logged."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"ConnectRequest(url={redact(self.url, self.secrets)!r})"


@dataclass(frozen=True)
class ConnectFailure:
    """How a failed connect is treated: `auth` stops the shard for good, `retry` backs off."""

    kind: Literal["auth", "retry"]
    reason: str


@dataclass(frozen=True)
class CachedTickPolicy:
    """A snapshot venue that resends a cached last tick on subscribe (Kite's LVC).

    After a subscribe, each instrument gets one cached tick in the venue's default mode, then
    one more in `target_mode` once the mode request is processed; otherwise it sends a tick only
    when a field changed, so a tick equal to the previous one repeats it (see `capture.dedupe`).
    """

    mode_column: str
    target_mode: str
