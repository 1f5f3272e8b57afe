"""The per-dataset manifest file for archive and product files."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs import growth, manifest
from pipeline.outputs.manifest import MANIFEST_NAME, parse_manifest, render_manifest, write_manifest
from pipeline.records import PublishedFile
from pipeline.state.base import ManifestEntry

AT = datetime(2026, 11, 20, 6, tzinfo=UTC)


def entry(path: str, dataset: str = "onc_sevip_hydrophone", **kw: object) -> ManifestEntry:
    values: dict[str, object] = {
        "path": path,
        "stream": "sevip",
        "dataset_id": dataset,
        "size": 200_000,
        "sha256": "ab" * 32,
        "time_start": AT,
        "time_end": None,
        "records": None,
        "source": "archivefile",
        "published_at": AT,
    }
    values.update(kw)
    return ManifestEntry(**values)  # type: ignore[arg-type]


def test_render_and_parse_round_trip(tmp_path: Path) -> None:
    entries = [
        entry("onc_sevip_hydrophone/2026/11/20/b.wav"),
        entry("onc_sevip_hydrophone/2026/11/20/a.wav", size=7, records=3),
        entry("onc_other/x.wav", dataset="onc_other"),
    ]
    rows = parse_manifest(render_manifest("onc_sevip_hydrophone", entries))
    assert [r["path"] for r in rows] == ["2026/11/20/a.wav", "2026/11/20/b.wav"]
    assert rows[0] == {
        "path": "2026/11/20/a.wav",
        "size": "7",
        "sha256": "ab" * 32,
        "source": "archivefile",
        "time_start": "2026-11-20T06:00:00Z",
        "time_end": "",
        "records": "3",
        "published_at": "2026-11-20T06:00:00Z",
    }
    published = write_manifest(tmp_path, "onc_sevip_hydrophone", entries)
    assert published.path == tmp_path / "onc_sevip_hydrophone" / MANIFEST_NAME
    assert len(parse_manifest(published.path.read_text())) == 2


def test_unsafe_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="tab or newline"):
        render_manifest("d", [entry("d/a\tb.wav", dataset="d")])
    with pytest.raises(OutputError):
        write_manifest(tmp_path, "../escape", [])
    with pytest.raises(OutputError, match="not a manifest"):
        parse_manifest("x\ty\n")


@pytest.fixture(autouse=True)
def small_comparisons(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file compared with the new text 7 bytes at a time: every test's manifest spans
    many comparison chunks, as a year's does with 1 MiB ones."""
    monkeypatch.setattr(manifest, "_COMPARE_CHUNK", 7)


def hydrophone(day: int, *names: str, **kw: object) -> list[ManifestEntry]:
    return [entry(f"onc_sevip_hydrophone/2026/11/{day:02d}/{name}", **kw) for name in names]


def written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the writes to regular files from now on (`pwrite` for appends, `write` for
    new files)."""
    sizes: list[int] = []
    real_write, real_pwrite = os.write, os.pwrite

    def recording_write(fd: int, data: memoryview) -> int:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            sizes.append(len(data))
        return real_write(fd, data)

    def recording_pwrite(fd: int, data: memoryview, offset: int) -> int:
        sizes.append(len(data))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "write", recording_write)
    monkeypatch.setattr(os, "pwrite", recording_pwrite)
    return sizes


def check(published: PublishedFile, entries: list[ManifestEntry]) -> None:
    """The file is the rendered manifest, and the digest reported is the file's."""
    data = published.path.read_bytes()
    assert data == render_manifest("onc_sevip_hydrophone", entries).encode()
    assert published.size == len(data)
    assert published.sha256 == hashlib.sha256(data).hexdigest()


def test_new_files_sorting_last_are_appended_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = hydrophone(20, "a.wav", "b.wav")
    first = write_manifest(tmp_path, "onc_sevip_hydrophone", entries)
    inode = first.path.stat().st_ino
    sizes = written(monkeypatch)

    def never(path: Path) -> None:
        raise AssertionError(f"{path} read back to hash it: its digest was kept")

    monkeypatch.setattr(growth, "file_sha256", never)  # an append hashes its lines only
    for day in (20, 21, 21):  # a file later that day, then the next day's, one at a time
        entries += hydrophone(day, f"z{len(entries)}.wav")
        before = first.path.stat().st_size
        published = write_manifest(tmp_path, "onc_sevip_hydrophone", entries)
        check(published, entries)
        assert published.path.stat().st_ino == inode  # never renamed over: appended
        assert sizes[-1] == published.size - before  # the new line only
    assert len(sizes) == 3


@pytest.mark.parametrize("start", ["empty", "header only"])
def test_lines_are_appended_to_an_empty_or_header_only_file(tmp_path: Path, start: str) -> None:
    path = write_manifest(tmp_path, "onc_sevip_hydrophone", []).path
    if start == "empty":
        path.write_bytes(b"")
    inode = path.stat().st_ino
    entries = hydrophone(20, "a.wav")
    check(write_manifest(tmp_path, "onc_sevip_hydrophone", entries), entries)
    assert path.stat().st_ino == inode


