"""The fork server's release of library pages: which mappings, and that it frees them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipeline.outputs import forkserver
from pipeline.outputs.forkserver import releasable_mappings

# Entries of /proc/<pid>/smaps as Linux writes them, trimmed to the lines the parser reads.
_SMAPS = textwrap.dedent(
    """\
    7f0000000000-7f0000100000 r--p 00000000 08:01 100 /usr/lib/libarrow.so.2600
    Rss:                 512 kB
    Anonymous:             0 kB
    7f0000100000-7f0000900000 r-xp 00100000 08:01 100 /usr/lib/libarrow.so.2600
    Rss:               24684 kB
    Anonymous:             0 kB
    7f0000900000-7f0000a00000 r--p 00900000 08:01 100 /usr/lib/libarrow.so.2600
    Rss:                 924 kB
    Anonymous:           924 kB
    7f0000a00000-7f0000a10000 rw-p 00a00000 08:01 100 /usr/lib/libarrow.so.2600
    Rss:                  64 kB
    Anonymous:             0 kB
    7f0000b00000-7f0000b10000 r-xp 00000000 08:01 200 /opt/my libs/lib x.so (deleted)
    Anonymous:             0 kB
    7f0000c00000-7f0000c10000 r--p 00000000 00:00 0
    Anonymous:             0 kB
    5600000000-5600100000 rw-p 00000000 00:00 0                          [heap]
    Anonymous:          1024 kB
    7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                      [vdso]
    Anonymous:             0 kB
    """
)


def test_only_clean_read_only_file_mappings_are_released() -> None:
    assert releasable_mappings(_SMAPS) == [
        (0x7F0000000000, 0x7F0000100000),  # headers, symbol and relocation tables
        (0x7F0000100000, 0x7F0000900000),  # code
        # not the relocated read-only data (private pages), nor the writable data
        (0x7F0000B00000, 0x7F0000B10000),  # a path with spaces, even deleted
        # not an anonymous mapping, the heap or the vdso
    ]


def test_elsewhere_than_linux_nothing_is_released(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkserver.sys, "platform", "darwin")
    assert forkserver.release_library_pages() == 0


_PROBE = """
import pipeline.outputs.csv
import pyarrow as pa, pyarrow.compute as pc
from pipeline.outputs.forkserver import release_library_pages

def rss_file():
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) // 1024

before = rss_file()
advised = release_library_pages()
after = rss_file()
# The released code runs again: refilled from the page cache.
total = pc.sum(pa.array([1.5, 2.5, None])).as_py()
print(before, after, advised, total)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's madvise and /proc")
def test_the_library_pages_of_imports_are_freed_and_still_work() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    before, after, advised, total = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    # The CSV writer's imports map 40 - 70 MB of their libraries' pages (pyarrow's for the
    # most part); a few MB stay: what ran since.
    assert before >= 30, before
    assert after <= before / 2, (before, after)
    assert advised > 0
    assert total == 4.0
