"""Writes into the page cache go out in slices of `WRITE_SLICE`, however big the data."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from pipeline import durable
from pipeline.durable import WRITE_SLICE, write_all, write_sliced

# Not a multiple of the slice, and no period of it: a misplaced slice changes the bytes.
DATA = bytes(range(251)) * 1000 + b"tail"


class Recorder(io.RawIOBase):
    """A writable stream that keeps what it is given and the size of each write."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        view = memoryview(data)  # type: ignore[arg-type]
        self.sizes.append(view.nbytes)
        self.data += view
        return view.nbytes


def expected_sizes(total: int) -> list[int]:
    whole, rest = divmod(total, WRITE_SLICE)
    return [WRITE_SLICE] * whole + ([rest] if rest else [])


@pytest.mark.parametrize("data", [DATA, bytearray(DATA), memoryview(DATA), b""])
def test_write_sliced_writes_everything_in_slices(data: bytes) -> None:
    sink = Recorder()
    write_sliced(sink, data)
    assert bytes(sink.data) == bytes(data)
    assert sink.sizes == expected_sizes(len(data))


def test_write_sliced_slices_bytes_not_items() -> None:
    # 8-byte items, 160,000 bytes: sliced by item it would write 8 times too much per call.
    data = (bytes(range(251)) * 700)[:160_000]
    sink = Recorder()
    write_sliced(sink, memoryview(data).cast("Q"))
    assert bytes(sink.data) == data
    assert sink.sizes == expected_sizes(len(data))


class ShortWriter(Recorder):
    """A raw stream that takes at most 10,000 bytes a call, as a raw file may."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[int] = []

    def write(self, data: object) -> int:
        self.offered.append(len(memoryview(data)))  # type: ignore[arg-type]
        return super().write(memoryview(data)[:10_000])  # type: ignore[arg-type]


def test_write_sliced_follows_a_short_write_with_the_rest() -> None:
    sink = ShortWriter()
    write_sliced(sink, DATA)
    assert bytes(sink.data) == DATA
    assert max(sink.sizes) == 10_000
    assert max(sink.offered) == WRITE_SLICE  # each slice offered whole first, then its rest
    assert sink.offered[:2] == [WRITE_SLICE, WRITE_SLICE - 10_000]


def test_write_sliced_refuses_a_stream_that_takes_nothing() -> None:
    class NonBlocking(Recorder):
        def write(self, data: object) -> None:  # type: ignore[override]
            return None

    with pytest.raises(BlockingIOError):
        write_sliced(NonBlocking(), DATA)


def test_write_all_writes_everything_to_a_file_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    sizes: list[int] = []

    def short_writes(fd: int, data: memoryview) -> int:
        # At most 40,000 bytes a call, as os.write may do: the rest must follow.
        sizes.append(len(data))
        return real(fd, data[:40_000])

    monkeypatch.setattr(durable.os, "write", short_writes)
    path = tmp_path / "file"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, DATA)
    finally:
        os.close(fd)
    assert path.read_bytes() == DATA
    assert max(sizes) == WRITE_SLICE
    # A slice of 65,536 bytes takes two calls (40,000 + 25,536), never a third.
    assert sizes[:2] == [WRITE_SLICE, WRITE_SLICE - 40_000]


def test_write_all_raises_the_disk_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable.os, "write", full)
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)) as info:
            write_all(fd, DATA)
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC
