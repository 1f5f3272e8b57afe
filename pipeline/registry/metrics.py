"""The registry notifier's metrics hook: a Protocol the ops module implements, and a null one."""

from __future__ import annotations

from typing import Protocol

from pipeline.registry.outcomes import HarvestOutcome


class RegistryMetrics(Protocol):
    """Hook for metrics (the ops module plugs Prometheus in); calls must not block."""

    def trigger_sent(self, harvest_id: str, *, dry_run: bool) -> None: ...

    def trigger_failed(self, harvest_id: str, *, reason: str) -> None: ...

    def harvest_finished(self, outcome: HarvestOutcome) -> None: ...


class NullRegistryMetrics:
    """Metrics hook that records nothing (the default)."""

    def trigger_sent(self, harvest_id: str, *, dry_run: bool) -> None:
        """Ignore a sent trigger."""

    def trigger_failed(self, harvest_id: str, *, reason: str) -> None:
        """Ignore a failed trigger."""

    def harvest_finished(self, outcome: HarvestOutcome) -> None:
        """Ignore an outcome."""
