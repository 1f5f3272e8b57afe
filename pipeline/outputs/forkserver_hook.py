"""Imported last by the window workers' fork server (`pool.preload_modules`), and by nothing
else: importing it unmaps the library pages the fork server's imports touched
(`pipeline/library_pages.py`) and makes the process end at once, with status 0, when it
exits (`exit_at_once`). It never raises: the fork server lets only ImportError pass, and
would die of anything else."""

import atexit
import contextlib
import os
import sys

from pipeline.library_pages import release_library_pages


def exit_at_once(server: int) -> None:
    """At the fork server's exit (the daemon closed its end): end the process without taking
    its heap apart (numpy, netCDF4 or pyarrow loaded), which kept the daemon's stderr, which
    the server holds, open after the daemon itself had ended (`pipeline.cli.console_main`).
    Registered last, it runs first and pre-empts the other atexit handlers on purpose: none
    has work in the server (multiprocessing's finalizers, logging's flush, library cleanups),
    and nobody reads the server's exit status. Only in the server itself: the workers it
    forks inherit the handler, and exit their own way (`os._exit` after their task, never
    through atexit)."""
    if os.getpid() != server:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # AttributeError: None
            stream.flush()
    os._exit(0)


release_library_pages()
atexit.register(exit_at_once, os.getpid())