def test_a_file_that_may_not_be_written_in_place_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Made read-only, or left by another user: the rename still replaces it (as root the
    # permission bits stop nothing, so the answer is given here).
    entries = hydrophone(20, "a.wav")
    path = write_manifest(tmp_path, "onc_sevip_hydrophone", entries).path
    inode = path.stat().st_ino
    monkeypatch.setattr(
        manifest.os, "access", lambda p, mode: Path(p) != path and os.access(p, mode)
    )
    entries += hydrophone(20, "b.wav")
    check(write_manifest(tmp_path, "onc_sevip_hydrophone", entries), entries)
    assert path.stat().st_ino != inode


def test_a_disk_error_names_the_manifest_and_when_it_is_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = hydrophone(20, "a.wav")
    path = write_manifest(tmp_path, "onc_sevip_hydrophone", entries).path

    def full(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OutputError) as info:
        write_manifest(tmp_path, "onc_sevip_hydrophone", entries + hydrophone(20, "b.wav"))
    message = str(info.value)
    assert "manifest" in message
    assert "No space left" in message
    assert "window" not in message
    assert "next pass that publishes" in message
    assert info.value.path == str(path)
    assert path.read_bytes() == render_manifest("onc_sevip_hydrophone", entries).encode()


@pytest.mark.parametrize(
    "change",
    ["a line between", "a line changed", "a line gone", "the header", "longer than now"],
)
def test_any_other_change_rewrites_the_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    entries = hydrophone(20, "a.wav", "c.wav")
    path = write_manifest(tmp_path, "onc_sevip_hydrophone", entries).path
    inode = path.stat().st_ino
    if change == "a line between":
        entries += hydrophone(20, "b.wav")
    elif change == "a line changed":
        entries = hydrophone(20, "a.wav", size=1) + hydrophone(20, "c.wav")
    elif change == "a line gone":
        entries = entries[:1]
    elif change == "the header":
        path.write_bytes(path.read_bytes().replace(b"size", b"bytes", 1))
    else:  # the file holds more than the manifest would (a line written outside)
        with path.open("ab") as handle:
            handle.write(b"extra\tline\n")
    published = write_manifest(tmp_path, "onc_sevip_hydrophone", entries)
    check(published, entries)
    assert published.path.stat().st_ino != inode


def test_an_unchanged_manifest_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = hydrophone(20, "a.wav")
    first = write_manifest(tmp_path, "onc_sevip_hydrophone", entries)
    stamp = first.path.stat()
    sizes = written(monkeypatch)
    synced: list[int] = []
    monkeypatch.setattr(os, "fdatasync", synced.append)
    monkeypatch.setattr(os, "fsync", synced.append)
    again = write_manifest(tmp_path, "onc_sevip_hydrophone", entries)
    check(again, entries)
    assert sizes == []
    assert synced == []
    after = first.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)


def test_a_partial_line_left_by_a_crash_is_cut_before_the_append(tmp_path: Path) -> None:
    entries = hydrophone(20, "a.wav")
    path = write_manifest(tmp_path, "onc_sevip_hydrophone", entries).path
    inode = path.stat().st_ino
    entries += hydrophone(20, "b.wav")
    whole = render_manifest("onc_sevip_hydrophone", entries).encode()
    with path.open("ab") as handle:  # the append a crash cut short, mid-line
        handle.write(whole[path.stat().st_size : -10])
    check(write_manifest(tmp_path, "onc_sevip_hydrophone", entries), entries)
    assert path.stat().st_ino == inode


# -- refreshes that read only what sorts after the file's last line --------------------------

DATASET = "onc_sevip_hydrophone"


def day(n: int) -> ManifestEntry:
    return entry(f"{DATASET}/2026/11/{n:02d}/a.wav", size=n)


class Store:
    """The dataset's entries, read as `list_dataset_manifest` reads them; each read noted."""

    def __init__(self, *entries: ManifestEntry) -> None:
        self.entries = list(entries)
        self.reads: list[str] = []

    async def read(self, after: str) -> list[ManifestEntry]:
        self.reads.append(after)
        return sorted((e for e in self.entries if e.path > after), key=lambda e: e.path)

    def commit(self, root: Path, *entries: ManifestEntry) -> None:
        """Upsert by path, then tell the manifests, as the ledger does."""
        for new in entries:
            self.entries = [e for e in self.entries if e.path != new.path] + [new]
        manifest.note_committed(root, DATASET, [e.path for e in entries])

    def text(self) -> str:
        return render_manifest(DATASET, self.entries)


async def refresh(root: Path, store: Store) -> str:
    """Refresh and say how: "whole" (every entry read) or "after <path>"."""
    before = len(store.reads)
    await manifest.refresh_manifest(root, DATASET, store.read)
    reads = store.reads[before:]
    assert (root / DATASET / MANIFEST_NAME).read_text() == store.text()
    return "whole" if reads[-1] == "" else f"after {reads[-1]}"


