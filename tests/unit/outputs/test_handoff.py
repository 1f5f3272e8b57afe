"""Pages through shared memory: a batch comes back whole and independent of its segment,
segments are reused, mapped once per worker process, emptied once read, retired when their
pool broke, and refused hosts fall back to the pipe."""

from __future__ import annotations

import asyncio
import errno
import math
import os
import struct
from array import array
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs import handoff
from pipeline.outputs.handoff import (
    PageHandoff,
    SegmentFile,
    SegmentMapError,
    SharedBatch,
    attach,
    join,
    receive,
    split,
)
from pipeline.records import PackedColumn, PageBatch, RawBatch, ScalarBatch, SensorInfo

WORKER = object()  # stands for a worker's executor


def batch(rows: int, *, base: float = 0.0, axes: int = 1) -> ScalarBatch:
    texts = [
        "\n".join(f"2026-11-20T{a:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z" for i in range(rows))
        for a in range(axes)
    ]
    columns = [
        PackedColumn(
            SensorInfo(code=f"s{k}", name="Temperature", unit="°C"),
            k % axes,
            rows,
            array("d", [float("nan") if i % 7 == 0 else base + k + i / 3 for i in range(rows)]),
            array("b", [9 if i % 7 == 0 else 1 for i in range(rows)]),
        )
        for k in range(3)
    ]
    return ScalarBatch(texts, columns, {"1": "good", "9": "missing"})


def same(a: PageBatch, b: ScalarBatch) -> bool:
    """Equal field by field, NaN payloads compared bit for bit."""
    assert isinstance(a, ScalarBatch)
    if a.axes != b.axes or a.qaqc_flag_info != b.qaqc_flag_info or len(a.packed) != len(b.packed):
        return False
    for x, y in zip(a.packed, b.packed, strict=True):
        if (x.sensor, x.axis, x.length, x.flags.typecode) != (
            y.sensor,
            y.axis,
            y.length,
            y.flags.typecode,
        ):
            return False
        if x.values.tobytes() != y.values.tobytes() or x.flags.tobytes() != y.flags.tobytes():
            return False
    return True


def test_a_split_batch_joins_to_the_same_batch_holding_its_own_memory() -> None:
    original = batch(500, axes=2)
    # Not ASCII, and a lone surrogate (a JSON parser takes one from `\ud800`): still whole.
    original.axes[1] = original.axes[1].replace("T01", "T01\u00b5", 1).replace("Z", "\ud800", 1)
    wide = array("q", [1, -(2**40), 300] + [1] * 497)  # flags past a byte keep their width
    original.packed[2] = PackedColumn(
        original.packed[2].sensor, 1, 500, original.packed[2].values, wide
    )
    original.packed[0].values[1] = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0BAD))[0]
    meta, buffers = split(original)
    assert len(meta) < 1000  # the arrays and axes went out of band
    copies = [bytearray(buffer) for buffer in buffers]
    back = join(meta, [memoryview(copy) for copy in copies])
    assert isinstance(back, ScalarBatch)
    assert same(back, original)
    assert back.packed[2].flags.typecode == "q"
    for copy in copies:  # the batch does not look into the buffers it was built from
        copy[:] = bytes(len(copy))
    assert same(back, original)
    assert math.isnan(back.packed[0].values[0])


def segment_blocks(pages: PageHandoff) -> int:
    """Blocks the segments' files hold (0 once trimmed)."""
    return sum(os.fstat(segment.fd).st_blocks for segment in pages._segments)


def mapped(lease: handoff.Lease | None) -> ScalarBatch:
    """The lease's page as a worker (this process) reads it, mapping its segment first."""
    assert lease is not None
    if lease.attach is not None:
        attach(lease.attach)
    back = receive(lease.shared)
    assert isinstance(back, ScalarBatch)
    return back


def finished(exception: BaseException | None = None) -> Future[None]:
    future: Future[None] = Future()
    if exception is None:
        future.set_result(None)
    else:
        future.set_exception(exception)
    return future


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_page_goes_through_a_segment_that_is_reused_once_free() -> None:
    pages = PageHandoff(min_bytes=0, max_segments=3)
    loop = asyncio.get_running_loop()
    first, second = batch(1000), batch(1000, base=5)
    a = await pages.lease(first, WORKER)
    b = await pages.lease(second, WORKER)  # the first is busy: another segment
    assert a is not None
    assert b is not None
    assert a.shared.segment != b.shared.segment
    assert a.attach is not None  # not yet mapped by this worker
    assert same(mapped(a), first)
    assert same(mapped(b), second)
    pages.mapped(a, WORKER)
    # The worker ran the call, on the executor's thread: the segment is free again.
    done = pages.done_callback(a, loop)
    await asyncio.to_thread(done, finished())
    await settle()
    third = batch(900, base=9)
    c = await pages.lease(third, WORKER)
    assert c is not None
    assert c.shared.segment == a.shared.segment
    assert c.attach is None  # mapped there already
    assert same(mapped(c), third)
    # Another worker process (a restarted one) maps it afresh.
    pages.release(c)
    d = await pages.lease(third, object())
    assert d is not None
    assert d.shared.segment == a.shared.segment
    assert d.attach is not None
    # A page larger than any free segment gets one of its own.
    pages.release(d)
    e = await pages.lease(batch(30_000), WORKER)
    assert e is not None
    assert e.shared.segment not in (a.shared.segment, b.shared.segment)
    assert pages.segments == 3
    pages.close()
    assert pages.segments == 0


