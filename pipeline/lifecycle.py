"""The open/close lifecycle every long-lived resource shares: `async with x:` opens, and closes.

State stores, the shared request limiter, the ONC and registry clients, the ops server and the
emulator all hold something that must be released (a pool, a session, a socket, a lock) and
are used as async context managers; this base writes that once. `close` runs however the
block ends (an error, a cancellation). An `open` that fails never starts the block, so it
releases what it took itself; `close` must be safe to call twice.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
