"""Bytes written by a contender's process tree: /proc/<pid>/io parsing, the arithmetic, and
counting every process once (orphaned workers included). No timing is asserted."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from benchmarks.harness import (
    REPO,
    IoCounts,
    dir_bytes,
    io_metrics,
    parse_proc_io,
    proc_io,
    state_bytes,
)

PROC_IO = """rchar: 6976
wchar: 13000000
syscr: 282
syscw: 2
read_bytes: 0
write_bytes: 13012992
cancelled_write_bytes: 4096
"""


def test_parse_proc_io_takes_the_write_counters() -> None:
    assert parse_proc_io(PROC_IO) == IoCounts(13_000_000, 13_012_992, 4096)


def test_parse_proc_io_reads_missing_counters_as_zero() -> None:
    # A kernel without block-layer accounting reports only the character counters.
    assert parse_proc_io("rchar: 1\nwchar: 7\n") == IoCounts(wchar=7)
    assert parse_proc_io("") == IoCounts()


def test_io_counts_add_and_subtract_field_by_field() -> None:
    a, b = IoCounts(10, 8, 1), IoCounts(3, 2, 1)
    assert a + b == IoCounts(13, 10, 2)
    assert a - b == IoCounts(7, 6, 0)


def test_proc_io_sees_this_process_write(tmp_path: Path) -> None:
    before = proc_io(os.getpid())
    with (tmp_path / "f").open("wb") as fh:
        fh.write(b"x" * 100_000)
    assert (proc_io(os.getpid()) - before).wchar >= 100_000


def test_io_metrics_prefers_write_bytes_and_divides_by_the_published_bytes() -> None:
    metrics = io_metrics(IoCounts(wchar=9_000_000, write_bytes=3_000_000), 2_000_000, 500_000)
    assert metrics["written_mb"] == 3.0
    assert metrics["wchar_mb"] == 9.0
    assert metrics["published_mb"] == 2.0
    assert metrics["state_mb"] == 0.5
    assert metrics["write_amplification"] == 1.5


def test_io_metrics_falls_back_to_wchar_when_write_bytes_is_not_reported() -> None:
    metrics = io_metrics(IoCounts(wchar=4_000_000), 1_000_000)
    assert metrics["written_mb"] == 4.0
    assert metrics["write_amplification"] == 4.0


def test_io_metrics_has_no_ratio_without_published_bytes() -> None:
    assert math.isnan(io_metrics(IoCounts(wchar=1), 0)["write_amplification"])


def test_dir_bytes_sums_files_below_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.nc").write_bytes(b"1" * 10)
    (tmp_path / "a" / "b" / "y.nc").write_bytes(b"2" * 5)
    (tmp_path / "a" / "b" / "skip.me").write_bytes(b"3" * 100)
    assert dir_bytes(tmp_path / "a", exclude=("skip.me",)) == 15
    assert dir_bytes(tmp_path / "missing") == 0


def test_state_bytes_counts_the_wal_and_shm_files(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"d" * 4096)
    (tmp_path / "state.db-wal").write_bytes(b"w" * 100)
    assert state_bytes(db) == 4196
    assert state_bytes(tmp_path / "none.db") == 0


# A contender whose tree writes 2,000,000 bytes itself, 500,000 in a child it reaps, and
# 1,000,000 in a grandchild it leaves behind (orphaned while still writing, like a fork
# server's workers when the daemon exits). Run in a subprocess: the harness becomes a child
# subreaper, which the test process must not.
CONTENDER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    if os.fork() == 0:
        time.sleep(0.5)  # outlives its parent: re-parented to the subreaper
        with open(sys.argv[1] + "/orphan", "wb") as fh:
            fh.write(b"o" * 1_000_000)
        os._exit(0)
    with open(sys.argv[1] + "/own", "wb") as fh:
        fh.write(b"s" * 2_000_000)
    code = "import sys; open(sys.argv[1] + '/child', 'wb').write(b'c' * 500_000)"
    subprocess.run([sys.executable, "-c", code, sys.argv[1]], check=True)
    time.sleep(0.2)  # the sampler sees the grandchild
    """
)
HARNESS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from benchmarks.harness import become_subreaper, run_measured
    assert become_subreaper()
    argv = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
    result = run_measured(argv, log_dir=Path(sys.argv[2]))
    print(json.dumps({"wchar": result.io.wchar, "ok": result.ok}))
    """
)


def test_run_measured_counts_every_process_of_the_tree_once(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, CONTENDER, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert report["ok"]
    files = 2_000_000 + 500_000 + 1_000_000
    assert (tmp_path / "orphan").stat().st_size == 1_000_000
    # Interpreter start-up writes a few bytes; a tree counted twice would add >= 500,000.
    assert files <= report["wchar"] < files + 100_000
