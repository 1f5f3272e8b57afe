"""Which instance sends a registry trigger, when several share the state store.

One job, split out of the notifier: a claim is one meta record per harvest id, changed by an
atomic read-modify-write (PostgreSQL does it in one transaction, see pipeline.coordination).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from pipeline.exceptions import StateError

log = structlog.get_logger(__name__)

CLAIM_NAMESPACE = "registry-claims"


class TriggerClaims(Protocol):
    """Atomic read-modify-write of one meta record, shared by every instance."""

    async def update_meta(
        self,
        namespace: str,
        key: str,
        fn: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    ) -> dict[str, Any] | None: ...


class TriggerClaimer:
    """Wins (or yields) the right to trigger a harvest id for a batch, across instances;
    without shared claims (one instance) every batch is this instance's to send."""

    def __init__(self, claims: TriggerClaims | None, *, ttl: float = 300.0) -> None:
        self._claims = claims
        self._ttl = ttl

    async def claim(self, harvest_id: str, last_event: str) -> str | None:
        """A claim id, or None when another instance's trigger, sent (or being sent) after
        `last_event` (the batch's last event, ISO wall time), already announces all of it."""
        claim = secrets.token_hex(8)
        if self._claims is None:
            return claim
        now = datetime.now(UTC)
        stale = (now - timedelta(seconds=self._ttl)).isoformat()

        def decide(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is not None and current.get("at", "") >= last_event:
                if current.get("state") == "sent":
                    return None
                if current.get("state") == "sending" and current.get("at", "") >= stale:
                    return None
            return {"at": now.isoformat(), "state": "sending", "claim": claim}

        try:
            stored = await self._claims.update_meta(CLAIM_NAMESPACE, harvest_id, decide)
        except StateError as exc:
            # The shared store is unreachable: a possible duplicate trigger beats a lost one.
            log.warning("registry_claim_unavailable", harvest_id=harvest_id, error=str(exc))
            return claim
        return claim if stored is not None and stored.get("claim") == claim else None

    async def settle(self, harvest_id: str, claim: str, state: str) -> None:
        """Mark our claim sent (it covers batches before it) or failed (it covers nothing)."""
        if self._claims is None:
            return

        def settle(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current.get("claim") != claim:
                return None
            return {**current, "state": state}

        with contextlib.suppress(StateError):
            await self._claims.update_meta(CLAIM_NAMESPACE, harvest_id, settle)
