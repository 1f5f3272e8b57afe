"""What the window workers' fork server does once its imports are done: give the pages they
touched in shared libraries back to the page cache (`forkserver_hook` is the call).

Loading a library touches far more of it than the code that later runs: the dynamic linker
reads its symbol and relocation tables, and static initializers run all over its code (Arrow
registers every compute kernel it has). pyarrow's libraries are loaded whole: `import
pyarrow` maps libarrow, libparquet, Arrow's dataset, Acero and Substrait libraries even for
CSV. After the CSV writer's imports, 73 MB of library pages were resident in the fork
server, which then only waits to fork workers; a worker rendering CSV blocks touches about
17 MB of them again (measured in one process: `RssFile` 73 -> 11 MB after this, 28 MB after
rendering).

`release_library_pages` unmaps the read-only file-backed pages of this process with
`madvise(MADV_DONTNEED)`. They stay in the page cache: a worker that needs one maps it again
with a minor fault, no disk read. Only mappings holding no private (copy-on-write) page are
released, so nothing but clean copies of the files is dropped: for such a private file
mapping the kernel refills a page from the file (`madvise(2)`, MADV_DONTNEED). Relocated
read-only data (RELRO) holds private pages and is kept.
"""

from __future__ import annotations

import mmap
import re
import sys

_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+ +(\S.*)?$")


def releasable_mappings(smaps: str) -> list[tuple[int, int]]:
    """The (start, end) of each read-only file-backed mapping in `smaps` (the text of
    /proc/<pid>/smaps) that holds no anonymous (copy-on-write) page."""
    found: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        header = _HEADER.match(line)
        if header is not None:
            start, end, perms, path = header.groups()
            # Read-only (no 'w'), private or shared, backed by a file on disk (a path, not
            # [heap], [stack], [vdso] or an anonymous mapping).
            readonly_file = perms[1] == "-" and path is not None and path.startswith("/")
            current = (int(start, 16), int(end, 16)) if readonly_file else None
        elif current is not None and line.startswith("Anonymous:"):
            if line.split()[1] == "0":
                found.append(current)
            current = None
    return found


def release_library_pages() -> int:
    """Unmap the clean read-only file pages of this process (see the module's docstring);
    the bytes of address space advised. 0 off Linux or when anything fails: a fork server
    must start whatever the platform."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        import ctypes  # only here: the hook is Linux-only

        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as handle:
            mappings = releasable_mappings(handle.read())
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        madvise.restype = ctypes.c_int
        advised = 0
        for start, end in mappings:
            if madvise(start, end - start, mmap.MADV_DONTNEED) == 0:
                advised += end - start
        return advised
    except (ImportError, OSError, AttributeError, TypeError, ValueError):
        return 0
