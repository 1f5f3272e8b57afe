"""Text files grown in place (CSV, JSON Lines, JSON Lines CSV, raw text): appends give the
file a rewrite gives, what falls back to a rewrite, and crashes and failures mid-append."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs import growth
from pipeline.outputs.csv import CsvWriter
from pipeline.outputs.growth import KeyedGrowth, StatCache, open_partition, place
from pipeline.outputs.jsonl import JsonlWriter
from pipeline.outputs.publish import sha256_of
from pipeline.outputs.rawtext import JsonlCsvWriter, RawTextWriter
from pipeline.records import PublishedFile, SensorInfo, Window
from tests.unit.outputs.helpers import COND, DAY, DEPTH, TEMP, ctd_meta, race, times

HOUR = timedelta(hours=1)
START = DAY + 5 * HOUR
WINDOW = Window(START, START + HOUR)
DATASET = "onc_bacax_ctd"


def _scalar(w: Any, first: int, count: int, revise: bool, sensors: tuple[SensorInfo, ...]) -> None:
    t = times(START + timedelta(seconds=first), count)
    for k, sensor in enumerate(sensors):
        values = [float(first + i) + 0.25 * k for i in range(count)]
        if revise:
            values[0] += 1000.0
        w.add_scalar(sensor, t, values, [1] * count)


def _raw(w: Any, first: int, count: int, revise: bool, sensors: tuple[SensorInfo, ...]) -> None:
    t = times(START + timedelta(seconds=first), count)
    # Tabs are escaped; other line breaks (form feed, U+2028) are kept as they are.
    readings = [f"$CTD,{first + i},tab\there\x0c\u2028" for i in range(count)]
    if revise:
        readings[0] += ",revised"
    w.add_raw(t, readings, [">"] * count)


@dataclass(frozen=True)
class Format:
    name: str
    writer: Callable[[], Any]
    add: Callable[[Any, int, int, bool, tuple[SensorInfo, ...]], None]


def _csv() -> CsvWriter:
    meta = ctd_meta()
    return CsvWriter({meta.dataset_id: meta}, partition="daily")


FORMATS = [
    Format("csv", _csv, _scalar),
    Format("jsonl", JsonlWriter, _scalar),
    Format("rawtext", RawTextWriter, _raw),
    Format("jsonlcsv", JsonlCsvWriter, _raw),
]


def poll(
    fmt: Format,
    root: Path,
    first: int,
    count: int,
    *,
    revise: bool = False,
    sensors: tuple[SensorInfo, ...] = (TEMP, COND),
    writer: Any = None,
) -> PublishedFile:
    """One near-real-time poll: readings at seconds [first, first + count) of the window."""
    w = (writer or fmt.writer()).open_window(root, DATASET, WINDOW)
    fmt.add(w, first, count, revise, sensors)
    published = w.publish()
    assert published is not None
    return published


def whole(fmt: Format, root: Path, count: int) -> bytes:
    """The file one window with every reading writes (a rewrite of the merged records)."""
    return poll(fmt, root, 0, count).path.read_bytes()


@pytest.fixture(params=FORMATS, ids=lambda f: f.name)
def fmt(request: pytest.FixtureRequest) -> Format:
    return request.param  # type: ignore[no-any-return]


# ------------------------------------------------------------------ appends


def test_polls_grow_the_file_in_place_into_the_file_a_rewrite_writes(
    fmt: Format, tmp_path: Path
) -> None:
    path = poll(fmt, tmp_path / "grown", 0, 10).path
    inode = path.stat().st_ino
    # Each poll re-fetches a little of what the file has (lookback), then new readings.
    for first, count in ((5, 10), (12, 8), (20, 10)):
        size = path.stat().st_size
        published = poll(fmt, tmp_path / "grown", first, count)
        assert path.stat().st_ino == inode  # appended, not renamed over
        assert not published.replaced
        assert published.size == path.stat().st_size > size
        assert published.sha256 == sha256_of(path)[1]
    assert path.read_bytes() == whole(fmt, tmp_path / "whole", 30)


def test_a_refetch_of_the_same_records_leaves_the_file_alone(fmt: Format, tmp_path: Path) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    before = path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino
    published = poll(fmt, tmp_path, 3, 7)
    assert not published.replaced
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_a_revision_rewrites_the_file_atomically(fmt: Format, tmp_path: Path) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    inode = path.stat().st_ino
    # ONC revised the reading at second 8; the poll also brings new ones.
    published = poll(fmt, tmp_path, 8, 10, revise=True)
    assert published.replaced
    assert path.stat().st_ino != inode
    rewritten = path.read_bytes()
    reference = tmp_path / "reference"
    poll(fmt, reference, 0, 8)
    assert rewritten == poll(fmt, reference, 8, 10, revise=True).path.read_bytes()


def test_a_reading_between_existing_ones_rewrites_the_file(fmt: Format, tmp_path: Path) -> None:
    poll(fmt, tmp_path, 0, 5)
    path = poll(fmt, tmp_path, 10, 5).path
    inode = path.stat().st_ino
    published = poll(fmt, tmp_path, 5, 5)  # the gap filled
    assert published.replaced
    assert path.stat().st_ino != inode
    assert path.read_bytes() == whole(fmt, tmp_path / "whole", 15)


def test_a_new_sensor_rewrites_the_csv_header(tmp_path: Path) -> None:
    fmt = FORMATS[0]
    path = poll(fmt, tmp_path, 0, 5).path
    inode = path.stat().st_ino
    published = poll(fmt, tmp_path, 5, 5, sensors=(TEMP, COND, DEPTH))
    assert published.replaced
    assert path.stat().st_ino != inode
    assert path.read_text().splitlines()[0].endswith(",depth_measured,depth_measured_qc")


def test_a_new_unit_rewrites_the_csv_header(tmp_path: Path) -> None:
    fmt = FORMATS[0]
    path = poll(fmt, tmp_path, 0, 5).path
    inode = path.stat().st_ino
    kelvin = SensorInfo(TEMP.code, TEMP.name, "K", TEMP.property_code)
    published = poll(fmt, tmp_path, 5, 5, sensors=(kelvin, COND))
    assert published.replaced
    assert path.stat().st_ino != inode
    assert path.read_text().splitlines()[1].split(",")[5] == "K"


def test_the_csv_writer_keeps_its_table_across_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fmt = FORMATS[0]
    writer = fmt.writer()
    poll(fmt, tmp_path, 0, 5, writer=writer)
    poll(fmt, tmp_path, 5, 5, writer=writer)
    from pipeline.outputs import csv as csv_module

    monkeypatch.setattr(csv_module, "_read_csv", lambda p: pytest.fail(f"read {p}"))
    path = poll(fmt, tmp_path, 10, 5, writer=writer).path
    monkeypatch.undo()
    assert path.read_bytes() == whole(fmt, tmp_path / "whole", 15)


@pytest.mark.parametrize("kept", [False, True], ids=["reread", "kept"])
def test_a_station_moved_rewrites_the_csv_rows_already_written(tmp_path: Path, kept: bool) -> None:
    # Discovery now lists the location 1 m deeper: every row of the file gets the new depth
    # (ERDDAP wants one position per TimeSeries station), not only the appended ones.
    before = ctd_meta()
    moved = dataclasses.replace(
        before,
        stations={
            k: dataclasses.replace(v, depth=v.depth + 1.0) for k, v in before.stations.items()
        },
    )
    metadata = {DATASET: before}
    writer = CsvWriter(metadata)
    path = poll(FORMATS[0], tmp_path / "grown", 0, 5, writer=writer).path
    metadata[DATASET] = moved
    published = poll(
        FORMATS[0], tmp_path / "grown", 3, 5, writer=writer if kept else CsvWriter(metadata)
    )
    assert published.replaced
    reference = poll(FORMATS[0], tmp_path / "whole", 0, 8, writer=CsvWriter({DATASET: moved}))
    assert path.read_bytes() == reference.path.read_bytes()
    # Nothing new at all: the file is still rewritten with the new position.
    metadata[DATASET] = before
    assert poll(FORMATS[0], tmp_path / "grown", 0, 8, writer=CsvWriter(metadata)).replaced
    assert path.read_bytes() == whole(FORMATS[0], tmp_path / "back", 8)


def test_a_csv_file_restored_with_the_same_size_and_mtime_is_read_again(tmp_path: Path) -> None:
    fmt = FORMATS[0]

    def restore(path: Path) -> None:
        # Restored from a copy (cp -p, rsync -a) with another value, same size and mtime.
        stat = path.stat()
        restored = path.with_name("restore.tmp")
        restored.write_bytes(path.read_bytes().replace(b",1.0,1,", b",7.0,1,"))
        os.utime(restored, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(restored, path)

    writer = fmt.writer()
    path = poll(fmt, tmp_path / "kept", 0, 5, writer=writer).path
    restore(path)
    poll(fmt, tmp_path / "kept", 3, 5, revise=True, writer=writer)  # a rewrite
    reference = poll(fmt, tmp_path / "ref", 0, 5).path
    restore(reference)
    poll(fmt, tmp_path / "ref", 3, 5, revise=True)
    assert b",7.0,1," in path.read_bytes()
    assert path.read_bytes() == reference.read_bytes()


def test_a_writer_kept_across_polls_hashes_only_the_new_lines(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = fmt.writer()
    poll(fmt, tmp_path, 0, 10, writer=writer)
    poll(fmt, tmp_path, 10, 5, writer=writer)  # the first append hashes the file once
    hashed: list[Path] = []
    real = growth.file_sha256
    monkeypatch.setattr(growth, "file_sha256", lambda p: hashed.append(p) or real(p))
    published = poll(fmt, tmp_path, 15, 5, writer=writer)
    assert hashed == []
    assert published.sha256 == sha256_of(published.path)[1]
    # Another writer (another process) grows the file: the kept digest is stale, not used.
    poll(fmt, tmp_path, 20, 5)
    hashed.clear()
    published = poll(fmt, tmp_path, 25, 5, writer=writer)
    assert hashed == [published.path]
    assert published.sha256 == sha256_of(published.path)[1]
    assert published.path.read_bytes() == whole(fmt, tmp_path / "whole", 30)


def test_a_writer_kept_across_a_rewrite_hashes_nothing_again(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.outputs import table

    writer = fmt.writer()
    poll(fmt, tmp_path, 0, 10, writer=writer)  # the first write
    hashed: list[Path] = []
    real_hash, real_sha = growth.file_sha256, table.sha256_of
    monkeypatch.setattr(growth, "file_sha256", lambda p: hashed.append(p) or real_hash(p))
    monkeypatch.setattr(table, "sha256_of", lambda p: hashed.append(p) or real_sha(p))
    rewritten = poll(fmt, tmp_path, 8, 10, revise=True, writer=writer)
    assert rewritten.replaced
    unchanged = poll(fmt, tmp_path, 0, 8, writer=writer)  # nothing new
    assert (unchanged.size, unchanged.sha256) == (rewritten.size, rewritten.sha256)
    appended = poll(fmt, tmp_path, 18, 5, writer=writer)
    assert not appended.replaced
    assert hashed == []
    assert appended.sha256 == sha256_of(appended.path)[1]


# ------------------------------------------------------------------ crashes and failures


def test_a_retry_that_fetches_appended_readings_again_appends_only_newer_ones(
    fmt: Format, tmp_path: Path
) -> None:
    poll(fmt, tmp_path, 0, 10)
    # What a commit that failed after the append leaves (the engine's side of it:
    # tests/integration/engine/test_append_commit.py): the retry fetches the same readings
    # again (and newer ones) and finds them in the file.
    poll(fmt, tmp_path, 10, 10)
    path = poll(fmt, tmp_path, 10, 15).path
    assert path.read_bytes() == whole(fmt, tmp_path / "whole", 25)


@pytest.mark.parametrize("torn", [1, 7, -1])
def test_a_partial_line_a_crash_left_is_cut_at_the_next_open(
    fmt: Format, tmp_path: Path, torn: int
) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    committed = path.read_bytes()
    # A crash mid-append: part of the next poll's lines reached the disk.
    scratch = tmp_path / "scratch"
    poll(fmt, scratch, 0, 10)
    appended = poll(fmt, scratch, 10, 5).path.read_bytes()[len(committed) :]
    cut = len(appended) - 1 if torn == -1 else torn
    with open(path, "ab") as handle:
        handle.write(appended[:cut])
    assert poll(fmt, tmp_path, 10, 10).path.read_bytes() == whole(fmt, tmp_path / "whole", 20)


def test_a_failed_write_leaves_the_file_as_it_was(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    before = path.read_bytes()
    real = os.pwrite

    def half_then_full_disk(fd: int, data: Any, offset: int) -> int:
        if len(data) > 1:
            return real(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(growth.os, "pwrite", half_then_full_disk)
    w = fmt.writer().open_window(tmp_path, DATASET, WINDOW)
    fmt.add(w, 10, 10, False, (TEMP, COND))
    with pytest.raises(OutputError, match="No space left"):
        w.publish()
    assert path.read_bytes() == before


def test_a_file_changed_while_its_window_was_built_is_refused(fmt: Format, tmp_path: Path) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    w = fmt.writer().open_window(tmp_path, DATASET, WINDOW)
    fmt.add(w, 10, 5, False, (TEMP, COND))
    with open(path, "ab") as handle:
        handle.write(b"someone else's line\n")
    with pytest.raises(OutputError, match="changed while"):
        w.publish()


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_a_failed_flush_to_disk_cuts_the_append_back(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    before = path.read_bytes()

    def fail(fd: int) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(growth.os, "fdatasync", fail)
    w = fmt.writer().open_window(tmp_path, DATASET, WINDOW)
    fmt.add(w, 10, 10, False, (TEMP, COND))
    with pytest.raises(OutputError, match=f"cannot append to .*{os.strerror(error)}") as caught:
        w.publish()
    assert caught.value.path == str(path)
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert poll(fmt, tmp_path, 10, 10).path.read_bytes() == whole(fmt, tmp_path / "whole", 20)


def test_a_file_cut_to_nothing_is_written_whole_again(fmt: Format, tmp_path: Path) -> None:
    # A crash tore the only line (JSON Lines CSV: its header): the cut leaves 0 bytes.
    path = poll(fmt, tmp_path, 0, 10).path
    path.write_bytes(path.read_bytes()[:5])
    published = poll(fmt, tmp_path, 0, 10)
    assert path.read_bytes() == whole(fmt, tmp_path / "whole", 10)
    assert published.size == path.stat().st_size


def test_a_repair_that_fails_names_the_file_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"a\nb")

    def read_only(fd: int, length: int) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(growth.os, "ftruncate", read_only)
    with pytest.raises(OutputError, match=r"partial last line.*f\.txt.*retried") as caught:
        growth.open_partition(path)
    assert caught.value.path == str(path)


def test_a_read_only_file_is_still_read_and_rewritten_but_not_appended_to(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    real = os.open

    def read_only(name: Any, flags: int, *args: Any) -> int:
        # As an unprivileged user sees a chmod 444 file (tests may run as root).
        if Path(name) == path and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return real(name, flags, *args)

    monkeypatch.setattr(growth.os, "open", read_only)
    assert poll(fmt, tmp_path, 0, 10).size == path.stat().st_size  # unchanged
    w = fmt.writer().open_window(tmp_path, DATASET, WINDOW)
    fmt.add(w, 10, 5, False, (TEMP, COND))
    with pytest.raises(OutputError, match=r"cannot open .*Permission denied"):
        w.publish()
    assert poll(fmt, tmp_path, 8, 10, revise=True).replaced  # a rename replaces it


# ------------------------------------------------------------------ two writers, one file


def _lock_is_held(path: Path) -> bool:
    """True when another open file description holds `path`'s lock (flock locks conflict
    between descriptions even within one process)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_an_append_holds_the_file_lock_from_the_check_to_the_flush(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = poll(fmt, tmp_path, 0, 10).path
    seen: list[tuple[str, bool]] = []
    real_pwrite, real_sync = os.pwrite, os.fdatasync

    def pwrite(fd: int, data: Any, offset: int) -> int:
        seen.append(("pwrite", _lock_is_held(path)))
        return real_pwrite(fd, data, offset)

    def fdatasync(fd: int) -> None:
        seen.append(("fdatasync", _lock_is_held(path)))
        real_sync(fd)

    monkeypatch.setattr(growth.os, "pwrite", pwrite)
    monkeypatch.setattr(growth.os, "fdatasync", fdatasync)
    assert not poll(fmt, tmp_path, 10, 10).replaced
    assert seen == [("pwrite", True), ("fdatasync", True)]
    assert not _lock_is_held(path)


def test_a_rewrite_holds_the_lock_of_the_file_it_replaces(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poll(fmt, tmp_path, 0, 10)
    seen: list[bool] = []
    real = growth.publish_atomically

    def publish(final: Path, write: Any) -> PublishedFile:
        seen.append(_lock_is_held(final))
        return real(final, write)

    monkeypatch.setattr(growth, "publish_atomically", publish)
    assert poll(fmt, tmp_path, 8, 10, revise=True).replaced
    assert seen == [True]


def test_a_window_read_before_another_writer_replaced_the_file_is_refused(
    fmt: Format, tmp_path: Path
) -> None:
    # Two instances (one has lost its lease) read the same file; the first rewrites it.
    path = poll(fmt, tmp_path, 0, 10).path
    late = fmt.writer().open_window(tmp_path, DATASET, WINDOW)
    fmt.add(late, 10, 5, False, (TEMP, COND))
    assert poll(fmt, tmp_path, 8, 10, revise=True).replaced
    after = path.read_bytes()
    with pytest.raises(OutputError, match="changed while"):
        late.publish()
    assert path.read_bytes() == after


def test_a_digest_is_not_kept_for_a_file_another_writer_grew_right_after_a_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fmt = FORMATS[2]  # raw text: any line after the last time is a valid line
    writer = fmt.writer()
    poll(fmt, tmp_path, 0, 10, writer=writer)
    real = growth.publish_atomically

    def then_another_append(final: Path, write: Any) -> PublishedFile:
        published = real(final, write)
        with open(final, "ab") as handle:  # another process, the moment the rename is done
            handle.write(b"2026-11-20T05:00:30.000Z\t>\tfrom elsewhere\n")
        return published

    monkeypatch.setattr(growth, "publish_atomically", then_another_append)
    assert poll(fmt, tmp_path, 8, 10, revise=True, writer=writer).replaced
    monkeypatch.undo()
    published = poll(fmt, tmp_path, 40, 5, writer=writer)
    assert not published.replaced
    assert published.sha256 == sha256_of(published.path)[1]


def _append_in_a_loop(path: str, tag: str, count: int) -> tuple[int, int]:
    ok = refused = 0
    for i in range(count):
        read = growth.open_partition(Path(path))
        assert read is not None
        line = f"{tag}-{i:06d},{tag * (20 if tag == 'a' else 5)}\n".encode()
        try:
            growth.append_lines(Path(path), line, read)
            ok += 1
        except OutputError:
            refused += 1
    return ok, refused


def test_two_processes_appending_to_one_file_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "race.txt"
    path.write_bytes(b"")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_append_in_a_loop, [str(path)] * 2, "ab", [300, 300]))
    lines = path.read_bytes().split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == sum(ok for ok, _ in results)
    for line in lines:
        tag, _, rest = line.partition(b"-")
        assert rest.endswith(b"," + tag * (20 if tag == b"a" else 5)), line


