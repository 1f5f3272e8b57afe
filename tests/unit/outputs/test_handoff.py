"""Pages through shared memory: a batch comes back whole and independent of its segment,
segments are reused, trimmed when idle and handed to each worker process once."""

from __future__ import annotations

import asyncio
import math
import os
import struct
from array import array
from concurrent.futures import Future

import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs.handoff import PageHandoff, SharedBatch, attach, join, receive, split
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
    original.axes[1] = original.axes[1].replace("T01", "T01\u00b5", 1)  # not ASCII: still whole
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


def segment_blocks(handoff_: PageHandoff) -> int:
    return sum(os.fstat(segment.fd).st_blocks for segment in handoff_._segments)


async def test_a_page_goes_through_a_segment_that_is_reused_once_free() -> None:
    pages = PageHandoff(min_bytes=0)
    loop = asyncio.get_running_loop()
    first, second = batch(1000), batch(1000, base=5)
    a = pages.lease(first, WORKER)
    b = pages.lease(second, WORKER)  # the first is busy: another segment
    assert a is not None
    assert b is not None
    assert a.shared.segment != b.shared.segment
    assert a.attach is not None
    assert b.attach is not None
    attach(a.attach)
    attach(b.attach)
    assert same(receive(a.shared), first)
    assert same(receive(b.shared), second)
    # Run and done: the segment is free again, and known to be mapped there.
    finished: Future[None] = Future()
    finished.set_result(None)
    pages.done_callback(a, WORKER, loop)(finished)
    await asyncio.sleep(0)
    third = batch(900, base=9)
    c = pages.lease(third, WORKER)
    assert c is not None
    assert c.shared.segment == a.shared.segment
    assert c.attach is None
    assert same(receive(c.shared), third)
    # Another worker process (a restarted one) is handed the file again.
    pages.done_callback(c, WORKER, loop)(finished)
    await asyncio.sleep(0)
    d = pages.lease(third, object())
    assert d is not None
    assert d.shared.segment == a.shared.segment
    assert d.attach is not None
    # A page larger than any free segment gets one of its own.
    pages.release(d)
    e = pages.lease(batch(30_000), WORKER)
    assert e is not None
    assert e.shared.segment not in (a.shared.segment, b.shared.segment)
    assert pages.segments == 3
    pages.close()


async def test_a_call_that_failed_or_never_ran_frees_its_segment_but_maps_nothing() -> None:
    pages = PageHandoff(min_bytes=0)
    loop = asyncio.get_running_loop()
    for outcome in ("never submitted", "failed", "cancelled"):
        lease = pages.lease(batch(100), WORKER)
        assert lease is not None
        assert lease.attach is not None
        lease.attach.fd.detach()  # what the worker would have taken
        done = pages.done_callback(lease, WORKER, loop)
        if outcome == "never submitted":
            done(None)
        else:
            future: Future[None] = Future()
            if outcome == "failed":
                future.set_exception(OutputError("disk full"))
            else:
                future.cancel()
            done(future)
            await asyncio.sleep(0)
        again = pages.lease(batch(100), WORKER)
        assert again is not None
        assert again.shared.segment == lease.shared.segment, outcome  # free again
        assert again.attach is not None, outcome  # and still to be handed over
        again.attach.fd.detach()
        pages.release(again)
    assert pages.segments == 1
    pages.close()


async def test_idle_segments_give_their_memory_back_and_still_serve() -> None:
    pages = PageHandoff(min_bytes=0, idle_s=0.05)
    page = batch(20_000)
    lease = pages.lease(page, WORKER)
    assert lease is not None
    assert lease.attach is not None
    attach(lease.attach)
    assert segment_blocks(pages) > 0
    assert pages.resident() > 0
    await asyncio.sleep(0.1)
    assert segment_blocks(pages) > 0, "trimmed while busy"
    pages.release(lease)
    await asyncio.sleep(0.2)
    assert segment_blocks(pages) == 0
    assert pages.resident() == 0
    again = pages.lease(page, WORKER)  # a later page faults fresh pages in
    assert again is not None
    assert again.shared.segment == lease.shared.segment
    assert same(receive(again.shared), page)
    # A page in use cancels the trim planned when the last one was freed.
    pages.release(again)
    busy = pages.lease(page, WORKER)
    await asyncio.sleep(0.2)
    assert busy is not None
    assert segment_blocks(pages) > 0
    pages.close()


def test_small_raw_and_unsupported_pages_take_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = PageHandoff(min_bytes=100_000)
    assert pages.lease(batch(100), WORKER) is None  # a poll's few rows
    assert (
        pages.lease(RawBatch(["t"] * 50_000, ["x" * 10] * 50_000, [" "] * 50_000), WORKER) is None
    )
    assert pages.lease(batch(20_000), WORKER) is not None

    def refused(*_: object) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", refused)
    pages = PageHandoff(min_bytes=0)
    assert pages.lease(batch(100), WORKER) is None
    monkeypatch.undo()
    assert pages.lease(batch(100), WORKER) is None  # refused once: this handoff keeps the pipe


def test_a_page_in_a_segment_never_mapped_is_an_output_error() -> None:
    with pytest.raises(OutputError, match="segment 999999 is not mapped"):
        receive(SharedBatch(999_999, b"", ()))
