"""Unmapping the pages a process's imports touched in shared libraries (Linux).

Loading a library touches far more of it than the code that later runs: the dynamic linker
reads its symbol and relocation tables, and static initializers run all over its code (Arrow
registers every compute kernel it has). pyarrow's libraries are loaded whole: `import
pyarrow` maps libarrow, libparquet, Arrow's dataset, Acero and Substrait libraries even for
CSV. After the CSV writer's imports, 43 - 73 MB of library pages were resident in a process
(`RssFile`; how much depends on what the page cache held), 4 - 11 MB after
`release_library_pages`. The window workers' fork server calls it once its imports are done
(`pipeline/outputs/forkserver_hook.py`): it then only waits to fork workers.

Its read-only file-backed mappings that hold no private page are unmapped with
`madvise(MADV_DONTNEED)`. The pages are not freed: they stay in the page cache (reclaimable,
and still charged to the service's cgroup until the kernel reclaims them), no longer counted
in this process's resident set. Touched again, a page is mapped back from the cache (a minor
fault) or, once reclaimed, read from the file. For a private file mapping, what
MADV_DONTNEED discards is refilled from the file (Kerrisk, The Linux Programming Interface,
section 50.2), so only a mapping with no page of its own may be released: one whose pages
were all copied on write, in memory or swapped out, would lose them (RELRO, the relocated
read-only data, is such a mapping: releasing it crashes the process).
"""

from __future__ import annotations

import mmap
import re
import sys

_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+ +(\S.*)?$")
# The fields of a mapping's smaps entry that count pages of its own (copies on write, in
# memory, swapped out, or huge pages): a mapping is released only when each is 0 kB.
_OWN_PAGES = ("Anonymous:", "Swap:", "Private_Hugetlb:")


def releasable_mappings(smaps: str) -> list[tuple[int, int]]:
    """The (start, end) of each read-only file-backed mapping in `smaps` (the text of
    /proc/<pid>/smaps) that holds no page of its own: each of `_OWN_PAGES` present and 0."""
    found: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    own: set[str] = set()

    def close() -> None:
        if current is not None and own == set(_OWN_PAGES):
            found.append(current)

    for line in smaps.splitlines():
        header = _HEADER.match(line)
        if header is not None:
            close()
            start, end, perms, path = header.groups()
            # Read-only (no 'w'), backed by a file on disk (a path, not [heap], [stack],
            # [vdso] or an anonymous mapping).
            readonly_file = perms[1] == "-" and path is not None and path.startswith("/")
            current = (int(start, 16), int(end, 16)) if readonly_file else None
            own = set()
        elif current is not None and line.startswith(_OWN_PAGES):
            field, _, rest = line.partition(":")
            if rest.split()[:1] == ["0"]:
                own.add(field + ":")
            else:
                current = None  # pages of its own (or a line we cannot read): kept
    close()
    return found


def release_library_pages() -> int:
    """Unmap the clean read-only file pages of this process (see the module's docstring);
    the bytes of address space advised. 0 off Linux or when anything fails: the fork server
    calls it, and must start whatever the platform (an exception would stop every window
    worker from starting)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        import ctypes  # only here: Linux-only

        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as handle:
            mappings = releasable_mappings(handle.read())
        madvise = ctypes.CDLL(None).madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        madvise.restype = ctypes.c_int
        advised = 0
        for start, end in mappings:
            if madvise(start, end - start, mmap.MADV_DONTNEED) == 0:
                advised += end - start
        return advised
    except Exception:  # a memory saving never stops the fork server
        return 0
