"""Recorders for tests: a metrics recorder that keeps every hook call so tests can inspect
labels, and `loop_errors`, what the event loop reports to its exception handler."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordingMetrics:
    """Implements pipeline.onc.metrics.OncMetrics by appending to lists."""

    requests: list[tuple[str, int | None, float, int]] = field(default_factory=list)
    retries: list[tuple[str, str]] = field(default_factory=list)

    def request_finished(
        self, endpoint: str, status: int | None, seconds: float, nbytes: int
    ) -> None:
        self.requests.append((endpoint, status, seconds, nbytes))

    def retry(self, endpoint: str, reason: str) -> None:
        self.retries.append((endpoint, reason))

    def text(self) -> str:
        """Every label and value as one string (for secret scans)."""
        return repr(self.requests) + repr(self.retries)


@asynccontextmanager
async def loop_errors() -> AsyncIterator[list[str]]:
    """What the running loop's exception handler is given meanwhile ("Future exception was
    never retrieved" and the like), one line each; the previous handler is restored after.

    An unretrieved future is reported when it is freed: drop the references to what is
    under test inside the block (a finished task, its futures).
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    seen: list[str] = []

    def record(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(f"{context.get('message')}: {context.get('exception')!r}")

    loop.set_exception_handler(record)
    try:
        yield seen
    finally:
        await asyncio.sleep(0)  # the loop's own last handles to a finished task
        gc.collect()
        loop.set_exception_handler(previous)
