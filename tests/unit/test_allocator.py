"""glibc malloc tuning: applied on glibc (a freed big block no longer moves the threshold),
a no-op that never raises anywhere else."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from pipeline import allocator

glibc_only = pytest.mark.skipif(not allocator.is_glibc(), reason="needs glibc")


def _unknown_name(name: str) -> str:
    raise ValueError(f"unrecognized configuration name {name!r}")


@pytest.mark.parametrize(
    "confstr",
    [
        pytest.param(lambda name: None, id="musl: no GNU libc version"),
        pytest.param(_unknown_name, id="macOS: unknown name"),
        pytest.param(lambda name: "musl 1.2", id="another libc"),
    ],
)
def test_not_glibc_is_a_no_op_that_never_loads_libc(
    monkeypatch: pytest.MonkeyPatch, confstr: object
) -> None:
    monkeypatch.setattr(os, "confstr", confstr)

    def no_libc(*args: object, **kwargs: object) -> None:
        raise AssertionError("libc loaded on a system that is not glibc")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert not allocator.is_glibc()
    assert allocator.tune_allocator() is False
    assert allocator.release_free_memory() is False
    stopped = threading.Event()
    stopped.set()
    assert allocator.trim_periodically(0.01, stopped) is None


def test_a_libc_without_mallopt_does_not_fail_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")

    class NoMallopt:
        def __init__(self, name: object) -> None:
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoMallopt)
    assert allocator.tune_allocator() is False


# Run in a fresh interpreter: mallopt changes the whole process, and the check needs an
# allocator no earlier test has shaped. mallinfo2 (glibc >= 2.33) reports `hblkhd`, the bytes
# in blocks served by their own mmap.
_PROBE_HEAD = """
    import ctypes, sys
    from pipeline.allocator import WORKER_TRIM_THRESHOLD, tune_allocator

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
"""
_PROBE = textwrap.dedent(
    _PROBE_HEAD
    + """
    tuned = sys.argv[1] == "tuned" and tune_allocator()
    # A freed 16 MB block raises glibc's dynamic threshold to 16 MB ...
    libc.free(libc.malloc(16 << 20))
    # ... so without tuning a 6 MB block then comes from the heap, not from its own mmap.
    block = libc.malloc(6 << 20)
    print(int(tuned), libc.mallinfo2().hblkhd >= (6 << 20))
    libc.free(block)
    """
)


def _probe(script: str, mode: str) -> str:
    """The first line `script` prints in a fresh interpreter, without MALLOC_* tuning."""
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("mallinfo2 needs glibc 2.33")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.split("\n")[0]


@glibc_only
@pytest.mark.parametrize(("mode", "expected"), [("tuned", "1 True"), ("default", "0 False")])
def test_on_glibc_big_blocks_stay_mapped_after_a_bigger_one_was_freed(
    mode: str, expected: str
) -> None:
    assert _probe(_PROBE, mode) == expected


_ARENA_PROBE = textwrap.dedent(
    _PROBE_HEAD
    + """
    import threading

    tuned = sys.argv[1] == "tuned" and tune_allocator()
    # Four threads allocating at once: without a limit, glibc gives each an arena of its own.
    start = threading.Barrier(4)
    held = []

    def allocate():
        start.wait()
        held.append(libc.malloc(100_000))

    threads = [threading.Thread(target=allocate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(int(tuned))
    libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
    """
)


def arenas_in(stats: str) -> int:
    """How many arenas glibc's `malloc_stats` report lists."""
    return sum(1 for line in stats.splitlines() if line.startswith("Arena "))


@glibc_only
@pytest.mark.parametrize(("mode", "tuned"), [("tuned", "1"), ("default", "0")])
def test_on_glibc_threads_share_one_arena(mode: str, tuned: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    done = subprocess.run(
        [sys.executable, "-c", _ARENA_PROBE, mode], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == tuned
    arenas = arenas_in(done.stderr)
    assert arenas == 1 if mode == "tuned" else arenas > 1, done.stderr


@pytest.mark.parametrize(
    ("environ", "limited"),
    [
        ({}, True),
        ({"MALLOC_ARENA_MAX": ""}, True),  # empty: unset, as native.py reads it
        ({"MALLOC_ARENA_MAX": "4"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}, True),
    ],
)
def test_an_operators_arena_limit_is_left_to_stand(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], limited: bool
) -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    monkeypatch.setattr(allocator, "_libc_function", lambda *args: mallopt)
    assert allocator.limit_arenas(environ=environ) is limited
    assert calls == ([(allocator._M_ARENA_MAX, allocator.ARENAS)] if limited else [])


_TRIM_PROBE = textwrap.dedent(
    _PROBE_HEAD
    + """
    trim = WORKER_TRIM_THRESHOLD if sys.argv[1] == "trimmed" else None
    tuned = tune_allocator(trim_threshold=trim)
    before = libc.mallinfo2().keepcost
    blocks = [libc.malloc(2 << 20) for _ in range(3)]
    for block in reversed(blocks):
        libc.free(block)
    print(int(tuned), libc.mallinfo2().keepcost - before >= (5 << 20))
    """
)


@glibc_only
@pytest.mark.parametrize(("mode", "expected"), [("trimmed", "1 True"), ("default", "1 False")])
def test_on_glibc_a_trim_threshold_keeps_freed_heap_for_the_next_blocks(
    mode: str, expected: str
) -> None:
    assert _probe(_TRIM_PROBE, mode) == expected


_RELEASE_PROBE = textwrap.dedent(
    _PROBE_HEAD
    + """
    from pipeline.allocator import release_free_memory

    libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)

    def rss_anon_mib():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024

    tune_allocator()
    # 100 blocks of 700 KB under the mmap threshold, every other one freed: 33 MiB of holes
    # below blocks in use, which glibc's own trimming (the heap's top only) never gives back.
    blocks = [libc.malloc(700_000) for _ in range(100)]
    for block in blocks:
        libc.memset(block, 1, 700_000)
    filled = rss_anon_mib()
    for block in blocks[::2]:
        libc.free(block)
    freed = rss_anon_mib()
    released = release_free_memory()
    print(int(released), round(filled - freed), round(freed - rss_anon_mib()))
    """
)


@glibc_only
def test_on_glibc_releasing_hands_back_the_free_pages_inside_the_heap() -> None:
    released, by_free, by_release = _probe(_RELEASE_PROBE, "").split()
    assert int(by_free) < 5  # freeing alone leaves the holes resident
    assert released == "1"
    assert int(by_release) >= 30  # MiB of the 33 MiB of holes


def test_trimming_runs_every_interval_until_stopped_one_thread_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    monkeypatch.setattr(allocator, "_trimming_pid", None)
    callers: list[int] = []
    trims = threading.Semaphore(0)

    def counted() -> bool:
        # Only this test's threads count: another test may have left a real one running.
        callers.append(threading.get_ident())
        trims.release()
        return True

    monkeypatch.setattr(allocator, "release_free_memory", counted)
    stop = threading.Event()
    threads = []
    try:
        thread = allocator.trim_periodically(0.01, stop)
        assert thread is not None
        assert thread.daemon
        threads.append(thread)
        assert allocator.trim_periodically(0.01, stop) is None  # one per process
        while callers.count(thread.ident or 0) < 3:
            assert trims.acquire(timeout=5)
        # As in a forked child, whose parent's thread did not come along: it starts its own.
        monkeypatch.setattr(allocator, "_trimming_pid", os.getpid() + 1)
        child = allocator.trim_periodically(0.01, stop)
        assert child is not None
        threads.append(child)
    finally:
        stop.set()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
    # A thread that was stopped no longer counts as running: a new one may start.
    assert allocator._trimming_pid is None
    again = allocator.trim_periodically(0.01, stop)
    assert again is not None
    again.join(5)


def test_a_failed_trim_does_not_end_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    monkeypatch.setattr(allocator, "_trimming_pid", None)
    calls = threading.Semaphore(0)

    def failing() -> bool:
        calls.release()
        raise MemoryError("trim failed")

    monkeypatch.setattr(allocator, "release_free_memory", failing)
    stop = threading.Event()
    thread = allocator.trim_periodically(0.01, stop)
    assert thread is not None
    try:
        for _ in range(3):
            assert calls.acquire(timeout=5)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)


def test_a_process_that_cannot_start_a_thread_runs_on_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    monkeypatch.setattr(allocator, "_trimming_pid", None)

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    assert allocator.trim_periodically(0.01, threading.Event()) is None
    assert allocator._trimming_pid is None  # a later call may try again


def test_other_c_libraries_never_load_ctypes() -> None:
    # A fresh interpreter: this one loaded ctypes long ago.
    script = (
        "import os, sys\n"
        "os.confstr = lambda name: None  # musl: no GNU libc version\n"
        "from pipeline import allocator\n"
        "import threading\n"
        "stopped = threading.Event(); stopped.set()\n"
        "print(allocator.tune_allocator(), allocator.release_free_memory(),\n"
        "      allocator.trim_periodically(0.01, stopped), 'ctypes' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False", "None", "False"]
