"""Bulk downloads (big files read in a worker thread, off aiohttp) against the emulator's socket:
the edge cases of the aiohttp path hold on this one too."""

from __future__ import annotations

import asyncio
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest
import structlog

from pipeline.emulator import Emulator
from pipeline.exceptions import OncError
from pipeline.onc import ArchiveQuery, DataSource, OncClient
from pipeline.onc import transport as transport_module
from pipeline.onc.errors import OncNetworkError
from pipeline.onc.options import ClientOptions
from tests.downloads import download
from tests.integration.onc.conftest import TOKEN, client, running_emulator
from tests.unit.onc.recording import RecordingMetrics, loop_errors
from tests.unit.onc.test_transport import cancel

CAMERA = "AXISQ6044PTZACCC8E334C53"
SIZE = 6_000_000
DOWNLOAD = "/api/archivefile/download"
FIRST_VIDEO = ArchiveQuery(
    DataSource(device_code=CAMERA),
    "2020-01-01T00:00:00.000Z",
    "2020-01-01T00:15:00.000Z",
    file_extension="mp4",
)


def truth_of(emu: Emulator) -> tuple[str, str, bytes]:
    """(file name, sha256, bytes) of the camera's first video."""
    (f,) = emu.truth.archive_files(
        date_from="2020-01-01T00:00:00.000Z",
        date_to="2020-01-01T00:15:00.000Z",
        device_code=CAMERA,
        extension="mp4",
    )
    assert f.sha256 is not None
    stored = emu.context.archive.lookup(f.filename)
    assert stored is not None
    content = b"".join(emu.context.archive.chunks(stored, 0, f.size, 1 << 20))
    return f.filename, f.sha256, content


def statuses(emu: Emulator) -> list[int | None]:
    return [r.status for r in emu.requests.of("archivefile.download")]


def rendered(exc: BaseException) -> str:
    """Everything a traceback of `exc` would print, causes and contexts included."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(vars(exc))


async def test_a_bulk_body_is_read_by_a_worker_thread_and_verified(tmp_path: Path) -> None:
    readers: set[str] = set()
    real = transport_module._ThreadedResponse.readinto

    def spy(self: Any, buffer: memoryview) -> int:
        readers.add(threading.current_thread().name)
        return real(self, buffer)

    metrics = RecordingMetrics()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transport_module._ThreadedResponse, "readinto", spy)
        async with running_emulator(archive_file_sizes={CAMERA: SIZE}) as emu:
            name, sha256, content = truth_of(emu)
            async with client(emu, metrics=metrics) as onc:
                got = await download(
                    onc, name, tmp_path, expected_size=SIZE, expected_sha256=sha256, bulk=True
                )
    assert got.sha256 == sha256
    assert got.path.read_bytes() == content
    assert readers
    assert threading.main_thread().name not in readers
    assert statuses(emu) == [200]
    # The bytes reach the request metrics as on the aiohttp path.
    assert [(r[0], r[3]) for r in metrics.requests if r[0] == DOWNLOAD] == [(DOWNLOAD, SIZE)]


@pytest.mark.parametrize("kind", ["reset", "truncate"])
async def test_a_body_cut_mid_way_is_resumed_with_range(tmp_path: Path, kind: str) -> None:
    faults = {
        "rules": [{"kind": kind, "endpoint": "archivefile.download", "times": 1, "fraction": 0.5}]
    }
    metrics = RecordingMetrics()
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}, faults=faults) as emu:
        name, sha256, content = truth_of(emu)
        async with client(emu, metrics=metrics) as onc:
            got = await download(
                onc, name, tmp_path, expected_size=SIZE, expected_sha256=sha256, bulk=True
            )
    assert got.path.read_bytes() == content
    assert metrics.retries == [(DOWNLOAD, "network")]
    if kind == "truncate":
        assert got.resumed_from > 0.3 * SIZE  # the bytes before the cut were kept
        assert statuses(emu) == [200, 206]
    # A TCP reset also drops what the kernel had received but not yet handed over: how
    # much the first attempt kept depends on timing.
    assert len(statuses(emu)) == 2


async def test_a_stalled_body_times_out_and_is_resumed(tmp_path: Path) -> None:
    drip = {"kind": "drip", "endpoint": "archivefile.download", "times": 1}
    faults = {"rules": [drip | {"chunk_bytes": 1 << 20, "interval_s": 5.0}]}
    metrics = RecordingMetrics()
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}, faults=faults) as emu:
        name, sha256, content = truth_of(emu)
        async with client(emu, metrics=metrics, read_timeout=0.5) as onc:
            got = await download(onc, name, tmp_path, expected_sha256=sha256, bulk=True)
    assert got.path.read_bytes() == content
    assert metrics.retries == [(DOWNLOAD, "network")]


async def test_a_cancelled_bulk_download_leaves_a_resumable_part_file(tmp_path: Path) -> None:
    faults = {
        "rules": [
            {
                "kind": "drip",
                "endpoint": "archivefile.download",
                "times": 1,
                "chunk_bytes": 100_000,
                "interval_s": 0.05,
            }
        ]
    }
    async with running_emulator(archive_file_sizes={CAMERA: SIZE}, faults=faults) as emu:
        name, sha256, content = truth_of(emu)
        part = tmp_path / f".{name}.part"
        async with client(emu) as onc, loop_errors() as errors:
            task = asyncio.create_task(download(onc, name, tmp_path, bulk=True))
            while not part.exists() or part.stat().st_size < 300_000:
                assert not task.done()
                await asyncio.sleep(0.02)
            await cancel(task)
            del task
            kept = part.read_bytes()
            assert 0 < len(kept) < SIZE
            assert kept == content[: len(kept)]
            # Nothing still writes into it.
            await asyncio.sleep(0.2)
            assert part.stat().st_size == len(kept)
            assert not [t for t in threading.enumerate() if t.name.startswith("onc-download")]
            got = await download(onc, name, tmp_path, expected_sha256=sha256, bulk=True)
    assert got.resumed_from == len(kept)
    assert got.path.read_bytes() == content
    assert statuses(emu)[-1] == 206
    # The interrupted read's error was retrieved: asyncio logged nothing at ERROR.
    assert errors == []


async def test_bulk_errors_and_logs_never_hold_the_token(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    always_cut = {"rules": [{"kind": "reset", "endpoint": "archivefile.download", "fraction": 0.5}]}
    with structlog.testing.capture_logs() as logs:
        async with running_emulator(archive_file_sizes={CAMERA: SIZE}, faults=always_cut) as emu:
            name, _, _ = truth_of(emu)
            async with client(emu, max_attempts=2) as onc:
                with pytest.raises(OncNetworkError) as cut:
                    await download(onc, name, tmp_path, bulk=True)
                failures.append(cut.value)
            # Nobody listens on the emulator's port once it is closed: connection refused.
            closed = ClientOptions(token=TOKEN, base_url=emu.onc_url, max_attempts=1)
        async with OncClient(closed) as onc:
            with pytest.raises(OncNetworkError) as refused:
                await download(onc, name, tmp_path / "other", bulk=True)
            failures.append(refused.value)
    assert any(e["event"] == "onc_request_retry" for e in logs)
    assert TOKEN not in repr(logs)
    for exc in failures:
        assert isinstance(exc, OncError)
        assert TOKEN not in rendered(exc)
        assert "token=REDACTED" in str(exc)
