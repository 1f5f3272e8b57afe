"""Pages handed to a window worker through shared memory instead of the worker's pipe.

A parsed page of an 8-sensor CTD is about 10 MB of arrays and time text. Sent as a call
argument, `ProcessPoolExecutor` pickles it into one bytes object (a copy of every array), writes
it through a 64 KiB pipe in some 150 system calls, and the worker reads it back into a buffer
and unpickles it (two more copies): 27 - 58 CPU ms a page between the two processes in a
micro-benchmark, in the very seconds where the server and the daemon's parsing need the two
cores (BENCHMARKS.md, session 28).

Here the daemon writes a large page's arrays and time axes (encoded, then copied) into a
segment of shared memory: a `memfd`, which nothing names, so it is gone once no process holds
it, even after a SIGKILL. The worker is sent a few hundred bytes: which segment, where each
buffer lies, and the rest of the batch pickled in-band (protocol 5's out-of-band buffers). It
copies the buffers out into its own arrays before its call returns, and the segment is free
again once the call is done: 5 - 6 CPU ms a page in all.

A segment serves one call at a time. The daemon keeps `MAX_SEGMENTS` per worker, reused page
after page: one the worker reads while the next page waits in the other. A page finding both
busy waits for one (it would wait in the worker's queue anyway): pages queued for a busy worker
are not copied ahead of time. Once the worker has read a page, its segment gives its memory
back (`MADV_REMOVE` frees a shared segment's pages in every process that maps it) and the next
page faults fresh pages in: about 8 CPU ms more a page than keeping them, for 10 - 18 MB less
at a backfill's peak and a growth at 2x data of 1.05 - 1.10 instead of 1.11 - 1.17
(BENCHMARKS.md, session 28). A worker process maps a segment before its first page there by
opening the daemon's descriptor under /proc (same user: no descriptor passing, nothing to leak
if the call never runs). A segment whose call ended with the pool broken is retired, never
written again: its worker may not be dead yet. Small pages (near-real-time polls), raw-data
pages, and hosts where memfd or /proc is refused keep the pipe. The systemd unit's filters
allow both (`memfd_create` is in `@ipc`, part of `@system-service`: `systemd-analyze
syscall-filter`; `ProtectProc=invisible` hides only other users' processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import mmap
import os
import pickle
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import count
from typing import Any

from pipeline.exceptions import OutputError
from pipeline.records import PackedColumn, PageBatch, ScalarBatch, SensorInfo, batch_bytes

#: Pages smaller than this go through the pipe: a few pipe writes cost less than a segment.
SHARED_MIN_BYTES = 256 * 1024
#: Segments per worker: the page the worker reads and the next one.
MAX_SEGMENTS = 2
# Segments grow in steps of this (a page a little larger than the last still fits).
_SEGMENT_STEP = 1 << 20
# Frees a shared mapping's pages (Linux; elsewhere a segment keeps them).
_MADV_REMOVE: int | None = getattr(mmap, "MADV_REMOVE", None)
_TEXT_ERRORS = "surrogatepass"
# memfd_create or /proc refused for good (no such call, a seccomp filter, a policy), not for
# the moment (descriptors or memory short).
_REFUSED = frozenset({errno.ENOSYS, errno.EPERM, errno.EACCES, errno.ENOENT, errno.EOPNOTSUPP})


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
    return ScalarBatch([str(axis, "utf-8", _TEXT_ERRORS) for axis in axes], packed, qaqc_flag_info)


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
            # A time axis is ASCII from ONC; UTF-8 keeps any other text whole (lone surrogates
            # too, which a JSON parser may take from `\ud800`).
            axes = [pickle.PickleBuffer(axis.encode("utf-8", _TEXT_ERRORS)) for axis in obj.axes]
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
    """Where a worker process opens a segment to map it: the daemon's descriptor."""

    segment: int
    size: int
    pid: int
    fd: int


