"""Leases for the engine: naming, an in-process implementation, and a heartbeat keeper.

PostgreSQL implements `CoordinationStore` itself (one table, the server's clock, shared by
every instance). The single-process backends (memory, SQLite: SQLite's file lock already
means one daemon) get `LocalCoordination`, which keeps the same semantics in process memory,
so the engine is written once against `coordination_for(store)` and the contract suite runs
the same lease tests on all three.

`hold_lease` is what the runner wraps a unit of work in: claim, renew every ttl/3 in a
background task, release on the way out. A lease that cannot be renewed before it expires
sets `HeldLease.lost`; fenced commits refuse it either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from pipeline.exceptions import LeaseLostError, StateError
from pipeline.state.base import (
    Commit,
    CoordinationStore,
    Lease,
    MetaUpdate,
    StateStore,
    dump_payload,
    lease_lost,
    load_payload,
)
from pipeline.times import Clock, as_utc, utc_now

log = structlog.get_logger(__name__)


def instance_owner(label: str = "") -> str:
    """A lease owner id unique to this process: host, pid and a random suffix.

    The suffix keeps a restarted process that got the same pid (containers often run as
    pid 1) from being mistaken for its dead predecessor.
    """
    prefix = f"{label}@" if label else ""
    return f"{prefix}{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def stream_resource(stream: str) -> str:
    """The resource name for a whole pass over one stream."""
    return f"stream:{stream}"


def unit_resource(stream: str, kind: str, key: str) -> str:
    """The resource name for one unit of a stream: `ctd/window:20261124T000000Z_...`,
    `hydrophone/file:ICLISTEN_20261124T000000Z.wav`, `ctd-products/period:2026-11`."""
    return f"{stream}/{kind}:{key}"


def coordination_for(store: StateStore) -> CoordinationStore:
    """The store itself when it coordinates natively (PostgreSQL), else an in-process
    `LocalCoordination` around it. Call once per store and share the result: two
    LocalCoordination objects on one store would not see each other's leases."""
    if isinstance(store, CoordinationStore):
        return store
    return LocalCoordination(store)


@dataclass
class _LeaseRow:
    token: int
    lease: Lease | None  # None once released


class LocalCoordination:
    """`CoordinationStore` for a store only one process uses, held in this process.

    Lease operations and fenced commits share one asyncio lock, so a takeover cannot slip in
    between a fenced commit's check and its write (the SQLite store awaits a thread there).
    Tokens survive release, so they grow for as long as the process lives; nothing needs them
    to survive a restart, because a restart leaves no stale holder behind.
    """

    def __init__(self, store: StateStore, *, clock: Clock = utc_now) -> None:
        self.store = store
        self._clock = clock
        self._rows: dict[str, _LeaseRow] = {}
        self._lease_lock = asyncio.Lock()
        self._meta_lock = asyncio.Lock()

    async def claim(self, resource: str, owner: str, ttl: timedelta) -> Lease | None:
        """Grant `resource` if it is free, released or expired."""
        if ttl <= timedelta(0):
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        async with self._lease_lock:
            now = self._now()
            row = self._rows.get(resource)
            if row is not None and row.lease is not None and row.lease.expires_at > now:
                return None
            token = 1 if row is None else row.token + 1
            lease = Lease(resource, owner, token, now, now + ttl, ttl)
            self._rows[resource] = _LeaseRow(token, lease)
            return lease

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend a still-valid lease by its ttl; None when it was lost."""
        async with self._lease_lock:
            now = self._now()
            if not self._holds(lease, now):
                return None
            renewed = replace(lease, expires_at=now + lease.ttl)
            self._rows[lease.resource].lease = renewed
            return renewed

    async def release(self, lease: Lease) -> None:
        """Give the resource up; a lost lease is ignored."""
        async with self._lease_lock:
            row = self._rows.get(lease.resource)
            if row is not None and row.lease is not None and _same(row.lease, lease):
                row.lease = None

    async def list_leases(self, prefix: str = "") -> list[Lease]:
        """Unexpired leases under `prefix`, by resource."""
        async with self._lease_lock:
            now = self._now()
            return [
                row.lease
                for resource, row in sorted(self._rows.items())
                if resource.startswith(prefix) and row.lease and row.lease.expires_at > now
            ]

    async def commit_publish_fenced(self, commit: Commit, lease: Lease) -> None:
        """`commit_publish` while no claim can run, after checking `lease` is still held."""
        async with self._lease_lock:
            if not self._holds(lease, self._now()):
                raise lease_lost(lease)
            await self.store.commit_publish(commit)

    async def update_meta(self, namespace: str, key: str, fn: MetaUpdate) -> dict[str, Any] | None:
        """Read-modify-write under a lock every `update_meta` of this process shares."""
        async with self._meta_lock:
            current = await self.store.get_meta(namespace, key)
            new = fn(current)
            if new is None:
                return current
            text = dump_payload(new)
            await self.store.put_meta(namespace, key, new)
            return load_payload(text)

    def _now(self) -> datetime:
        return as_utc(self._clock(), "clock()")

    def _holds(self, lease: Lease, now: datetime) -> bool:
        row = self._rows.get(lease.resource)
        return (
            row is not None
            and row.lease is not None
            and _same(row.lease, lease)
            and row.lease.expires_at > now
        )


def _same(a: Lease, b: Lease) -> bool:
    return (a.resource, a.owner, a.token) == (b.resource, b.owner, b.token)


@dataclass
class HeldLease:
    """A lease kept alive by `hold_lease`; `lease` is the latest renewal."""

    lease: Lease
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        """Raise LeaseLostError when the heartbeat found the lease gone (stop work early)."""
        if self.lost.is_set():
            raise LeaseLostError(
                f"lease on {self.lease.resource!r} was lost",
                resource=self.lease.resource,
                token=self.lease.token,
            )


@contextlib.asynccontextmanager
async def hold_lease(
    coordination: CoordinationStore,
    resource: str,
    owner: str,
    ttl: timedelta,
) -> AsyncIterator[HeldLease | None]:
    """Claim `resource` and keep it renewed until the block ends; yields None when it is
    held by someone else (skip the work). Release is shielded, so a cancelled pass still
    frees its lease at once instead of after ttl."""
    lease = await coordination.claim(resource, owner, ttl)
    if lease is None:
        yield None
        return
    held = HeldLease(lease)
    heartbeat = asyncio.create_task(_heartbeat(coordination, held), name=f"lease:{resource}")
    try:
        yield held
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        if not held.lost.is_set():
            with contextlib.suppress(StateError):
                await asyncio.shield(coordination.release(held.lease))


async def _heartbeat(coordination: CoordinationStore, held: HeldLease) -> None:
    """Renew every ttl/3; a renewal refused, or impossible until expiry, marks it lost."""
    ttl = held.lease.ttl.total_seconds()
    # The local estimate of the expiry, on this host's monotonic clock, used only to decide
    # when failing renewals mean "lost". It can be off by a round trip; what guarantees
    # safety is the fenced commit, which the server checks against its own clock.
    deadline = time.monotonic() + ttl
    while True:
        await asyncio.sleep(ttl / 3)
        sent = time.monotonic()
        try:
            renewed = await coordination.renew(held.lease)
        except StateError as exc:
            if time.monotonic() < deadline:
                log.warning("lease_renew_failed", resource=held.lease.resource, error=str(exc))
                continue
            renewed = None
        if renewed is None:
            log.warning("lease_lost", resource=held.lease.resource, fencing_token=held.lease.token)
            held.lost.set()
            return
        held.lease = renewed
        deadline = sent + ttl
