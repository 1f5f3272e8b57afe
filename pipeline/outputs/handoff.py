"""Pages handed to a window worker through shared memory instead of the worker's pipe.

A parsed page of an 8-sensor CTD is about 10 MB of arrays and time text. Sent as a call
argument, `ProcessPoolExecutor` pickles it into one bytes object (a copy of every array), writes
it through a 64 KiB pipe in some 150 system calls, and the worker reads it back into a buffer
and unpickles it (two more copies): 30 - 50 CPU ms a page between the two processes, in the
very seconds where the server and the daemon's parsing need the two cores
(benchmarks: `python -m benchmarks --only backfill`; the session-28 section of BENCHMARKS.md).

Here the daemon copies a large page's arrays and time axes once, into a segment of shared
memory (a `memfd`, which nothing names: it is gone with the last process that maps it, even
after a SIGKILL), and sends the worker only a few hundred bytes: which segment, where each
buffer lies, and the rest of the batch pickled in-band (protocol 5's out-of-band buffers).
The worker copies the buffers out into its own arrays before `add` returns, so the segment
is free again once the call is done: 5 - 6 ms a page in all.

A segment serves one call at a time. The daemon keeps a small set per worker, reused page
after page (their memory stays resident while pages flow) and hands a segment's file to the
worker the first time that worker process uses it (`multiprocessing.reduction.DupFd`: the fd
passed over a Unix socket). Segments idle for `IDLE_TRIM_S` give their memory back
(`MADV_REMOVE` frees a shared segment's pages in every process that maps it); a page that
comes later faults fresh pages in. Small pages (near-real-time polls), raw-data pages and
hosts without `memfd_create` keep the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import mmap
import os
import pickle
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import count
from multiprocessing.reduction import DupFd
from typing import Any

from pipeline.exceptions import OutputError
from pipeline.records import PackedColumn, PageBatch, ScalarBatch, SensorInfo, batch_bytes

#: Pages smaller than this go through the pipe: a few pipe writes cost less than a segment.
SHARED_MIN_BYTES = 256 * 1024
#: A segment unused this long gives its memory back.
IDLE_TRIM_S = 10.0
# Segments grow in steps of this (a page a little larger than the last still fits).
_SEGMENT_STEP = 1 << 20
# Frees a shared mapping's pages (Linux; memfd, the only kind of segment, is Linux's too).
_MADV_REMOVE: int = getattr(mmap, "MADV_REMOVE", 9)


# --------------------------------------------------------------------------- the batch, split


def _column(
    sensor: SensorInfo,
    axis: int,
    length: int,
    values_type: str,
    values: memoryview,
    flags_type: str,
    flags: memoryview,
) -> PackedColumn:
    """A packed column rebuilt in the worker: its arrays copied out of the segment."""
    packed_values: array[float] = array(values_type)
    packed_flags: array[int] = array(flags_type)
    packed_values.frombytes(values)
    packed_flags.frombytes(flags)
    return PackedColumn(sensor, axis, length, packed_values, packed_flags)


def _scalar_batch(
    axes: Sequence[memoryview], packed: list[PackedColumn], qaqc_flag_info: dict[str, str]
) -> ScalarBatch:
    """A scalar batch rebuilt in the worker: its time axes decoded out of the segment."""
    return ScalarBatch([str(axis, "utf-8") for axis in axes], packed, qaqc_flag_info)


class _Splitter(pickle.Pickler):
    """Pickles a scalar batch with its arrays and time axes as out-of-band buffers."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is PackedColumn:
            return _column, (
                obj.sensor,
                obj.axis,
                obj.length,
                obj.values.typecode,
                pickle.PickleBuffer(obj.values),
                obj.flags.typecode,
                pickle.PickleBuffer(obj.flags),
            )
        if type(obj) is ScalarBatch:
            # A time axis is ASCII from ONC; UTF-8 keeps any other text whole.
            axes = [pickle.PickleBuffer(axis.encode("utf-8")) for axis in obj.axes]
            return _scalar_batch, (axes, obj.packed, obj.qaqc_flag_info)
        return NotImplemented


def split(batch: ScalarBatch) -> tuple[bytes, list[memoryview]]:
    """The batch pickled without its buffers, and the buffers (views of the batch's arrays and
    of its axes encoded), in the order `join` takes them."""
    buffers: list[pickle.PickleBuffer] = []
    out = io.BytesIO()
    _Splitter(out, protocol=5, buffer_callback=buffers.append).dump(batch)
    return out.getvalue(), [buffer.raw() for buffer in buffers]


def join(meta: bytes, buffers: Sequence[memoryview]) -> PageBatch:
    """The batch `split` took apart; it holds copies, nothing of `buffers`."""
    batch: PageBatch = pickle.loads(meta, buffers=buffers)
    return batch


# --------------------------------------------------------------------------- what is sent


@dataclass(frozen=True, slots=True)
class SharedBatch:
    """A page in a segment, as the worker is told of it."""

    segment: int
    meta: bytes
    spans: tuple[tuple[int, int], ...]  # each buffer's [start, end) in the segment


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """A segment's file, sent to a worker the first time it uses the segment."""

    segment: int
    size: int
    fd: Any  # multiprocessing's DupFd: `detach()` gives the worker its own descriptor


# --------------------------------------------------------------------------- the worker's side

_mapped: dict[int, mmap.mmap] = {}