async def test_a_segment_is_free_after_any_end_of_its_call_and_retired_if_the_pool_broke() -> None:
    pages = PageHandoff(min_bytes=0)
    loop = asyncio.get_running_loop()
    cancelled: Future[None] = Future()
    cancelled.cancel()
    for outcome in (None, finished(OutputError("disk full")), cancelled):
        lease = await pages.lease(batch(100), WORKER)
        assert lease is not None
        pages.done_callback(lease, loop)(outcome)
        await settle()
        again = await pages.lease(batch(100), WORKER)
        assert again is not None
        assert again.shared.segment == lease.shared.segment, outcome  # free again
        pages.release(again)
    assert pages.segments == 1
    # A broken pool's process may still be reading: the segment is never written again.
    lease = await pages.lease(batch(100), WORKER)
    assert lease is not None
    fd = lease.segment.fd
    pages.done_callback(lease, loop)(finished(BrokenProcessPool("killed")))
    await settle()
    assert pages.segments == 0
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    pages.close()


async def test_a_page_finding_every_segment_busy_waits_for_one() -> None:
    pages = PageHandoff(min_bytes=0, max_segments=2)
    a = await pages.lease(batch(100), WORKER)
    b = await pages.lease(batch(100), WORKER)
    assert a is not None
    assert b is not None
    # Both busy: the third page waits (it is not copied ahead of the worker's queue).
    waiting = asyncio.create_task(pages.lease(batch(30_000), WORKER))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert pages.segments == 2
    pages.release(a)
    big = await asyncio.wait_for(waiting, 5)
    # The free one was too small: replaced by one that fits, within the cap.
    assert big is not None
    assert pages.segments == 2
    assert big.shared.segment not in (a.shared.segment, b.shared.segment)
    assert a.segment not in pages._segments
    # A page cancelled while it waits leaves nothing behind.
    waiting = asyncio.create_task(pages.lease(batch(100), WORKER))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert [segment.busy for segment in pages._segments] == [True, True]
    # One still waiting when the builder closes takes the pipe: no segment is made after.
    waiting = asyncio.create_task(pages.lease(batch(100), WORKER))
    await asyncio.sleep(0.05)
    pages.close()
    pages.release(big)
    assert await asyncio.wait_for(waiting, 5) is None
    assert pages.segments == 0


async def test_a_segment_gives_its_memory_back_once_its_page_was_read() -> None:
    pages = PageHandoff(min_bytes=0)
    page = batch(20_000)
    kept = await pages.lease(page, WORKER)  # busy throughout
    lease = await pages.lease(page, WORKER)
    assert kept is not None
    assert lease is not None
    assert segment_blocks(pages) > 0
    pages.release(lease)
    assert os.fstat(lease.segment.fd).st_blocks == 0
    assert os.fstat(kept.segment.fd).st_blocks > 0  # a page still to be read keeps its own
    assert pages.resident() == kept.segment.size
    # A later page faults fresh pages in.
    again = await pages.lease(page, WORKER)
    assert again is not None
    assert again.shared.segment == lease.shared.segment
    assert same(mapped(again), page)
    pages.release(again)
    pages.release(kept)
    assert segment_blocks(pages) == 0
    assert pages.resident() == 0
    pages.close()


async def test_mapping_a_segment_again_replaces_the_old_mapping() -> None:
    pages = PageHandoff(min_bytes=0)
    lease = await pages.lease(batch(100), WORKER)
    assert lease is not None
    assert lease.attach is not None
    attach(lease.attach)
    old = handoff._mapped[lease.attach.segment]
    attach(lease.attach)
    assert old.closed
    assert not handoff._mapped[lease.attach.segment].closed
    pages.close()


async def test_a_segment_a_worker_cannot_open_is_a_map_error_that_says_if_it_is_for_good() -> None:
    gone = SegmentFile(999_998, 4096, pid=2**22 + 7, fd=3)  # no such process: no /proc entry
    with pytest.raises(SegmentMapError, match="could not map shared page segment") as caught:
        attach(gone)
    assert caught.value.refused
    pages = PageHandoff(min_bytes=0)
    pages.unmappable(SegmentMapError("descriptors short", refused=False))
    assert await pages.lease(batch(100), WORKER) is not None  # a passing shortage
    pages.unmappable(caught.value)
    assert pages.refused is not None
    assert await pages.lease(batch(100), WORKER) is None  # for good
    pages.close()


async def test_small_raw_and_refused_pages_take_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = PageHandoff(min_bytes=100_000)
    assert await pages.lease(batch(100), WORKER) is None  # a poll's few rows
    raw = RawBatch(["t"] * 50_000, ["x" * 10] * 50_000, [" "] * 50_000)
    assert await pages.lease(raw, WORKER) is None
    assert await pages.lease(batch(20_000), WORKER) is not None
    pages.close()

    def failing(code: int) -> object:
        def memfd_create(*_: object) -> int:
            raise OSError(code, os.strerror(code))

        return memfd_create

    monkeypatch.setattr(os, "memfd_create", failing(errno.EMFILE))
    pages = PageHandoff(min_bytes=0)
    assert await pages.lease(batch(100), WORKER) is None
    assert pages.refused is None  # short of descriptors for now
    monkeypatch.setattr(os, "memfd_create", failing(errno.ENOSYS))
    assert await pages.lease(batch(100), WORKER) is None
    assert pages.refused is not None
    monkeypatch.undo()
    # Refused once: this handoff keeps the pipe.
    assert await pages.lease(batch(100), WORKER) is None


def test_a_page_in_a_segment_never_mapped_is_an_output_error() -> None:
    with pytest.raises(OutputError, match="segment 999999 is not mapped"):
        receive(SharedBatch(999_999, b"", ()))


def test_a_map_error_crosses_processes_with_its_verdict() -> None:
    import pickle

    back = pickle.loads(pickle.dumps(SegmentMapError("no /proc", refused=True)))
    assert isinstance(back, SegmentMapError)
    assert back.refused
