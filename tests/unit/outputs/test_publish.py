"""Start-up cleaning of temporaries: a crash's leftovers go, another instance's publish stays."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.durable import NewFile
from pipeline.outputs.publish import (
    STALE_TEMPORARY_S,
    HashingSink,
    StaleSweep,
    publish_atomically,
    remove_stale_temporaries,
)
from tests.diskwrites import Write, check_writes


def test_only_temporaries_untouched_for_an_hour_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "ds" / "2026"
    folder.mkdir(parents=True)
    now = time.time()
    crashed = folder / "ds_20261120.nc.tmp"
    crashed.write_bytes(b"left by a crash")
    os.utime(crashed, (now - STALE_TEMPORARY_S - 5, now - STALE_TEMPORARY_S - 5))
    # Instances that scale out share the output root: this one is being written right now.
    in_progress = folder / "ds_20261121.nc.tmp"
    in_progress.write_bytes(b"another instance's publish")
    final = folder / "ds_20261119.nc"
    final.write_bytes(b"published")
    os.utime(final, (now - 10 * STALE_TEMPORARY_S, now - 10 * STALE_TEMPORARY_S))

    assert remove_stale_temporaries(tmp_path, now=now).removed == [crashed]
    assert not crashed.exists()
    assert in_progress.read_bytes() == b"another instance's publish"
    assert final.read_bytes() == b"published"
    # With no age limit (a single instance that knows it is alone) every temporary goes.
    assert remove_stale_temporaries(tmp_path, older_than=-1, now=now).removed == [in_progress]


def test_the_sweep_stays_inside_the_root_and_stops_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    (root / "ds").mkdir(parents=True)
    outside.mkdir()
    for folder in (root / "ds", outside):
        (folder / "x.nc.tmp").write_bytes(b"old")
    (root / "ds" / "kept.nc.tmp").write_bytes(b"old")
    (root / "link").symlink_to(outside, target_is_directory=True)  # never followed
    (root / "ds" / "file-link.nc.tmp").symlink_to(outside / "x.nc.tmp")  # not a file of ours
    stopped = threading.Event()
    stopped.set()
    assert remove_stale_temporaries(root, older_than=-1, stop=stopped).removed == []

    class AfterOneFolder(threading.Event):
        """Set once the walk has looked at it once: a stop between two folders."""

        def is_set(self) -> bool:
            looked.append(1)
            return len(looked) > 1

    looked: list[int] = []
    (root / "a").mkdir()
    (root / "a" / "first.nc.tmp").write_bytes(b"old")  # the root's only subfolders: a, ds
    sweep = remove_stale_temporaries(root, older_than=-1, stop=AfterOneFolder())
    assert sweep.removed == []  # the root (no temporaries) was walked, then it stopped
    assert len(looked) == 2
    (root / "a" / "first.nc.tmp").unlink()

    real_unlink = Path.unlink

    def refusing(path: Path, missing_ok: bool = False) -> None:
        if path.name == "kept.nc.tmp":
            raise PermissionError(13, "Permission denied", str(path))
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing)
    sweep = remove_stale_temporaries(root, older_than=-1)
    assert sweep.removed == [root / "ds" / "x.nc.tmp"]
    assert sweep.kept == [(root / "ds" / "kept.nc.tmp", "Permission denied")]
    assert (outside / "x.nc.tmp").read_bytes() == b"old"
    assert (root / "ds" / "file-link.nc.tmp").is_symlink()


def test_hashing_sink_hashes_and_counts_bytes(tmp_path: Path) -> None:
    with NewFile(tmp_path / "file") as raw:
        sink = HashingSink(raw)
        big = bytes(range(256)) * 1000  # 256,000 bytes
        words = memoryview(bytes(range(8)) * 10).cast("Q")  # 10 items, 80 bytes
        assert sink.write(big) == len(big)
        assert sink.write(words) == 80
        raw.finish()
    written = (tmp_path / "file").read_bytes()
    assert written == big + bytes(range(8)) * 10
    assert sink.size == len(written)
    assert sink.hexdigest() == hashlib.sha256(written).hexdigest()


def test_a_published_file_reaches_the_disk_around_the_page_cache(
    tmp_path: Path,
    writes: list[Write],
    kernel_direct: bool,
) -> None:
    """Big writes and small ones (Arrow's) reach the file as whole aligned blocks, around
    the page cache where the file system allows it, and the tail through it in slices."""
    direct = kernel_direct
    writes.clear()
    big = os.urandom(3_000_000)

    def write(sink: HashingSink) -> None:
        sink.write(big[:2_700_000])
        for start in range(2_700_000, len(big), 1_000):  # many small writes
            sink.write(big[start : start + 1_000])

    published = publish_atomically(tmp_path / "file.bin", write)
    assert (tmp_path / "file.bin").read_bytes() == big
    assert published.size == len(big)
    assert published.sha256 == hashlib.sha256(big).hexdigest()
    check_writes(writes, len(big), direct=direct)


def test_a_folder_the_sweep_cannot_read_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root the permission bits stop nothing: the folder's listing fails here instead.
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.nc.tmp").write_bytes(b"old")
    real = os.scandir

    def refusing(path: str | os.PathLike[str] = ".") -> Any:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", refusing)
    sweep = remove_stale_temporaries(tmp_path, older_than=-1)
    assert sweep.removed == []
    assert sweep.kept == [(tmp_path / "locked", "Permission denied")]


def test_a_missing_root_is_nothing_to_sweep(tmp_path: Path) -> None:
    assert remove_stale_temporaries(tmp_path / "not-yet") == StaleSweep()


def test_an_unchanged_file_grown_while_it_is_hashed_keeps_no_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer appends between the hash and the look at the file: what is reported is
    # what was hashed, and no digest is kept for the longer file.
    from pipeline.outputs import growth

    path = tmp_path / "window.jsonl"
    path.write_bytes(b"a\n")
    real = growth.file_sha256

    def hashed_then_grown(target: Path) -> Any:
        answer = real(target)
        with open(target, "ab") as handle:
            handle.write(b"b\n")
        return answer

    monkeypatch.setattr(growth, "file_sha256", hashed_then_grown)
    digests = growth.Digests()
    published = growth.unchanged(path, digests)
    assert (published.size, published.sha256) == (2, hashlib.sha256(b"a\n").hexdigest())
    assert digests.peek(path) is None
