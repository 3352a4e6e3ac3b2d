"""Errors of the candle engine. Each message names what the user must look at and do.

Per-symbol errors (``SymbolFetchError`` and subclasses) fail that symbol only: it is reported
in metadata and refetched on the next run. ``CandleAuthError`` and ``CandleRangeError`` stop
the run at once, because every other request would fail the same way.
"""

from __future__ import annotations


class CandleError(RuntimeError):
    """Base class of candle engine errors."""


class CandleRangeError(CandleError, ValueError):
    """A reversed date range, one before the venue's history, or one in the future."""


class CandleAuthError(CandleError):
    """The venue refused the credentials (expired or invalid token)."""


class SymbolFetchError(CandleError):
    """One request for one symbol failed for good; names the URL and the symbol."""

    def __init__(self, message: str, *, url: str = "", symbol: str = "") -> None:
        super().__init__(message)
        self.url, self.symbol = url, symbol


class MalformedResponseError(SymbolFetchError):
    """The venue answered 200 with a body that is not a candle response (or is empty)."""


class HttpStatusError(SymbolFetchError):
    """The venue answered with a non-retryable HTTP error status."""

    def __init__(self, message: str, *, url: str, symbol: str, status: int, body: str = "") -> None:
        super().__init__(message, url=url, symbol=symbol)
        self.status, self.body = status, body


class RetriesExhaustedError(SymbolFetchError):
    """429s, 5xx or timeouts kept coming after every retry."""


class UnknownSymbolError(CandleError, KeyError):
    """A listed symbol the venue's instrument list does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
