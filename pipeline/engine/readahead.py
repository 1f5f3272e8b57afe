"""Read-ahead: bytes of parsed pages the daemon holds ahead of the builds, all streams together.

A request series fetches ahead of its build: a page is parsed while the previous one is
merged, and a few wait in the series' queue. With many series at once (one per window slot)
and builds slower than the network (a worker busy with another stream's window), the pages
waiting add up with the number of series and the length of the backlog. `ReadAhead` bounds
them process-wide: a series reserves room before each request (the size of the pages it has
seen, or the process's last page before its first one) and gives it back once the page's
parts are merged, so when the builds fall behind, requests wait instead of pages piling up,
and the replies in flight and the decoding behind them wait with them. (Not a bulk pass's
page budget, which counts the pages one pass may fetch.)

A reservation is a guess until the page is parsed; it is then set to the page's packed size,
which may take the total past its limit (the page is in memory already): later requests wait
until it is back under. One reservation always fits when nothing is held, so a page larger
than the whole limit is still fetched, alone.
"""

from __future__ import annotations

import asyncio
from collections import deque

from pipeline.records import PageBatch, batch_bytes

# The guess for a series' first page before any page was seen, and the unit the daemon's
# read-ahead is counted in: a full page (ONC's 100,000 rows) of an 8-sensor instrument
# packed, 9.7 MB (`batch_bytes`). At 8 MiB, a day of it, the daemon's read-ahead held
# 4 such pages where it is meant for 5 (`pipeline.daemon.read_ahead_bytes`).
FIRST_PAGE_GUESS = 10 * 1024 * 1024


class PageReservation:
    """Room held for one page: reserved before its request, set to the page's
    size once parsed, released when its parts are merged (idempotent)."""

    def __init__(self, owner: ReadAhead, size: int) -> None:
        self._owner = owner
        self.size = size

    def resize(self, size: int) -> None:
        """Hold `size` bytes instead (the parsed page's): never waits, the page is here."""
        self._owner._change(size - self.size)
        self.size = size

    def release(self) -> None:
        """Give the room back; later calls do nothing."""
        if self.size:
            self._owner._change(-self.size)
            self.size = 0


class ReadAhead:
    """A process-wide bound, in bytes, on parsed pages reserved, waiting or being merged."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("read-ahead needs a positive limit")
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most held at once (diagnostics and tests)
        self._last_page = FIRST_PAGE_GUESS
        # Reservations wait in order (a big one is not starved by small ones behind it).
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def reserve(self, size: int | None = None) -> PageReservation:
        """Room for one page of about `size` bytes (None: the last page's size), waiting while
        the limit is reached and another reservation is held, and behind every reservation
        already waiting (first come, first served)."""
        wanted = self._last_page if size is None else size
        if self._waiters or not self._fits(wanted):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (wanted, future)
            self._waiters.append(entry)
            try:
                await future
            except BaseException:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    self._admit()  # the waiters behind it may fit now
                elif future.done() and not future.cancelled():
                    self._change(-wanted)  # admitted as it was cancelled: give it back
                raise
        else:
            self._change(wanted)
        return PageReservation(self, wanted)

    def parsed(self, reservation: PageReservation, batch: PageBatch) -> int:
        """The page of `reservation` is parsed and packed as `batch`: hold its real size, and
        return it (the series' guess for its next page)."""
        size = max(batch_bytes(batch), 1)
        self._last_page = size
        reservation.resize(size)
        return size

    def _fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.limit

    def _change(self, delta: int) -> None:
        self.held += delta
        self.peak = max(self.peak, self.held)
        if delta < 0:
            self._admit()

    def _admit(self) -> None:
        # Admitted in order while they fit; the room is taken here, before the waiter runs,
        # so nothing else can take it meanwhile.
        while self._waiters and self._fits(self._waiters[0][0]):
            size, future = self._waiters.popleft()
            if future.cancelled():
                continue
            self.held += size
            self.peak = max(self.peak, self.held)
            future.set_result(None)
