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
    assert allocator.trim_periodically(0.01) is None


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

    def rss_anon_mb():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024

    tune_allocator()
    # 70 MB of blocks under the mmap threshold, every other one freed: 35 MB of holes below
    # blocks in use, which glibc's own trimming (the heap's top only) never gives back.
    blocks = [libc.malloc(700_000) for _ in range(100)]
    for block in blocks:
        libc.memset(block, 1, 700_000)
    for block in blocks[::2]:
        libc.free(block)
    before = rss_anon_mb()
    released = sys.argv[1] == "released" and release_free_memory()
    print(int(released), round(before - rss_anon_mb()))
    """
)


@glibc_only
def test_on_glibc_releasing_hands_back_the_free_pages_inside_the_heap() -> None:
    released, dropped = _probe(_RELEASE_PROBE, "released").split()
    assert released == "1"
    assert int(dropped) >= 30  # MB of the 35 MB of holes
    released, dropped = _probe(_RELEASE_PROBE, "kept").split()
    assert released == "0"
    assert int(dropped) < 5  # without it, the holes stay resident


def test_trimming_runs_every_interval_until_stopped_one_thread_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    monkeypatch.setattr(allocator, "_trimming_pid", None)
    trims = threading.Semaphore(0)

    def counted() -> bool:
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
        for _ in range(3):
            assert trims.acquire(timeout=5)
        # A forked child (another pid) has no thread of its parent's: it starts its own.
        monkeypatch.setattr(os, "getpid", lambda: -1)
        child = allocator.trim_periodically(0.01, stop)
        assert child is not None
        threads.append(child)
    finally:
        stop.set()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
