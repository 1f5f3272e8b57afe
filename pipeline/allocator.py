"""glibc malloc tuning for harvesting processes: big blocks from mmap, back to the system when
freed; one arena for every thread; the free pages inside the heap handed back every few
seconds.

A backfill reads replies of tens of MB, decodes them and drops them, page after page. glibc
serves a block above its mmap threshold with its own mapping, unmapped on `free`; but the
threshold is dynamic: each such block freed raises it to that block's size (up to 32 MB on
64-bit; glibc's `mallopt(3)`, "M_MMAP_THRESHOLD"). After the first page, reply bodies and
the copies made of them are then carved from the heap, which only shrinks from its top: a
block still in use above freed ones keeps them all, and the process holds several pages'
worth of memory it no longer uses. Setting the threshold turns the dynamic adjustment off
(the same page), so every block above it keeps coming from mmap and is returned at once.

Blocks under the threshold (a sensor's column of a page, a block of rendered text) come from
the heap, and glibc gives back only the free memory at its top: a freed block below one still
in use stays resident until it is reused. After a backfill the daemon and each window worker
kept half their heap free (daemon 55 - 77 MB of heap with 22 - 38 MB free; a worker 44 - 49
MB with 18 - 34 MB free, glibc's `mallinfo2`), resident for as long as the service ran.
`trim_periodically` calls `malloc_trim(0)` every `TRIM_INTERVAL_S`, which hands back every
whole free page wherever it lies, the top's included (glibc >= 2.8; `malloc_trim(3)`).
Trimming after every build or page instead lowered a backfill's peak by at most 5 - 12 MB and
cost 3 - 11 % CPU in 2-day runs (pages given back and faulted in again by the next build;
docs/dev/memory.md, BENCHMARKS.md).

Only glibc has `mallopt` and `malloc_trim`; anywhere else (musl, macOS, Windows) this is a
no-op, and it never raises: a process must start whatever its C library.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from typing import Any

#: Blocks at least this big are mapped on their own and unmapped when freed: reply bodies (tens
#: of MB), the copies decoding and pickling make of them. Smaller ones (a day's column of one
#: sensor, under 1 MB; socket reads of at most 256 KiB) stay on the heap, where reusing them
#: costs no page faults: every fresh mapping is faulted in page by page, which is what this
#: tuning costs in CPU.
MMAP_THRESHOLD = 4 << 20

#: Free memory at the top of the heap kept for the next blocks, in window workers. glibc ties
#: it to the mmap threshold (twice it, when the threshold moves), but fixing the threshold
#: turns that off too and freezes it where it stands: 128 KiB (glibc's default) in a fresh
#: worker. The heap was then given back after each build's columns and text blocks (a few
#: MB) were freed, and faulted in again by the next build. Twice the fixed threshold restores
#: glibc's own ratio. The daemon's is left frozen (under 1 MiB after its imports): with an
#: arena per thread, as measured then (session 14), each would keep up to this, for no gain
#: in JSON Lines (docs/dev/memory.md has the measurements; not measured with one arena). The
#: periodic trim below hands this back too, every 10 s: a build in progress keeps it between
#: two trims, a worker with no build gives it up.
WORKER_TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

#: Seconds between two `malloc_trim(0)` calls in a long-running process: soon enough that the
#: memory a finished backfill freed goes back within seconds, rare enough to cost little
#: during one. A trim that hands back 33 MiB of a 67 MiB heap takes about 1.5 ms, one with
#: nothing to hand back 0.1 ms; faulting 33 MiB in again takes about 20 ms (docs/dev/memory.md
#: measured 15.5 ms for 27 MB): at most 0.2 % of a core, estimated, not measured in a backfill.
TRIM_INTERVAL_S = 10.0

#: malloc arenas in a harvesting process. glibc gives each thread that allocates an arena of
#: its own, up to 8 per core (`mallopt(3)`, "M_ARENA_MAX"), and each arena keeps its own free
#: memory and fragments on its own. Here the GIL serializes nearly every thread's allocating
#: (the threads that send calls to the window workers, `asyncio.to_thread` calls,
#: Arrow's writer), so the extra arenas only held memory: one arena lowered a 2-day backfill's
#: tree peak by 7 - 16 MB at the same wall time (docs/dev/memory.md, session 18). A limit the
#: operator sets (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`) stands.
ARENAS = 1

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def is_glibc() -> bool:
    """Whether this process runs on glibc (`confstr` names it; musl and macOS do not)."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return False
    return bool(version) and str(version).startswith("glibc")


