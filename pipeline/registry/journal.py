"""The notifier's journal: what must outlive a restart, kept in a small store.

One job of the registry notifier: per harvest id, one meta record holds whether a batch is
still unannounced (with its datasets), the last trigger, error and outcome. `status` reads it,
and the next run announces a batch left pending. The store is optional (tests, dry runs) and
never trusted to work: a store error is logged, and notifying goes on. Secrets never go here.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from pipeline.exceptions import StateError
from pipeline.registry.batches import HarvestBatcher, wall_now

log = structlog.get_logger(__name__)

META_NAMESPACE = "registry"


class NotifierStore(Protocol):
    """The two state-store methods the notifier needs (the project's StateStore has them)."""

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None: ...

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None: ...


class NotifierJournal:
    """Saves each harvest id's record (datasets taken from `batches`) and restores them."""

    def __init__(self, batches: HarvestBatcher, store: NotifierStore | None = None) -> None:
        self._batches = batches
        self._store = store
        self._meta: dict[str, dict[str, Any]] = {}

    async def restore(self, now: float) -> None:
        """Reload the records; a batch left pending by the last run is announced again."""
        if self._store is None:
            return
        for harvest_id in self._batches.harvest_ids:
            try:
                meta = await self._store.get_meta(META_NAMESPACE, harvest_id)
            except StateError as exc:
                log.warning("registry_meta_unreadable", harvest_id=harvest_id, error=str(exc))
                continue
            if not meta:
                continue
            self._meta[harvest_id] = dict(meta)
            if meta.get("pending"):
                datasets = {str(d) for d in meta.get("datasets") or ()}
                if self._batches.restore(harvest_id, datasets, now):
                    log.info("registry_pending_restored", harvest_id=harvest_id)

    async def save(self, harvest_id: str, **changes: Any) -> None:
        """Update the record of `harvest_id` with `changes` and the datasets now pending."""
        meta = self._meta.setdefault(harvest_id, {"harvest_id": harvest_id})
        meta.update(changes)
        meta["datasets"] = self._batches.datasets(harvest_id)
        meta["updated"] = wall_now()
        if self._store is None:
            return
        try:
            await self._store.put_meta(META_NAMESPACE, harvest_id, dict(meta))
        except StateError as exc:
            log.warning("registry_meta_unsaved", harvest_id=harvest_id, error=str(exc))
