"""The client against the emulator's real-API behaviours (issue 17): redirects on download,
the default politeness, and archive rows whose stored size differs from the delivered one."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from pipeline.emulator import Emulator
from pipeline.onc import ArchiveQuery, ClientOptions, DataSource, OncClient
from pipeline.settings import OncSettings
from tests.downloads import download
from tests.integration.onc.conftest import TOKEN, client, running_emulator

DAY = {"date_from": "2026-11-19T00:00:00.000Z", "date_to": "2026-11-19T01:00:00.000Z"}


@dataclass
class FileHost:
    """A second listener (another port: another origin) serving the emulator's file bytes,
    like a storage host a download might be redirected to. It records what it was sent."""

    emu: Emulator | None = None
    seen: list[str] = field(default_factory=list)  # request target and headers, as received

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        self.seen.append(f"{request.path_qs}\n{headers}")
        assert self.emu is not None
        f = self.emu.context.archive.lookup(request.query.get("filename", ""))
        if f is None:
            return web.Response(status=404)
        body = b"".join(self.emu.context.archive.chunks(f, 0, f.size, 1 << 20))
        return web.Response(body=body, content_type="application/octet-stream")


@pytest.fixture
async def redirected() -> AsyncIterator[tuple[Emulator, FileHost]]:
    host = FileHost()
    app = web.Application()
    app.router.add_get("/{tail:.*}", host.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with running_emulator(
            clock_start=None,
            archive_file_sizes={"ICLISTENHF1560.wav": 50_000},
            archive_redirect_to=f"http://127.0.0.1:{port}",
        ) as emu:
            host.emu = emu
            yield emu, host
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("bulk", [False, True], ids=["loop", "bulk"])
async def test_a_download_follows_a_redirect_without_the_token(
    redirected: tuple[Emulator, FileHost], tmp_path: Path, bulk: bool
) -> None:
    """Item 5: downloads follow redirects like the official clients, and the token never
    goes to another origin (the emulator puts it in the Location, the harmful way)."""
    emu, host = redirected
    (truth, *_) = emu.truth.archive_files(device_code="ICLISTENHF1560", extension="wav", **DAY)
    async with client(emu) as onc:
        done = await download(onc, truth.filename, tmp_path, expected_size=truth.size, bulk=bulk)
    assert hashlib.sha256(done.path.read_bytes()).hexdigest() == truth.sha256
    (record,) = emu.requests.of("archivefile.download")
    assert record.status == 302
    assert len(host.seen) == 1
    assert TOKEN not in host.seen[0]
    assert "token=" not in host.seen[0]


async def test_listing_rows_give_the_delivered_size_of_compressed_files(tmp_path: Path) -> None:
    """Item 1: `size` of a listed file is the uncompressed size a download delivers."""
    async with running_emulator(clock_start=None) as emu, client(emu) as onc:
        query = ArchiveQuery(
            source=DataSource(device_code="ICLISTENHF1560"), file_extension="wav", **DAY
        )
        infos = [info async for info in onc.archive_files(query)]
        truth = {
            t.filename: t
            for t in emu.truth.archive_files(device_code="ICLISTENHF1560", extension="wav", **DAY)
        }
        assert infos
        assert all(i.stored_size is not None and i.stored_size < i.size for i in infos)
        assert {i.filename: i.size for i in infos} == {n: t.size for n, t in truth.items()}
        first = infos[0]
        done = await download(onc, first.filename, tmp_path, expected_size=first.size)
        assert done.size == truth[first.filename].size


def test_client_defaults_and_settings_defaults_are_one() -> None:
    """Item 6: the `onc` settings section and ClientOptions share their defaults."""
    options = ClientOptions(token="x")
    section = OncSettings()
    assert options.max_concurrency == section.max_concurrency
    assert options.max_rate_per_s == section.max_rate_per_s
    assert options.max_attempts == section.max_attempts
    assert options.total_timeout == section.total_timeout.total_seconds()
    assert options.read_timeout == section.read_timeout.total_seconds()
    assert options.connect_timeout == section.connect_timeout.total_seconds()
    assert options.backoff_max == section.backoff_max.total_seconds()
    assert options.retry_deadline == section.retry_deadline.total_seconds()


async def test_default_client_is_polite_to_the_emulator() -> None:
    """Item 6: with default options, at most 3 requests in flight and 1 request a second
    (ONC blocked a user downloading archive files several times a second and asked for about
    3 parallel workers: lucascesarfd/onc_dataset#4)."""
    async with running_emulator(clock_start=None) as emu:
        async with OncClient(ClientOptions(token=TOKEN, base_url=emu.onc_url)) as onc:
            await asyncio.gather(*(onc.locations(location_code="BACAX") for _ in range(5)))
        starts = sorted(r.started_monotonic for r in emu.requests.of("locations"))
        assert len(starts) == 5
        assert emu.requests.peak_in_flight <= 3
        # Five requests at one a second (burst 1) take at least four seconds to start.
        assert starts[-1] - starts[0] >= 4 * 0.95
