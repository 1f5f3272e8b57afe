"""Arrow on the C library's malloc, for every process that writes outputs.

The pyarrow wheels make mimalloc Arrow's default memory pool. In a window worker, which
renders and writes a partition's blocks one after another while other builds hold their
columns, mimalloc kept what Arrow freed for its own next allocations, beside glibc's heap.
On the system pool Arrow's buffers come from glibc like everything else in the process:
blocks of 4 MiB or more mapped and unmapped when freed, the heap's free pages handed back
every 10 s (`pipeline/allocator.py`). BENCHMARKS.md (session 16) has the measurements.

Arrow reads `ARROW_DEFAULT_MEMORY_POOL` once, when something first asks for the default
pool; the variable covers the allocations Arrow's C++ makes on its own (Parquet's encoders,
compute kernels' scratch), which no `memory_pool` argument reaches. So it must be set before
pyarrow is imported: `pipeline/outputs/__init__.py` calls `prefer_malloc`, which runs before
any writer module's imports (a package's `__init__` runs before its modules). The fork
server and the workers forked from it inherit the variable or set it themselves.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def prefer_malloc() -> None:
    """Name malloc ("system") as Arrow's default pool, unless the environment already names
    one (an operator's choice stands). Where pyarrow was imported earlier (a test, a program
    embedding the pipeline), the variable may come too late for Arrow's C++: then at least
    pyarrow's own default, which every call without a `memory_pool` argument uses, is set.
    pyarrow is never imported here: a process that writes only JSON Lines never loads it."""
    os.environ.setdefault(VARIABLE, "system")
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None and os.environ[VARIABLE] == "system":
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