async def test_refreshes_append_what_sorts_after_the_last_line(tmp_path: Path) -> None:
    store = Store(day(1), day(2))
    assert await refresh(tmp_path, store) == "whole"  # nothing known of the file yet
    target = tmp_path / DATASET / MANIFEST_NAME
    for n in (3, 4):
        store.commit(tmp_path, day(n))
        assert await refresh(tmp_path, store) == f"after {day(n - 1).path}"
    # A pass that committed nothing new appends nothing and leaves the file alone.
    mtime = target.stat().st_mtime_ns
    assert await refresh(tmp_path, store) == f"after {day(4).path}"
    assert target.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(day(0), id="a file sorting earlier"),
        pytest.param(replace(day(2), size=9), id="the last line"),
        pytest.param(replace(day(1), size=9), id="a line before it"),
    ],
)
async def test_a_commit_at_or_before_the_last_line_renders_the_file_whole(
    tmp_path: Path, change: ManifestEntry
) -> None:
    store = Store(day(1), day(2))
    await refresh(tmp_path, store)
    store.commit(tmp_path, change, day(3))
    assert await refresh(tmp_path, store) == "whole"
    store.commit(tmp_path, day(4))
    assert await refresh(tmp_path, store) == f"after {day(3).path}"  # known again


async def test_a_commit_during_a_refresh_leaves_the_next_one_whole(tmp_path: Path) -> None:
    store = Store(day(1), day(5))
    await refresh(tmp_path, store)
    store.commit(tmp_path, day(9))
    read = store.read

    async def read_then_commit(after: str) -> list[ManifestEntry]:
        # Another commit lands once the refresh has read: after the tail, before day 9.
        entries = await read(after)
        store.commit(tmp_path, day(7))
        return entries

    await manifest.refresh_manifest(tmp_path, DATASET, read_then_commit)
    assert "07" not in (tmp_path / DATASET / MANIFEST_NAME).read_text()
    assert await refresh(tmp_path, store) == "whole"


async def test_a_commit_that_failed_may_have_landed(tmp_path: Path) -> None:
    # The ledger notes a commit also when it raised (pipeline/engine/ledger.py).
    store = Store(day(1), day(5))
    await refresh(tmp_path, store)
    store.commit(tmp_path, day(3))  # landed; the caller saw an error
    assert await refresh(tmp_path, store) == "whole"


@pytest.mark.parametrize(
    "outside",
    [
        pytest.param(lambda path: path.write_text(path.read_text() + "x\n"), id="appended to"),
        pytest.param(lambda path: path.write_text(path.read_text()), id="rewritten"),
        pytest.param(lambda path: path.unlink(), id="removed"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:-3]), id="torn"),
    ],
)
async def test_a_file_another_writer_changed_is_rendered_whole(
    tmp_path: Path, outside: object
) -> None:
    store = Store(day(1), day(2))
    await refresh(tmp_path, store)
    target = tmp_path / DATASET / MANIFEST_NAME
    os.utime(target, ns=(0, 0))  # whatever the clock's grain, the change shows
    assert callable(outside)
    outside(target)
    store.commit(tmp_path, day(3))
    assert await refresh(tmp_path, store) == "whole"


async def test_a_file_changed_between_the_read_and_the_append_is_rendered_whole(
    tmp_path: Path,
) -> None:
    store = Store(day(1))
    await refresh(tmp_path, store)
    target = tmp_path / DATASET / MANIFEST_NAME
    store.commit(tmp_path, day(2))
    read = store.read

    async def read_then_change(after: str) -> list[ManifestEntry]:
        entries = await read(after)
        if after:
            target.write_text(target.read_text() + "x\n")  # another writer, meanwhile
        return entries

    await manifest.refresh_manifest(tmp_path, DATASET, read_then_change)
    assert target.read_text() == store.text()
    assert store.reads[-2:] == [day(1).path, ""]


async def test_a_manifest_that_may_not_be_written_in_place_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(day(1))
    await refresh(tmp_path, store)
    monkeypatch.setattr(manifest.os, "access", lambda *args: False)  # tests run as root
    store.commit(tmp_path, day(2))
    assert await refresh(tmp_path, store) == "whole"


async def test_a_day_of_appends_ends_in_a_whole_rendering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000.0]
    monkeypatch.setattr(manifest, "_uptime", lambda: now[0])
    store = Store(day(1))
    await refresh(tmp_path, store)
    now[0] += manifest.WHOLE_EVERY_S - 1
    store.commit(tmp_path, day(2))
    assert await refresh(tmp_path, store) == f"after {day(1).path}"
    now[0] += 1
    store.commit(tmp_path, day(3))
    assert await refresh(tmp_path, store) == "whole"
    store.commit(tmp_path, day(4))
    assert await refresh(tmp_path, store) == f"after {day(3).path}"


async def test_a_manifest_removed_right_after_its_write_keeps_no_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = manifest.write_manifest

    def write_then_remove(*args: object) -> PublishedFile:
        published = write(*args)  # type: ignore[arg-type]
        published.path.unlink()  # an operator, meanwhile
        return published

    monkeypatch.setattr(manifest, "write_manifest", write_then_remove)
    await manifest.refresh_manifest(tmp_path, DATASET, Store(day(1)).read)
    monkeypatch.undo()
    store = Store(day(1), day(2))
    assert await refresh(tmp_path, store) == "whole"