class SegmentMapError(OutputError):
    """A worker process could not map a segment: the page goes through the pipe, and every
    page after it when `refused` (for good: not a passing shortage)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        self.refused = refused
        super().__init__(message)


# --------------------------------------------------------------------------- the worker's side

_mapped: dict[int, mmap.mmap] = {}


def attach(file: SegmentFile) -> None:
    """Map a segment in this (worker) process, in place of an earlier one of its id."""
    try:
        fd = os.open(f"/proc/{file.pid}/fd/{file.fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            mapping = mmap.mmap(fd, file.size)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SegmentMapError(
            f"window worker could not map shared page segment {file.segment}: {exc}",
            refused=exc.errno in _REFUSED,
        ) from None
    old = _mapped.pop(file.segment, None)
    if old is not None:
        old.close()
    _mapped[file.segment] = mapping


def receive(shared: SharedBatch) -> PageBatch:
    """The batch a segment holds (copied out: the segment is the daemon's again on return)."""
    mapping = _mapped.get(shared.segment)
    if mapping is None:  # never from the daemon: it maps a segment before sending a page
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
    __slots__ = ("attached_to", "busy", "fd", "id", "mapping", "size")

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
        self.busy = False  # holds a page not read yet (its pages are given back once read)
        self.attached_to: object = None  # the executor whose process is known to map it

    def close(self) -> None:
        self.mapping.close()
        os.close(self.fd)


@dataclass(slots=True)
class Lease:
    """A page written into a segment: what to send, and the segment to give back after."""

    shared: SharedBatch
    attach: SegmentFile | None  # to have mapped first: not known to be mapped there
    segment: _Segment


class PageHandoff:
    """The daemon's segments for one worker. Used on the event loop's thread; the callback
    `done_callback` makes may run on the executor's thread and hands its work to the loop."""

    _ids = count(1)

    def __init__(
        self,
        min_bytes: int = SHARED_MIN_BYTES,
        max_segments: int = MAX_SEGMENTS,
    ) -> None:
        self._min_bytes = min_bytes
        self._max_segments = max_segments
        self._segments: list[_Segment] = []
        self._freed = asyncio.Event()  # set when a segment is given back
        self._pid = os.getpid()  # whose /proc/<pid>/fd the workers open
        #: Why pages go through the pipe for good (None while segments are used).
        self.refused: str | None = None if hasattr(os, "memfd_create") else "no memfd_create"

    @property
    def segments(self) -> int:
        """Segments held (tests, diagnostics)."""
        return len(self._segments)

    def resident(self) -> int:
        """Bytes of segments holding pages (tests, diagnostics)."""
        return sum(segment.size for segment in self._segments if segment.busy)

    async def lease(self, batch: PageBatch, worker: object) -> Lease | None:
        """Write `batch` into a free segment for the process behind `worker` (an executor: a
        new one maps its segments afresh), waiting for one while all are busy; None when the
        batch goes through the pipe."""
        if self.refused is not None or not isinstance(batch, ScalarBatch):
            return None
        if batch_bytes(batch) < self._min_bytes:
            return None
        while len(self._segments) >= self._max_segments and all(
            segment.busy for segment in self._segments
        ):
            self._freed.clear()
            await self._freed.wait()
        if self.refused is not None:  # refused while this page waited
            return None
        meta, buffers = split(batch)
        segment = self._free_segment(sum(buffer.nbytes for buffer in buffers))
        if segment is None:
            return None
        spans: list[tuple[int, int]] = []
        start = 0
        for buffer in buffers:
            end = start + buffer.nbytes
            segment.mapping[start:end] = buffer
            spans.append((start, end))
            start = end
        segment.busy = True
        attach = None
        if segment.attached_to is not worker:
            attach = SegmentFile(segment.id, segment.size, self._pid, segment.fd)
        return Lease(SharedBatch(segment.id, meta, tuple(spans)), attach, segment)

    def _free_segment(self, need: int) -> _Segment | None:
        free = [segment for segment in self._segments if not segment.busy]
        fits = [segment for segment in free if segment.size >= need]
        if fits:
            return min(fits, key=lambda segment: segment.size)
        if len(self._segments) >= self._max_segments:
            if not free:  # never after `lease` waited for a free one
                return None
            self._retire(max(free, key=lambda segment: segment.size))  # too small: grown
        size = -(-need // _SEGMENT_STEP) * _SEGMENT_STEP
        try:
            segment = _Segment(next(self._ids), size)
        except OSError as exc:
            if exc.errno in _REFUSED:
                self.refused = f"memfd refused: {exc}"
            return None  # short of descriptors or memory: this page takes the pipe
        self._segments.append(segment)
        return segment

    def mapped(self, lease: Lease, worker: object) -> None:
        """The process behind `worker` mapped the lease's segment."""
        lease.segment.attached_to = worker

    def unmappable(self, error: SegmentMapError) -> None:
        """A worker could not map a segment; refused for good, no page uses segments again."""
        if error.refused:
            self.refused = str(error)

    def done_callback(
        self, lease: Lease, loop: asyncio.AbstractEventLoop
    ) -> Callable[[Future[Any] | None], None]:
        """What to call once the worker ran the call carrying `lease`, or with None when it
        never will (on `loop`'s thread then). Any thread: the release runs on the loop's."""

        def done(future: Future[Any] | None) -> None:
            if future is None:
                self.release(lease)
                return
            broken = not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to reuse
                loop.call_soon_threadsafe(self.release, lease, broken)

        return done

    def release(self, lease: Lease, retire: bool = False) -> None:
        """The worker is done with the lease's page, or will never read it: the segment gives
        its pages back. `retire`: the pool broke, and its process may still read the segment:
        it is never written again."""
        segment = lease.segment
        held, segment.busy = segment.busy, False
        self._freed.set()
        if segment not in self._segments:
            return  # closed meanwhile
        if retire:
            self._retire(segment)
            return
        if held and _MADV_REMOVE is not None:
            with contextlib.suppress(OSError):  # not here (a kernel without it): kept
                segment.mapping.madvise(_MADV_REMOVE)

    def _retire(self, segment: _Segment) -> None:
        self._segments.remove(segment)
        segment.close()  # the daemon's descriptor and mapping; a worker's stays until it ends

    def close(self) -> None:
        """Unmap and close every segment (after the worker stopped); a page still waiting for
        one takes the pipe (and finds the worker stopped)."""
        self.refused = "closed"
        for segment in self._segments:
            segment.close()
        self._segments.clear()
