"""A window worker process runs with glibc's mmap threshold fixed (`pipeline/allocator.py`):
a big block freed in it does not pull the next big blocks onto the heap; with its trim
threshold at `WORKER_TRIM_THRESHOLD`: a build's freed blocks stay for the next one; and with
a thread that hands the free pages inside its heap back every few seconds; and with Arrow's
default memory pool on malloc (`pipeline/native.py`), its variable inherited from the daemon."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline import allocator
from pipeline.outputs.pool import ProcessWindowBuilder

pytestmark = pytest.mark.skipif(not allocator.is_glibc(), reason="needs glibc")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _libc() -> ctypes.CDLL:
    """The C library with malloc, free and mallinfo2 typed."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    return libc


def maps_big_blocks_after_a_bigger_one_was_freed() -> bool:
    """Runs in the worker: is a 6 MB block mapped on its own after a 16 MB one was freed?

    With glibc's dynamic threshold the freed 16 MB block raises the threshold to 16 MB and
    the 6 MB block comes from the heap; `hblkhd` counts the bytes of mapped blocks.
    """
    libc = _libc()
    libc.free(libc.malloc(16 << 20))
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(6 << 20)
    try:
        return bool(libc.mallinfo2().hblkhd - before >= 6 << 20)
    finally:
        libc.free(block)


def keeps_a_freed_heap_top() -> int:
    """Runs in the worker: how much more free memory its heap's top keeps (`keepcost`) after
    6 MB of blocks under the mmap threshold were allocated there and freed (a trim
    threshold of 128 KiB gives them back, all but the top's padding)."""
    libc = _libc()
    before = libc.mallinfo2().keepcost
    blocks = [libc.malloc(2 << 20) for _ in range(3)]
    for block in reversed(blocks):
        libc.free(block)
    return int(libc.mallinfo2().keepcost - before)


def arrow_pool_with_writer(fmt: str) -> str:
    """Runs in the worker: the allocator behind Arrow's default memory pool once the writer
    of `fmt` is loaded, as a build loads it (or as the fork server preloaded it)."""
    import pyarrow as pa

    from pipeline.outputs import pool

    assert pool._worker_writers is not None
    pool._worker_writers[fmt]
    return pa.default_memory_pool().backend_name


def arena_count() -> int:
    """Runs in the worker: how many malloc arenas glibc lists (`malloc_stats`, to stderr)."""
    import os
    import tempfile

    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            ctypes.CDLL(None).malloc_stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        return sum(1 for line in out.read().decode().splitlines() if line.startswith("Arena "))


def thread_names() -> list[str]:
    """Runs in the worker: the names of its threads."""
    return [thread.name for thread in threading.enumerate()]


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[ProcessWindowBuilder]:
    builder = ProcessWindowBuilder(1, "daily", tmp_path / "procs", {})
    try:
        yield builder
    finally:
        await builder.close()


async def test_a_window_worker_keeps_big_blocks_mapped(pool: ProcessWindowBuilder) -> None:
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("mallinfo2 needs glibc 2.33")
    worker = pool._workers[0]
    assert await worker.call(maps_big_blocks_after_a_bigger_one_was_freed)


async def test_a_window_worker_keeps_its_freed_heap_for_the_next_build(
    pool: ProcessWindowBuilder,
) -> None:
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("mallinfo2 needs glibc 2.33")
    assert await pool._workers[0].call(keeps_a_freed_heap_top) >= 5 << 20


async def test_a_window_worker_hands_its_free_heap_back_periodically(
    pool: ProcessWindowBuilder,
) -> None:
    assert "heap-trim" in await pool._workers[0].call(thread_names)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_a_window_worker_allocates_arrow_buffers_with_malloc(
    pool: ProcessWindowBuilder, fmt: str
) -> None:
    assert await pool._workers[0].call(arrow_pool_with_writer, fmt) == "system"


# In a fresh interpreter: the fork server is started once per process, with the preload of
# the first builder that needed it (here pyarrow's, which starts a thread when imported).
_ARENA_PROBE = """
import asyncio, sys
from pathlib import Path
from pipeline.outputs.pool import ProcessWindowBuilder
from tests.integration.outputs.test_pool_allocator import arena_count

async def main():
    builder = ProcessWindowBuilder(1, "daily", Path(sys.argv[1]), {}, formats=["parquet"])
    try:
        print(await builder._workers[0].call(arena_count))
    finally:
        await builder.close()

asyncio.run(main())
"""


def test_a_window_worker_with_arrow_loaded_has_one_arena(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    run = subprocess.run(
        [sys.executable, "-c", _ARENA_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1"]
