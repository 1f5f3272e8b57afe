"""The open/close lifecycle every long-lived resource shares: `async with x:` opens, and closes.

State stores, the shared request limiter, the ONC and registry clients, the ops server and the
emulator all hold something that must be released (a pool, a session, a socket, a lock) and
are used as async context managers; this base writes that once. `close` runs however the
block ends (an error, a cancellation). An `open` that fails never starts the block, so it
releases what it took itself; `close` must be safe to call twice.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self


class AsyncResource:
    """`async with resource:` awaits `open()` on entry and always `close()` on exit."""

    async def open(self) -> object:
        """Acquire what the resource holds (connect, bind, lock); by default nothing."""
        return None

    async def close(self) -> None:
        """Release what the resource holds; every subclass says how."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Openable(Protocol):
    """Anything with the open/close pair (an AsyncResource, an HTTP transport)."""

    async def open(self) -> object:
        """Acquire."""

    async def close(self) -> None:
        """Release."""


class Facade(AsyncResource):
    """A resource whose only holding is another one: opening and closing it is opening and
    closing that (the ONC client over its HTTP layer, which is over its
    transport)."""

    def __init__(self, held: Openable) -> None:
        self._held = held

    async def open(self) -> None:
        """Open what this holds."""
        await self._held.open()

    async def close(self) -> None:
        """Close what this holds."""
        await self._held.close()
