"""What /proc says of a process (Linux), for tests that run probes in other processes
(`benchmarks.harness.parent_pid` gives a process's parent)."""

from __future__ import annotations


def rss_file_mb(pid: int | str = "self") -> int:
    """The process's resident file-backed pages (`RssFile`), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) // 1024
    raise LookupError(f"no RssFile for process {pid}")
