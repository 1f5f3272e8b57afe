"""Imported first by the window workers' fork server (`pool.preload_modules`), before any
library that starts a thread (pyarrow's allocator starts one when it is imported): limits
malloc's arenas (`pipeline/allocator.py`), which the workers forked from it inherit, so
every thread of a worker shares one. It never raises: the fork server lets only ImportError
pass, and would die of anything else (`limit_arenas` returns False instead)."""

from pipeline.allocator import limit_arenas

limit_arenas()
