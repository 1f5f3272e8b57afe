"""Metrics hooks of the client: a Protocol the ops layer implements, and a no-op default."""

from __future__ import annotations

from typing import Protocol


class OncMetrics(Protocol):
    """Receives one call per finished HTTP exchange and per retry. Labels never hold a token.

    `endpoint` is the API path (e.g. `/api/scalardata/location`); `status` is None when no HTTP
    status was received (connection error, timeout).
    """

    def request_finished(
        self, endpoint: str, status: int | None, seconds: float, nbytes: int
    ) -> None:
        """One HTTP exchange ended (successfully or not) after `seconds`, with `nbytes` of body."""

    def retry(self, endpoint: str, reason: str) -> None:
        """A request to `endpoint` will be retried because of `reason` (e.g. `status_503`)."""


class NoopMetrics:
    """The default: records nothing."""

    def request_finished(
        self, endpoint: str, status: int | None, seconds: float, nbytes: int
    ) -> None:
        """Ignore the exchange."""

    def retry(self, endpoint: str, reason: str) -> None:
        """Ignore the retry."""