# ------------------------------------------------------------------ the shared rule


def test_place_splits_window_times_into_known_and_later() -> None:
    known = np.array([10, 20, 30], dtype=np.int64)
    placed = place(known, np.array([20, 30, 31, 40], dtype=np.int64))
    assert placed is not None
    assert placed.equal.tolist() == [True, True, False, False]
    assert placed.later.tolist() == [False, False, True, True]
    assert place(known, np.array([25], dtype=np.int64)) is None
    assert place(known, np.array([5], dtype=np.int64)) is None
    empty = place(np.array([], dtype=np.int64), np.array([1, 2], dtype=np.int64))
    assert empty is not None
    assert empty.later.tolist() == [True, True]


def test_keyed_growth_appends_only_after_the_last_key() -> None:
    lines = {"a": "a1\n", "b": "b1\n"}
    growth = KeyedGrowth("b")
    growth.note("d", "d1\n", lines)
    growth.note("c", "c1\n", lines)
    growth.note("b", "b1\n", lines)  # the same line again
    assert growth.appended() == ["c", "d"]
    growth.note("a", "a2\n", lines)  # a revision
    assert growth.appended() is None
    growth = KeyedGrowth(None)  # a file without records
    growth.note("a", "a1\n", {})
    assert growth.appended() == ["a"]
    growth = KeyedGrowth(("t1", "z"))
    growth.note(("t1", "y"), "new\n", {})  # a sensor at a time the file has: a gap filled
    assert growth.appended() is None


