"""Alerts for people: a shard down too long, a rejected (expired) token, no ticks in session.

`Notifier` is the interface; `LogNotifier` writes a log record, `WebhookNotifier` POSTs the
alert as JSON (Slack/Teams-style incoming webhooks, or anything that takes JSON). The engine
hands alerts to an `AlertDispatcher`, whose own thread does the sending, so a slow or dead
webhook never delays capture. Alerts never carry secrets, and a webhook URL (which often holds
one) is never logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import requests

log = logging.getLogger(__name__)

AlertKind = Literal["shard_down", "token_rejected", "no_ticks", "shard_recovered"]


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    venue: str
    shard: str
    message: str
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "text": f"[{self.venue}/{self.shard}] {self.message}"}


class Notifier(Protocol):
    def notify(self, alert: Alert) -> None:
        """Deliver one alert; raise on failure (the dispatcher logs it and goes on)."""
        ...


class LogNotifier:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def notify(self, alert: Alert) -> None:
        level = logging.INFO if alert.kind == "shard_recovered" else logging.ERROR
        self.logger.log(level, "capture alert %s [%s/%s]: %s", alert.kind, alert.venue,
                        alert.shard, alert.message)  # fmt: skip


class WebhookNotifier:
    """POST each alert as JSON to `url`; a non-2xx answer is an error."""

    def __init__(self, url: str, timeout: float = 5.0, session: requests.Session | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError("webhook URL must start with http:// or https://")
        self._url = url
        self.timeout = timeout
        self._session = session or requests.Session()

    def __repr__(self) -> str:  # the URL may embed a token
        return "WebhookNotifier(url=***)"

    def notify(self, alert: Alert) -> None:
        try:
            response = self._session.post(self._url, json=alert.to_json(), timeout=self.timeout)
        except requests.RequestException as exc:
            # requests' messages can contain the URL; name only the failure's kind.
            raise ConnectionError(f"webhook POST failed: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise ConnectionError(f"webhook POST answered HTTP {response.status_code}")


class AlertDispatcher:
    """Sends alerts to every notifier from one background thread; `close()` drains and stops."""

    def __init__(self, notifiers: Sequence[Notifier], max_pending: int = 1000) -> None:
        self.notifiers = list(notifiers)
        self._queue: queue.Queue[Alert | None] = queue.Queue(max_pending)
        self.sent: list[Alert] = []
        self.failures = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="capture-alerts", daemon=True)
        self._thread.start()

    def alert(self, alert: Alert) -> None:
        """Queue an alert (never blocks the caller; counts and logs it if the queue is full)."""
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            log.error("alert queue full; alert not sent: %s", alert.message)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            for notifier in self.notifiers:
                try:
                    notifier.notify(alert)
                except (ConnectionError, OSError, ValueError) as exc:
                    self.failures += 1
                    log.error("notifier %r could not deliver a %s alert: %s", notifier,
                              alert.kind, exc)  # fmt: skip
            self.sent.append(alert)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
