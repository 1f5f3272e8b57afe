"""Environment defaults for the native libraries the pipeline loads, set before either loads.

- `OPENBLAS_NUM_THREADS=1`: the pipeline does no linear algebra, but numpy's OpenBLAS starts
  a thread per core when numpy is imported, and those threads spin before they sleep: CPU the
  daemon, the fork server and each window worker paid for nothing.
- `ARROW_DEFAULT_MEMORY_POOL=system`: Arrow (the CSV and Parquet writers) allocates with
  malloc instead of the mimalloc the pyarrow wheels default to. In a window worker mimalloc
  kept what Arrow's own C++ allocations freed (Parquet's encoders, compute kernels' scratch,
  which no `memory_pool` argument reaches) beside glibc's heap; on malloc they follow the
  process's tuning (`pipeline/allocator.py`): big blocks unmapped when freed, the heap's free
  pages handed back every 10 s. Tree peak in a backfill: parquet 276 -> 252 MB, csv 293 ->
  270 MB (docs/dev/memory.md, "Arrow on malloc").

Each library reads its variable once, when it is loaded (`import pyarrow` asks for the
default pool at import), so `pipeline/__init__.py` applies the defaults: it runs before any
module of the package, in every process that imports it (the daemon; the fork server, whose
first preload is the daemon's `__main__`; the workers forked from it). A value the
environment gives stands; an empty one counts as unset, as both libraries read it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEFAULTS = {
    "OPENBLAS_NUM_THREADS": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set every variable of `DEFAULTS` that `environ` leaves unset or empty."""
    for name, value in DEFAULTS.items():
        if not environ.get(name):
            environ[name] = value
