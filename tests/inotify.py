"""Files created in a folder, as the kernel reports them (inotify through ctypes).

Polling a folder misses a file that lives for a few milliseconds, e.g. a partition's
`.tmp` written with O_DIRECT on a loaded machine. The kernel queues every creation, so a
watch set up before the work starts sees each one, however short-lived.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import time
from pathlib import Path

IN_CREATE = 0x00000100
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


class CreationWatch:
    """Watch `folders` (which must exist) for new entries; a context manager."""

    def __init__(self, folders: list[Path]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        for folder in folders:
            if libc.inotify_add_watch(self._fd, os.fsencode(folder), IN_CREATE) < 0:
                os.close(self._fd)
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")

    def __enter__(self) -> CreationWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

    def wait_for(self, suffix: str, timeout: float) -> str | None:
        """Block until an entry whose name ends with `suffix` is created; its name, or None
        after `timeout` seconds. Blocking: run it in a thread next to an event loop."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self._fd], [], [], left)[0]:
                continue
            data = os.read(self._fd, 64 * 1024)
            offset = 0
            while offset < len(data):
                _wd, _mask, _cookie, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = data[offset : offset + size].rstrip(b"\0").decode()
                offset += size
                if name.endswith(suffix):
                    return name
        return None
