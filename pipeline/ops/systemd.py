"""The sd_notify protocol over $NOTIFY_SOCKET, written directly on a datagram socket.

systemd's `Type=notify` waits for READY=1; `systemctl status` shows the last STATUS=;
`WatchdogSec=` expects WATCHDOG=1 at least every $WATCHDOG_USEC microseconds (we ping at half
of it, and only while the event loop is healthy, so a stalled loop gets the process
restarted); STOPPING=1 says shutdown has begun. The protocol is one `KEY=VALUE` per line in a
single datagram to a Unix socket whose address is a path or, when it starts with `@`, a name
in the abstract namespace. Outside systemd ($NOTIFY_SOCKET unset) every call does nothing.
A notification that cannot be sent is logged and dropped: it must never stop the harvester.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

STATUS_MAX = 200


def _address(raw: str) -> str:
    # `@name` is systemd's spelling of an abstract socket, whose real address starts with NUL.
    return "\0" + raw[1:] if raw.startswith("@") else raw


def _one_line(text: str) -> str:
    return " ".join(text.split())[:STATUS_MAX]


class SystemdNotifier:
    """Sends sd_notify messages; a no-op when not started by systemd with Type=notify."""

    def __init__(
        self,
        notify_socket: str | None,
        *,
        watchdog_usec: int | None = None,
    ) -> None:
        self._address = _address(notify_socket) if notify_socket else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self.sent: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SystemdNotifier:
        """Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (the daemon passes os.environ)."""
        usec: int | None = None
        raw_usec = environ.get("WATCHDOG_USEC", "")
        if raw_usec.isdigit():
            usec = int(raw_usec)
        # The watchdog settings are meant for the main process only; a child that inherited
        # them (WATCHDOG_PID names another process) must not ping on its parent's behalf.
        raw_pid = environ.get("WATCHDOG_PID", "")
        if raw_pid.isdigit() and int(raw_pid) != os.getpid():
            usec = None
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the watchdog timeout), or None."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines in one datagram; returns whether it was sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop: a full socket buffer drops the message instead.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", message=assignments[0].split("=", 1)[0], error=str(exc))
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1, with an optional STATUS= in the same datagram."""
        lines = ["READY=1"]
        if status:
            lines.append(f"STATUS={_one_line(status)}")
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        """STATUS=: the one-line summary `systemctl status` shows."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = "stopping") -> bool:
        """STOPPING=1: shutdown has begun (systemd now waits up to TimeoutStopSec)."""
        lines = ["STOPPING=1"]
        if status:
            lines.append(f"STATUS={_one_line(status)}")
        return self.notify(*lines)

    def close(self) -> None:
        """Release the socket."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    async def run(
        self,
        stop: asyncio.Event,
        *,
        healthy: Callable[[], bool],
        status: Callable[[], Awaitable[str]] | None = None,
        status_every: float = 30.0,
    ) -> None:
        """Until `stop`: WATCHDOG=1 every half timeout while `healthy()`, STATUS= periodically.

        Returns at once when there is neither a watchdog nor a status to send.
        """
        interval = self.watchdog_interval
        if not self.enabled or (interval is None and status is None):
            return
        tick = min(interval or status_every, status_every)
        loop = asyncio.get_running_loop()
        next_status = loop.time()
        while not stop.is_set():
            if interval is not None:
                if healthy():
                    self.watchdog()
                else:
                    log.warning("sd_watchdog_withheld", reason="event loop unhealthy")
            if status is not None and loop.time() >= next_status:
                next_status = loop.time() + status_every
                try:
                    self.status(await status())
                except Exception as exc:  # a failed summary must not stop the watchdog
                    log.warning("sd_status_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await stop.wait()