def _libc_function(name: str, argtypes: tuple[str, ...], restype: str) -> Any | None:
    """glibc's function `name`, typed by ctypes type names (`"c_int"`); None when the C
    library is not glibc or lacks it. ctypes is imported only on glibc."""
    if not is_glibc():
        return None
    try:
        import ctypes  # only here: processes on other C libraries never load it

        function = getattr(ctypes.CDLL(None), name)
        function.argtypes = tuple(getattr(ctypes, type_name) for type_name in argtypes)
        function.restype = getattr(ctypes, restype)
        return function
    except (ImportError, OSError, AttributeError, TypeError, ValueError):
        return None


def _mallopt() -> Any | None:
    return _libc_function("mallopt", ("c_int", "c_int"), "c_int")


def limit_arenas(arenas: int = ARENAS, environ: Mapping[str, str] = os.environ) -> bool:
    """Have the process's threads share `arenas` malloc arenas; True when set. Call it before
    threads start: a thread that has an arena keeps it, and a forked child reuses its
    parent's. False when the C library is not glibc or refuses, or when the operator set a
    limit (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`)."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if environ.get("MALLOC_ARENA_MAX") or "glibc.malloc.arena_max=" in tunables:
        return False
    mallopt = _mallopt()
    try:
        return mallopt is not None and bool(mallopt(_M_ARENA_MAX, arenas))
    except (OSError, TypeError, ValueError):
        return False


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int | None = None) -> bool:
    """Fix glibc's mmap threshold at `mmap_threshold` bytes, and its trim threshold at
    `trim_threshold` (None: left where it stands, which fixing the mmap threshold freezes:
    glibc's 128 KiB, or twice the largest mapped block freed so far, or the environment's
    `MALLOC_TRIM_THRESHOLD_`); True when they were set. Threads share `ARENAS` arenas
    (`limit_arenas`): call it before the process starts threads.

    False when the C library is not glibc or refuses a threshold (then nothing changed, or
    only the mmap threshold and the arenas).
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    try:
        if not mallopt(_M_MMAP_THRESHOLD, mmap_threshold):
            return False
        limit_arenas()
        return trim_threshold is None or bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, TypeError, ValueError):
        return False


def release_free_memory() -> bool:
    """`malloc_trim(0)`: hand every whole free page of glibc's heaps back to the system, the
    heap's top included (whatever the trim threshold keeps there); True when glibc gave some
    back, False when it had none or the C library is not glibc."""
    trim = _libc_function("malloc_trim", ("c_size_t",), "c_int")
    try:
        return trim is not None and bool(trim(0))
    except (OSError, TypeError, ValueError):
        return False


# The process whose trimming thread runs: a forked child has none (threads do not survive
# fork), so it may start its own.
_trimming_pid: int | None = None
_trimming_lock = threading.Lock()


def trim_periodically(
    interval_s: float = TRIM_INTERVAL_S, stop: threading.Event | None = None
) -> threading.Thread | None:
    """Start a thread that calls `release_free_memory` every `interval_s` until `stop` is set
    (a daemon thread: it never holds up the process's exit), one per process, and return it;
    None when one already runs in this process, the C library is not glibc, or no thread can
    be started (a task limit reached: the process runs on without it)."""
    global _trimming_pid
    if not is_glibc():
        return None
    event = stop if stop is not None else threading.Event()
    pid = os.getpid()

    def loop() -> None:
        global _trimming_pid
        try:
            while not event.wait(interval_s):
                with contextlib.suppress(Exception):  # a failed trim must not end the thread
                    release_free_memory()
        finally:
            with _trimming_lock:
                if _trimming_pid == pid:
                    _trimming_pid = None

    with _trimming_lock:
        if _trimming_pid == pid:
            return None
        thread = threading.Thread(target=loop, name="heap-trim", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread"
            return None
        _trimming_pid = pid
    return thread
