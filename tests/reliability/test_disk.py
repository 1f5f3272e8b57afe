"""An output folder that is full (ENOSPC) or read-only: a clear error naming the path, exit 1,
no cursor past unwritten data, no truncated final file, and a complete catch-up once fixed.

The output root is a real tmpfs mounted for the test (`size=` for a full disk, `remount,ro`
for a read-only one), so the errors come from the kernel, not from a mock. Mounting needs
root and CAP_SYS_ADMIN; where that is not permitted the same scenarios inject the errno
in-process at the two places bytes reach the disk (`os.replace` of published files and the
download writer), and the test says so in its id.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pipeline.daemon import run_once
from pipeline.emulator import Emulator
from pipeline.engine.streams.base import PassOutcome
from pipeline.settings import load_settings
from tests.reliability.conftest import (
    Harness,
    assert_no_temporaries,
    assert_state_consistent,
    check_everything,
    cursors,
    measure,
    small_workload,
    wait_exit,
)


def _mount(*args: str) -> bool:
    result = subprocess.run(["mount", *args], capture_output=True, check=False)
    return result.returncode == 0


def can_mount(tmp: Path) -> bool:
    """True when this process may mount a tmpfs (root with CAP_SYS_ADMIN)."""
    probe = tmp / "probe"
    probe.mkdir(exist_ok=True)
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
        return False
    subprocess.run(["umount", str(probe)], check=False)
    return True


@asynccontextmanager
async def tmpfs(path: Path, size: str) -> AsyncIterator[Callable[..., None]]:
    """A tmpfs at `path`; yields `remount(option)` (e.g. "size=256m", "ro", "rw")."""
    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
    assert _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))

    def remount(option: str) -> None:
        assert _mount("-o", f"remount,{option}", str(path))

    try:
        yield remount
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(path)], check=False)


async def once_cli(harness: Harness, log: str) -> tuple[int, str]:
    """`onc-pipeline once` as a subprocess; (exit code, its stderr+stdout)."""
    proc = harness.spawn("once", log)
    code = await wait_exit(proc, 90)
    return code, (harness.root / log).read_text()


def final_files(root: Path) -> list[Path]:
    """Published files (not temporaries, not the manifest listing)."""
    return [
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.endswith(".tmp")
        and not p.name.startswith(".")
        and p.name != "manifest.tsv"
    ]


async def assert_no_unrecorded_files(harness: Harness) -> None:
    """Every final file on disk is in the manifest at its size and digest: nothing truncated.

    (The manifest check runs the other way round in assert_state_consistent.)"""
    from pipeline.state.sqlite import SqliteStateStore

    async with SqliteStateStore(harness.root / "state.db", read_only=True) as store:
        recorded = {e.path for e in await store.list_manifest()}
    stray = [str(p.relative_to(harness.out)) for p in final_files(harness.out)]
    assert [p for p in stray if p not in recorded] == []


# `ONC_PIPELINE_TEST_NO_MOUNT=1` forces the in-process variant (to check it where mounting works).
MOUNTED = not os.environ.get("ONC_PIPELINE_TEST_NO_MOUNT") and can_mount(Path("/tmp"))


@pytest.mark.skipif(not MOUNTED, reason="mounting a tmpfs is not permitted here")
@pytest.mark.parametrize("fault", ["enospc-tmpfs", "readonly-tmpfs"])
async def test_full_or_readonly_output_fails_clearly_then_catches_up(
    live_emulator: Emulator, tmp_path: Path, fault: str
) -> None:
    emu = live_emulator
    harness = small_workload(tmp_path, emu)
    # A few MB hold the first files but not the 1.5 MB hydrophone files and NetCDF partitions.
    size = "3m" if fault == "enospc-tmpfs" else "64m"
    async with tmpfs(harness.out, size) as remount:
        if fault == "readonly-tmpfs":
            remount("ro")
        code, log = await once_cli(harness, "once-broken.log")
        assert code == 1, log[-3000:]
        assert "Traceback" not in log
        reason = "no space left on device" if fault == "enospc-tmpfs" else "read-only file system"
        alt = "disk full" if fault == "enospc-tmpfs" else reason
        failed = [line for line in log.splitlines() if line.startswith("FAILED")]
        assert failed, log[-2000:]
        assert all("OutputError" in line for line in failed), failed
        assert all(reason in line.lower() or alt in line.lower() for line in failed), failed
        assert all(str(harness.out) in line for line in failed), "the message names the path"

        marks = await cursors(tmp_path / "state.db")
        if fault == "readonly-tmpfs":
            assert all(v is None for v in marks.values()), marks
        # No final file without its manifest entry, and every entry intact.
        await assert_no_unrecorded_files(harness)
        if any(final_files(harness.out)):
            await assert_state_consistent(tmp_path / "state.db", harness.out)

        # Space freed (or the mount made writable): the next run completes, nothing lost.
        remount("size=512m" if fault == "enospc-tmpfs" else "rw")
        code, log = await once_cli(harness, "once-fixed.log")
        assert code == 0, log[-3000:]
        counts = await check_everything(emu, harness)
        assert_no_temporaries(harness.out)
    measure(f"disk.{fault}.failed_streams", len(failed))
    measure(f"disk.{fault}.records_after_recovery", counts["scalar"] + counts["raw"])


# Runs even where the tmpfs variant runs: the injected path is the one every machine has.
@pytest.mark.parametrize(
    "fault", [errno.ENOSPC, errno.EROFS], ids=["enospc-inject", "erofs-inject"]
)
async def test_injected_disk_errors_fail_clearly_then_catch_up(
    live_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: int
) -> None:
    import pipeline.onc.download as download

    emu = live_emulator
    harness = small_workload(tmp_path, emu)
    settings = load_settings(harness.config, environ={}, secrets_dirs=[])

    def failing(*_: Any, **__: Any) -> None:
        raise OSError(fault, os.strerror(fault))

    monkeypatch.setattr(os, "replace", failing)  # every publish's rename
    monkeypatch.setattr(download, "write_all", failing)
    results = await run_once(settings, asyncio.Event())
    monkeypatch.undo()
    failures = [
        str(r) if isinstance(r, Exception) else "; ".join(r.errors) for r in results.values()
    ]
    assert all(str(harness.out) in f for f in failures if f)
    assert any(failures)
    await assert_no_unrecorded_files(harness)
    results = await run_once(settings, asyncio.Event())
    assert all(isinstance(r, PassOutcome) and r.ok for r in results.values()), results
    await check_everything(emu, harness)


@pytest.mark.skipif(not MOUNTED, reason="mounting a tmpfs is not permitted here")
@pytest.mark.parametrize("already_full", [False, True], ids=["fills-up", "already-full"])
async def test_full_disk_under_netcdf_is_reported_as_full(
    tmp_path: Path, already_full: bool
) -> None:
    """A NetCDF partition larger than the space left, or a disk full already: the error says
    the disk is full, names the file, and leaves neither a temporary nor a partial file."""
    from datetime import timedelta

    from pipeline.exceptions import OutputError
    from pipeline.outputs.netcdf import NetcdfWriter
    from pipeline.records import Window
    from tests.unit.outputs.helpers import DAY, DEPTH, TEMP, ctd_meta, times

    def fill(folder: Path) -> None:
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            os.write(fd, b"0" * (2 << 20))  # a short write: it fills the disk
            with pytest.raises(OSError, match="No space left"):
                os.write(fd, b"0")
        finally:
            os.close(fd)

    def publish(folder: Path) -> None:
        meta = ctd_meta()
        writer = NetcdfWriter({meta.dataset_id: meta}, partition="daily")
        window = writer.open_window(folder, meta.dataset_id, Window(DAY, DAY + timedelta(days=1)))
        t = times(DAY, 40_000)  # about 1.5 MB of records
        window.add_scalar(TEMP, t, [float(i) for i in range(40_000)], [1] * 40_000)
        window.add_scalar(DEPTH, t, [980.0 + i for i in range(40_000)], [1] * 40_000)
        window.publish()

    folder = tmp_path / "full"
    async with tmpfs(folder, "1m"):
        if already_full:
            await asyncio.to_thread(fill, folder)
        with pytest.raises(OutputError) as info:
            await asyncio.to_thread(publish, folder)
        assert str(info.value.path).endswith("onc_bacax_ctd_20261120.nc")
        assert "onc_bacax_ctd_20261120.nc" in str(info.value)  # the message names the file
        assert "no space left on device" in str(info.value)
        files = await asyncio.to_thread(
            lambda: sorted(p.name for p in folder.rglob("*") if p.is_file())
        )
        assert files == (["filler"] if already_full else []), "no temporary or partial file is left"
