"""What /proc says of a process (Linux), for tests that run probes in other processes."""

from __future__ import annotations


def rss_file_mb(pid: int | str = "self") -> int:
    """The process's resident file-backed pages (`RssFile`), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) // 1024
    raise LookupError(f"no RssFile for process {pid}")


def parent_pid(pid: int) -> int:
    """The parent of process `pid` (its name may hold spaces and parentheses)."""
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])
