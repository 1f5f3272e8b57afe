"""Start-up cleaning of temporaries: a crash's leftovers go, another instance's publish stays."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from pipeline.durable import WRITE_SLICE
from pipeline.outputs import publish
from pipeline.outputs.publish import (
    STALE_TEMPORARY_S,
    HashingSink,
    publish_atomically,
    remove_stale_temporaries,
)
from tests.unit.test_durable import Recorder


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

    assert remove_stale_temporaries(tmp_path, now=now) == [crashed]
    assert not crashed.exists()
    assert in_progress.read_bytes() == b"another instance's publish"
    assert final.read_bytes() == b"published"
    # With no age limit (a single instance that knows it is alone) every temporary goes.
    assert remove_stale_temporaries(tmp_path, older_than=-1, now=now) == [in_progress]


def test_hashing_sink_writes_in_slices_and_counts_bytes() -> None:
    raw = Recorder()
    sink = HashingSink(raw)  # type: ignore[arg-type]
    big = bytes(range(256)) * 1000  # 256,000 bytes
    words = memoryview(bytes(range(8)) * 10).cast("Q")  # 10 items, 80 bytes
    assert sink.write(big) == len(big)
    assert sink.write(words) == 80
    assert bytes(raw.data) == big + bytes(range(8)) * 10
    assert sink.size == len(big) + 80
    assert sink.hexdigest() == hashlib.sha256(bytes(raw.data)).hexdigest()
    assert max(raw.sizes) == WRITE_SLICE


def test_a_published_file_reaches_the_disk_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big writes and small ones (Arrow's) reach the file as writes of at most one slice,
    whatever buffer Python would pick for the file system (its block size)."""
    sizes: list[int] = []

    class RecordingFile(io.FileIO):
        def write(self, data: object) -> int:
            sizes.append(memoryview(data).nbytes)  # type: ignore[arg-type]
            return super().write(data)  # type: ignore[arg-type]

    def recording_open(path: Path, mode: str, buffering: int = -1) -> io.BufferedWriter:
        assert mode == "wb"
        # -1 would be the file system's block size: 1 MiB and more on ZFS or NFS.
        size = buffering if buffering > 0 else 1 << 20
        return io.BufferedWriter(RecordingFile(path, mode), buffer_size=size)

    monkeypatch.setattr(publish, "open", recording_open, raising=False)
    big = os.urandom(1_000_000)

    def write(sink: HashingSink) -> None:
        sink.write(big[:700_000])
        for start in range(700_000, len(big), 1_000):  # many small writes
            sink.write(big[start : start + 1_000])

    published = publish_atomically(tmp_path / "file.bin", write)
    assert (tmp_path / "file.bin").read_bytes() == big
    assert published.size == len(big)
    assert published.sha256 == hashlib.sha256(big).hexdigest()
    assert sum(sizes) == len(big)
    assert max(sizes) <= WRITE_SLICE