def test_open_partition_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    assert open_partition(path) is None
    for content, kept in [
        (b"a\nbb\n", b"a\nbb\n"),
        (b"a\nbb\ncc", b"a\nbb\n"),
        (b"no newline at all", b""),
        (b"", b""),
        (b"x" * 70_000 + b"\n" + b"y" * 70_000, b"x" * 70_000 + b"\n"),  # past one chunk
    ]:
        path.write_bytes(content)
        read = open_partition(path)
        assert read is not None
        assert (read.inode, read.size) == (path.stat().st_ino, len(kept))
        assert path.read_bytes() == kept


@pytest.mark.parametrize("fmt", FORMATS[2:], ids=lambda f: f.name)
def test_a_raw_window_reads_only_its_part_of_the_partition(fmt: Format, tmp_path: Path) -> None:
    # The day's file holds 05h and 06h; a window on 06h parses only 06h's lines, yet counts,
    # appends and rewrites the whole file.
    later = Window(START + HOUR, START + 2 * HOUR)
    w = fmt.writer().open_window(tmp_path, DATASET, WINDOW)
    _raw(w, 0, 10, False, ())
    w.publish()
    w = fmt.writer().open_window(tmp_path, DATASET, later)
    _raw(w, 3600, 5, False, ())
    path = w.publish().path
    reopened = fmt.writer().open_window(tmp_path, DATASET, later)
    assert reopened.record_count == 15
    assert len(reopened._base) == 5  # the lines it parsed
    _raw(reopened, 3600, 8, True, ())  # 3600 revised, 3605-3607 new
    assert reopened.record_count == 18
    published = reopened.publish()
    assert published.replaced
    reference = fmt.writer().open_window(tmp_path / "ref", DATASET, Window(DAY, DAY + 24 * HOUR))
    _raw(reference, 0, 10, False, ())
    _raw(reference, 3600, 8, True, ())
    assert path.read_bytes() == reference.publish().path.read_bytes()


