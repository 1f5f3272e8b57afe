"""Coordination between instances: leases on work, fenced commits, a shared request limiter.

Kept apart from `pipeline.state` because these are policies the engine applies on top of a
store (how long a lease lives, when to heartbeat, how requests queue), while `state/` holds
only the storage primitives. The lease primitives themselves are store methods
(`CoordinationStore`, implemented by PostgresStateStore), because a fenced commit must check
the lease inside the store's own transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.coordination.leases import (
    HeldLease,
    LocalCoordination,
    coordination_for,
    hold_lease,
    instance_owner,
    stream_resource,
    unit_resource,
)

if TYPE_CHECKING:
    from pipeline.coordination.limiter import PostgresLimiter

__all__ = [
    "HeldLease",
    "LocalCoordination",
    "PostgresLimiter",
    "coordination_for",
    "hold_lease",
    "instance_owner",
    "stream_resource",
    "unit_resource",
]


def __getattr__(name: str) -> Any:
    # The shared limiter needs asyncpg: imported on first use, so that importing the leases
    # (every harvest does) does not load the PostgreSQL driver.
    if name == "PostgresLimiter":
        from pipeline.coordination.limiter import PostgresLimiter

        return PostgresLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
