"""sd_notify over real AF_UNIX datagram sockets: message order, abstract names, watchdog gating."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ops.systemd import SystemdNotifier


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # as $NOTIFY_SOCKET spells it

    async def receive(self, seconds: float = 10.0) -> list[str]:
        """The next datagram as its `KEY=VALUE` lines."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(seconds):
            data = await loop.sock_recv(self.sock, 4096)
        return data.decode().split("\n")

    async def receive_until(self, line: str, seconds: float = 10.0) -> list[list[str]]:
        """Every datagram up to and including the first containing `line`."""
        got: list[list[str]] = []
        async with asyncio.timeout(seconds):
            while not got or line not in got[-1]:
                got.append(await self.receive())
        return got


@pytest.fixture
def path_socket() -> Iterator[NotifySocket]:
    # A short directory: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path can be longer.
    folder = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    address = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    yield NotifySocket(sock, address)
    sock.close()
    os.unlink(address)
    folder.rmdir()


@pytest.fixture
def abstract_socket() -> Iterator[NotifySocket]:
    name = f"onc-pipeline-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    yield NotifySocket(sock, "@" + name)
    sock.close()


async def test_messages_arrive_in_order(path_socket: NotifySocket) -> None:
    notifier = SystemdNotifier(path_socket.address, watchdog_usec=100_000)
    assert notifier.watchdog_interval == 0.05
    stop = asyncio.Event()
    statuses = iter(["first summary", "second\nsummary"])

    async def status() -> str:
        return next(statuses, "later summary")

    assert notifier.ready("starting up")
    task = asyncio.create_task(
        notifier.run(stop, healthy=lambda: True, status=status, status_every=3600)
    )
    got = await path_socket.receive_until("WATCHDOG=1")
    stop.set()
    await task
    assert notifier.stopping("draining")
    got += await path_socket.receive_until("STOPPING=1")
    notifier.close()

    assert got[0] == ["READY=1", "STATUS=starting up"]
    assert got[-1] == ["STOPPING=1", "STATUS=draining"]
    middle = got[1:-1]
    assert ["WATCHDOG=1"] in middle
    assert ["STATUS=first summary"] in middle
    # status_every is an hour: one summary only, and never a second READY or STOPPING.
    assert ["STATUS=second summary"] not in middle
    assert all(m in (["WATCHDOG=1"], ["STATUS=first summary"]) for m in middle)


async def test_abstract_namespace_address(abstract_socket: NotifySocket) -> None:
    notifier = SystemdNotifier(abstract_socket.address)
    assert notifier.status("one\ntwo   three")
    assert await abstract_socket.receive() == ["STATUS=one two three"]
    notifier.close()


async def test_watchdog_is_withheld_while_unhealthy(path_socket: NotifySocket) -> None:
    notifier = SystemdNotifier(path_socket.address, watchdog_usec=20_000)
    asked = 0
    became_healthy = asyncio.Event()

    def healthy() -> bool:
        nonlocal asked
        asked += 1
        if asked > 5:
            became_healthy.set()
            return True
        return False

    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop, healthy=healthy))
    message = await path_socket.receive()
    stop.set()
    await task
    notifier.close()
    # The first ping came only once the loop was reported healthy, after five refusals.
    assert message == ["WATCHDOG=1"]
    assert became_healthy.is_set()
    assert notifier.sent >= 1


async def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert not notifier.ready("x")
    assert not notifier.stopping()
    # run() returns at once instead of looping forever.
    await asyncio.wait_for(notifier.run(asyncio.Event(), healthy=lambda: True), timeout=5)


def test_from_environ_reads_watchdog_for_this_process_only() -> None:
    mine = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert mine.watchdog_interval == 30.0
    other = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}
    )
    assert other.watchdog_interval is None
    junk = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"})
    assert junk.enabled
    assert junk.watchdog_interval is None


def test_unreachable_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "missing"))
    assert notifier.enabled
    assert not notifier.ready("x")
    assert notifier.sent == 0
    notifier.close()
