"""Reply bodies read into buffers that are used again: a backfill's pages fill memory already
mapped instead of faulting in fresh pages for every page.

With the mmap threshold `pipeline.allocator` fixes, every body of more than 4 MiB is a fresh
mapping, unmapped when freed: the next one is faulted in again, a page fault per 4 KiB
written (a 27 MB page of a CTD day is about 6,600 faults, which cost several times the copy
itself). A bytearray kept between replies takes those faults once, and is dropped after a
short idle spell, so a daemon that has caught up still gives the memory back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: How long a buffer given back is kept for the next body: long enough to span the gap
#: between pages of a backfill, short enough that a daemon which has caught up returns the
#: memory well before its next poll.
HOLD_S = 5.0


class BodyBuffers:
    """Bytearrays for reply bodies: taken for one body, given back once it is decoded, kept
    (at most `keep` of them) for `hold_s` seconds after their last use.

    A decoder given a buffer must not keep it, or a view of it, past its return: the next
    body overwrites it.
    """

    def __init__(
        self,
        keep: int,
        hold_s: float = HOLD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep = keep
        self.hold_s = hold_s
        self._clock = clock
        self._idle: list[tuple[float, bytearray]] = []  # (given back at, buffer), oldest first
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._idle)

    def take(self) -> bytearray:
        """The buffer given back last (when more are kept: the likeliest still mapped), or a
        new one; its content is whatever it last held."""
        self.expire(self._clock())
        return self._idle.pop()[1] if self._idle else bytearray()

    def give(self, buffer: bytearray) -> None:
        """`buffer` back, to be taken again within `hold_s` seconds or dropped."""
        if len(self._idle) >= self.keep:
            # More bodies than usual were read at once: the smallest buffer is freed, so a
            # small body finished after a big one does not push the big one's memory out.
            if not self._idle:
                return  # keep=0: none is kept
            smallest = min(range(len(self._idle)), key=lambda i: len(self._idle[i][1]))
            if len(self._idle[smallest][1]) >= len(buffer):
                return
            del self._idle[smallest]
        self._idle.append((self._clock(), buffer))
        if self._timer is None:
            self._arm()

    def expire(self, now: float) -> None:
        """Drop the buffers given back before `now - hold_s`."""
        fresh = [(at, buffer) for at, buffer in self._idle if now - at < self.hold_s]
        self._idle = fresh

    def clear(self) -> None:
        """Drop every buffer now."""
        self._idle.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # given back outside a loop (a test): dropped at the next `take`
        self._timer = loop.call_later(self.hold_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.expire(self._clock())
        if self._idle:
            # The oldest buffer left is younger than `hold_s`: look again when it expires.
            self._timer = asyncio.get_running_loop().call_later(
                self.hold_s - (self._clock() - self._idle[0][0]), self._on_timer
            )
