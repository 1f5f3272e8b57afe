"""Unmapping the library pages of imports: which mappings, and that it frees them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipeline import library_pages
from pipeline.library_pages import releasable_mappings

# Entries of /proc/<pid>/smaps as Linux writes them (an anonymous mapping's header ends in a
# space), trimmed to the lines the parser reads and one more.
_SMAPS = textwrap.dedent(
    """\
    7f0000000000-7f0000100000 r--p 00000000 08:01 100 /usr/lib/libarrow.so.2600
    Rss:                 512 kB
    Anonymous:             0 kB
    Swap:                  0 kB
    Private_Hugetlb:       0 kB
    7f0000100000-7f0000900000 r-xp 00100000 08:01 100 /usr/lib/libarrow.so.2600
    Rss:               24684 kB
    Anonymous:             0 kB
    Swap:                  0 kB
    Private_Hugetlb:       0 kB
    7f0000900000-7f0000a00000 r--p 00900000 08:01 100 /usr/lib/libarrow.so.2600
    Anonymous:           924 kB
    Swap:                  0 kB
    Private_Hugetlb:       0 kB
    7f0000a00000-7f0000a10000 rw-p 00a00000 08:01 100 /usr/lib/libarrow.so.2600
    Anonymous:             0 kB
    Swap:                  0 kB
    Private_Hugetlb:       0 kB
    7f0000b00000-7f0000b10000 r-xp 00000000 08:01 200 /opt/my libs/lib x.so (deleted)
    Anonymous:             0 kB
    Swap:                  0 kB
    Private_Hugetlb:       0 kB
    7f0000c00000-7f0000c10000 r--p 00000000 08:01 300 /usr/lib/libswapped.so
    Anonymous:             0 kB
    Swap:                924 kB
    Private_Hugetlb:       0 kB
    7f0000d00000-7f0000e00000 r--p 00000000 00:10 400 /hugepages/table
    Anonymous:             0 kB
    Swap:                  0 kB
    Private_Hugetlb:    2048 kB
    7f0000e00000-7f0000e10000 r--p 00000000 08:01 500 /usr/lib/libold.so
    Anonymous:             0 kB
    7f0000f00000-7f0000f10000 r--p 00000000 00:00 0 \n\
    Anonymous:             0 kB
    Swap:                  0 kB
    Private_Hugetlb:       0 kB
    5600000000-5600100000 rw-p 00000000 00:00 0                          [heap]
    Anonymous:          1024 kB
    7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                      [vdso]
    Anonymous:             0 kB
    Swap:                  0 kB
    Private_Hugetlb:       0 kB
    """
)


def test_only_read_only_file_mappings_without_pages_of_their_own_are_released() -> None:
    assert releasable_mappings(_SMAPS) == [
        (0x7F0000000000, 0x7F0000100000),  # headers, symbol and relocation tables
        (0x7F0000100000, 0x7F0000900000),  # code
        # not the relocated read-only data (copied pages), nor the writable data
        (0x7F0000B00000, 0x7F0000B10000),  # a path with spaces, even deleted
        # not copied pages swapped out, nor huge pages of its own, nor a mapping whose
        # entry does not say (an older kernel); not an anonymous mapping, the heap or vdso
    ]


def test_elsewhere_than_linux_nothing_is_released(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(library_pages.sys, "platform", "darwin")
    assert library_pages.release_library_pages() == 0


def test_a_failure_is_never_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fork server dies of anything but an ImportError raised by a preloaded module.
    def broken(smaps: str) -> list[tuple[int, int]]:
        raise IndexError("an smaps line we could not read")

    monkeypatch.setattr(library_pages, "releasable_mappings", broken)
    assert library_pages.release_library_pages() == 0


_PROBE = """
import pipeline.outputs.csv
import pyarrow as pa, pyarrow.compute as pc
from pipeline.library_pages import release_library_pages
from tests.procfs import rss_file_mb

before = rss_file_mb()
advised = release_library_pages()
after = rss_file_mb()
# The released code runs again: mapped back from the page cache.
total = pc.sum(pa.array([1.5, 2.5, None])).as_py()
print(before, after, advised, total)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's madvise and /proc")
def test_the_library_pages_of_imports_are_unmapped_and_still_work() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout.split()
    before, after, advised, total = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    # The CSV writer's imports map 40 - 70 MB of their libraries' pages on the machines
    # measured (pyarrow's for the most part); a few MB stay: what ran since.
    assert before >= 20, before
    assert after <= before / 2, (before, after)
    assert advised > 0
    assert total == 4.0