def test_the_stat_cache_misses_a_file_renamed_over_with_the_same_size_and_mtime(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d" / "f.csv"
    path.parent.mkdir()
    path.write_bytes(b"a\n")
    cache = StatCache[str]()
    cache.put(path, "digest of a")
    assert cache.get(path) == "digest of a"
    stat = path.stat()
    other = path.with_name("f.csv.tmp")
    other.write_bytes(b"b\n")
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(other, path)
    assert cache.get(path) is None
    assert cache.get(tmp_path / "d" / "other.csv") is None


def test_the_stat_cache_forgets_the_folders_least_recently_stored_past_its_limit(
    tmp_path: Path,
) -> None:
    cache = StatCache[str](limit=2)
    paths = []
    for name in "abc":
        path = tmp_path / name / "f.nc"
        path.parent.mkdir()
        path.write_bytes(name.encode())
        paths.append(path)
    a, b, c = paths
    cache.put(a, "a")
    cache.put(b, "b")
    cache.put(a, "a again")  # stored again: now the most recent
    cache.put(c, "c")
    assert (cache.get(a), cache.get(b), cache.get(c)) == ("a again", None, "c")


def test_the_stat_cache_is_shared_by_threads(tmp_path: Path) -> None:
    # Windows publish in threads: two forgetting one file at once must not fail either.
    path = tmp_path / "d" / "f.nc"
    path.parent.mkdir()
    path.write_bytes(b"x")
    seen = path.stat()
    cache = StatCache[int](limit=1)

    def churn() -> None:
        for i in range(50_000):
            cache.put(path, i, seen=seen)
            cache.forget(path)

    assert race(*[churn] * 4) == []