def attach(file: SegmentFile) -> None:
    """Map a segment's file in this (worker) process, in place of an earlier one of its id."""
    fd = file.fd.detach()
    try:
        mapping = mmap.mmap(fd, file.size)
    finally:
        os.close(fd)
    old = _mapped.pop(file.segment, None)
    if old is not None:
        old.close()
    _mapped[file.segment] = mapping


def receive(shared: SharedBatch) -> PageBatch:
    """The batch a segment holds (copied out: the segment is the daemon's again on return)."""
    mapping = _mapped.get(shared.segment)
    if mapping is None:
        # Its hand-over failed (no memory or descriptors left in this worker): the window is
        # retried, and the segment handed over again.
        raise OutputError(f"shared page segment {shared.segment} is not mapped in this worker")
    with memoryview(mapping) as view:
        buffers = [view[start:end] for start, end in shared.spans]
        try:
            return join(shared.meta, buffers)
        finally:
            for buffer in buffers:  # a live export would keep the mapping from closing
                buffer.release()


# --------------------------------------------------------------------------- the daemon's side


class _Segment:
    __slots__ = ("attached_to", "busy", "fd", "id", "mapping", "size", "warm")

    def __init__(self, segment_id: int, size: int) -> None:
        self.id = segment_id
        self.fd = os.memfd_create(f"onc-pipeline-page-{segment_id}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.mapping = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise
        self.size = size
        self.busy = False
        self.warm = False  # pages were written since the last trim
        self.attached_to: object = None  # the executor whose process maps it

    def close(self) -> None:
        self.mapping.close()
        os.close(self.fd)


@dataclass(slots=True)
class Lease:
    """A page written into a segment: what to send, and the segment to give back after."""

    shared: SharedBatch
    attach: SegmentFile | None  # to send first: the worker process has not mapped it yet
    segment: _Segment


class PageHandoff:
    """The daemon's segments for one worker. Used from the event loop's thread only."""

    _ids = count(1)

    def __init__(self, min_bytes: int = SHARED_MIN_BYTES, idle_s: float = IDLE_TRIM_S) -> None:
        self._min_bytes = min_bytes
        self._idle_s = idle_s
        self._segments: list[_Segment] = []
        self._trim: asyncio.TimerHandle | None = None
        self._usable = hasattr(os, "memfd_create")

    @property
    def segments(self) -> int:
        """Segments held (tests, diagnostics)."""
        return len(self._segments)

    def resident(self) -> int:
        """Bytes of segments written since their last trim (tests, diagnostics)."""
        return sum(segment.size for segment in self._segments if segment.warm)

    def lease(self, batch: PageBatch, worker: object) -> Lease | None:
        """Write `batch` into a free segment for the process behind `worker` (an executor: a
        new one maps its segments afresh); None when the batch goes through the pipe."""
        if not self._usable or not isinstance(batch, ScalarBatch):
            return None
        if batch_bytes(batch) < self._min_bytes:
            return None
        meta, buffers = split(batch)
        need = sum(buffer.nbytes for buffer in buffers)
        try:
            segment = self._free_segment(need)
        except OSError:
            self._usable = False  # no memfd here (a seccomp filter, an old kernel): the pipe
            return None
        spans: list[tuple[int, int]] = []
        start = 0
        for buffer in buffers:
            end = start + buffer.nbytes
            segment.mapping[start:end] = buffer
            spans.append((start, end))
            start = end
        segment.busy = segment.warm = True
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        attach = None
        if segment.attached_to is not worker:
            attach = SegmentFile(segment.id, segment.size, DupFd(segment.fd))
        return Lease(SharedBatch(segment.id, meta, tuple(spans)), attach, segment)

    def _free_segment(self, need: int) -> _Segment:
        fits = [s for s in self._segments if not s.busy and s.size >= need]
        if fits:
            return min(fits, key=lambda segment: segment.size)
        size = -(-need // _SEGMENT_STEP) * _SEGMENT_STEP
        segment = _Segment(next(self._ids), size)
        self._segments.append(segment)
        return segment

    def done_callback(
        self, lease: Lease, worker: object, loop: asyncio.AbstractEventLoop
    ) -> Callable[[Future[Any] | None], None]:
        """What to call once the worker behind `worker` ran the call carrying `lease`, or with
        None when it never will: on `loop`'s thread, the segment is free again, and known to
        be mapped there when the call succeeded (the map came first)."""

        def done(future: Future[Any] | None) -> None:
            mapped = future is not None and not future.cancelled() and not future.exception()

            def release() -> None:
                if mapped:
                    lease.segment.attached_to = worker
                self.release(lease)

            if future is None:
                release()  # called on the loop's thread: the call was never submitted
                return
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to reuse
                loop.call_soon_threadsafe(release)

        return done

    def release(self, lease: Lease) -> None:
        """The worker is done with the lease's page (or will never read it)."""
        lease.segment.busy = False
        if not self._segments:
            return  # closed
        if self._trim is None and not any(segment.busy for segment in self._segments):
            self._trim = asyncio.get_running_loop().call_later(self._idle_s, self.trim)

    def trim(self) -> None:
        """Give back the memory of every free segment (their files and mappings stay)."""
        self._trim = None
        for segment in self._segments:
            if segment.warm and not segment.busy:
                with contextlib.suppress(OSError):
                    segment.mapping.madvise(_MADV_REMOVE)
                    segment.warm = False

    def close(self) -> None:
        """Unmap and close every segment (after the worker stopped)."""
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        for segment in self._segments:
            segment.close()
        self._segments.clear()
