"""Contract: commit_publish, the exactly-once commit point, and the manifest it maintains."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from pipeline.state import Commit, StateStore
from tests.contract.conftest import T0, Backend
from tests.contract.helpers import entry


async def test_commit_records_entries_and_cursor(backend: Backend, store: StateStore) -> None:
    backend.clock.now = T0 + timedelta(hours=3)
    first, second = entry("s1/b.jsonl"), entry("s1/a.jsonl", start=T0 + timedelta(hours=1))
    await store.commit_publish(Commit("s1", [first, second], cursor_time=T0 + timedelta(hours=2)))

    assert await store.get_manifest("s1/b.jsonl") == first
    assert await store.get_manifest("s1/a.jsonl") == second
    assert await store.get_manifest("s1/missing.jsonl") is None
    assert await store.list_manifest() == [second, first]  # by path
    record = await store.get_stream("s1")
    assert record is not None
    assert record.cursor_time == T0 + timedelta(hours=2)
    assert record.updated_at == T0 + timedelta(hours=3)


async def test_a_commit_with_a_cursor_time_records_a_success(
    backend: Backend, store: StateStore
) -> None:
    backend.clock.now = T0 + timedelta(minutes=5)
    await store.record_failure("s1", T0, "boom")
    await store.commit_publish(Commit("s1", [entry("s1/a.jsonl")]))  # no cursor time
    record = await store.get_stream("s1")
    assert record is not None
    assert record.last_success is None

    backend.clock.now = T0 + timedelta(minutes=7)
    await store.commit_publish(Commit("s1", [], cursor_time=T0 + timedelta(hours=1)))
    backend.clock.now = T0 + timedelta(minutes=8)
    await store.commit_publish(Commit("s1", [entry("s1/a.jsonl")]))
    record = await store.get_stream("s1")
    assert record is not None
    assert record.last_success == T0 + timedelta(minutes=7)
    assert record.last_error_at == T0  # older than the success: no longer current

    # An older cursor time is ignored, but the commit is still progress.
    backend.clock.now = T0 + timedelta(minutes=9)
    await store.commit_publish(Commit("s1", [], cursor_time=T0))
    record = await store.get_stream("s1")
    assert record is not None
    assert (record.cursor_time, record.last_success) == (
        T0 + timedelta(hours=1),
        T0 + timedelta(minutes=9),
    )


async def test_a_commit_records_its_success_at_the_pass_clock(
    backend: Backend, store: StateStore
) -> None:
    # The pass's clock (an emulator run's, a test's) is not the store's: readiness compares
    # last_error_at, written at the pass's clock, with last_success, so both must be on it.
    backend.clock.now = T0 + timedelta(days=400)
    passed_at = T0 + timedelta(minutes=1)
    await store.commit_publish(
        Commit("s1", [], cursor_time=T0 + timedelta(hours=1), succeeded_at=passed_at)
    )
    await store.record_failure("s1", T0 + timedelta(minutes=2), "boom")
    record = await store.get_stream("s1")
    assert record is not None
    assert record.last_success == passed_at
    assert record.last_error_at is not None
    assert record.last_error_at > record.last_success  # the failure is current


async def test_a_republished_file_keeps_one_entry_and_takes_the_new_values(
    store: StateStore,
) -> None:
    from dataclasses import replace

    first = entry("s1/day.nc")
    await store.commit_publish(Commit("s1", [first], cursor_time=T0))
    grown = replace(first, size=first.size + 100, sha256="b" * 64, records=7)
    await store.commit_publish(Commit("s1", [grown], cursor_time=T0 + timedelta(minutes=1)))
    assert await store.list_manifest("s1") == [grown]
    # Another stream publishing the same path takes it over.
    moved = replace(grown, stream="s2")
    await store.commit_publish(Commit("s2", [moved], cursor_time=T0))
    assert await store.list_manifest("s1") == []
    assert await store.list_manifest("s2") == [moved]
    assert await store.get_manifest("s1/day.nc") == moved


async def test_manifest_entries_round_trip_with_nones(store: StateStore) -> None:
    bare = entry("s1/x.bin", records=None)
    from dataclasses import replace

    bare = replace(bare, time_start=None, time_end=None, source=None)
    await store.commit_publish(Commit("s1", [bare]))
    assert await store.get_manifest("s1/x.bin") == bare


async def test_cursor_moves_forward(store: StateStore) -> None:
    await store.commit_publish(Commit("s1", [], cursor_time=T0, cursor_file="f1"))
    await store.commit_publish(
        Commit("s1", [], cursor_time=T0 + timedelta(hours=1), cursor_file="f2")
    )
    record = await store.get_stream("s1")
    assert record is not None
    assert (record.cursor_time, record.cursor_file) == (T0 + timedelta(hours=1), "f2")


async def test_equal_cursor_is_accepted(store: StateStore) -> None:
    await store.commit_publish(Commit("s1", [], cursor_time=T0, cursor_file="f1"))
    await store.commit_publish(Commit("s1", [], cursor_time=T0, cursor_file="f1b"))
    record = await store.get_stream("s1")
    assert record is not None
    assert (record.cursor_time, record.cursor_file) == (T0, "f1b")


async def test_older_cursor_is_ignored_but_the_rest_of_the_commit_applies(
    store: StateStore,
) -> None:
    await store.put_inflight("s1", "late-window", {"w": 1})
    await store.commit_publish(
        Commit("s1", [], cursor_time=T0 + timedelta(days=1), cursor_file="new")
    )
    late = entry("s1/late.jsonl")
    await store.commit_publish(
        Commit("s1", [late], cursor_time=T0, cursor_file="old", clear_inflight=["late-window"])
    )
    record = await store.get_stream("s1")
    assert record is not None
    assert (record.cursor_time, record.cursor_file) == (T0 + timedelta(days=1), "new")
    assert await store.get_manifest("s1/late.jsonl") == late
    assert await store.get_inflight("s1") == {}


async def test_none_leaves_cursor_fields_unchanged(store: StateStore) -> None:
    await store.commit_publish(Commit("s1", [], cursor_time=T0, cursor_file="f1"))
    await store.commit_publish(Commit("s1", [entry("s1/a.jsonl")]))
    await store.commit_publish(Commit("s1", [], cursor_file="f2"))
    record = await store.get_stream("s1")
    assert record is not None
    assert (record.cursor_time, record.cursor_file) == (T0, "f2")


async def test_republished_path_is_replaced_not_duplicated(store: StateStore) -> None:
    await store.commit_publish(Commit("s1", [entry("s1/w.jsonl", size=10, sha="a", records=1)]))
    again = entry("s1/w.jsonl", size=20, sha="b", records=2)
    await store.commit_publish(Commit("s1", [again]))
    assert await store.list_manifest() == [again]


async def test_clear_inflight_removes_only_named_keys_of_that_stream(store: StateStore) -> None:
    for key in ("a", "b", "c"):
        await store.put_inflight("s1", key, {"k": key})
    await store.put_inflight("s2", "a", {"k": "other"})
    await store.commit_publish(Commit("s1", [], clear_inflight=["a", "c", "never-existed"]))
    assert await store.get_inflight("s1") == {"b": {"k": "b"}}
    assert await store.get_inflight("s2") == {"a": {"k": "other"}}


async def test_list_manifest_filters_by_stream(store: StateStore) -> None:
    await store.commit_publish(Commit("s1", [entry("s1/b"), entry("s1/a")]))
    await store.commit_publish(Commit("s2", [entry("s2/a", stream="s2")]))
    assert [e.path for e in await store.list_manifest("s1")] == ["s1/a", "s1/b"]
    assert [e.path for e in await store.list_manifest("s2")] == ["s2/a"]
    assert await store.list_manifest("s3") == []
    assert len(await store.list_manifest()) == 3


async def test_list_dataset_manifest_reads_the_folder_after_a_path_whatever_the_stream(
    store: StateStore,
) -> None:
    # Byte order, as manifest files sort their lines: "Z" before "a", "é" after "z".
    paths = ["ds_s1/2026/01/02/b", "ds_s1/2026/01/02/a", "ds_s1/2026/01/03/Z", "ds_s1/undated/é"]
    paths += ["ds_s1/x", "ds_s1/undated/z"]
    await store.commit_publish(Commit("s1", [entry(p) for p in paths]))
    # A stream renamed: its entries stay the dataset's. Beside the folder, other folders
    # sharing its name's start, and an entry of another dataset inside it, are not read.
    renamed = replace(entry("ds_s1/2025/12/31/old", stream="s0"), dataset_id="ds_s1")
    await store.commit_publish(Commit("s0", [renamed]))
    others = [entry("ds_s10/a", stream="s2"), entry("ds_s1.x/a", stream="s2")]
    others += [replace(entry("ds_s1/2026/09/z", stream="s2"), dataset_id="ds_s2")]
    others += [entry("ds_s0/z", stream="s2"), entry("ds_s1/", stream="s2")]
    await store.commit_publish(Commit("s2", others))
    want = ["ds_s1/2026/01/03/Z", "ds_s1/undated/z", "ds_s1/undated/é", "ds_s1/x"]
    later = await store.list_dataset_manifest("ds_s1", "ds_s1/2026/01/02/b")
    assert [e.path for e in later] == want
    assert later[0] == await store.get_manifest("ds_s1/2026/01/03/Z")
    every = await store.list_dataset_manifest("ds_s1")
    assert [e.path for e in every] == sorted([*paths, "ds_s1/2025/12/31/old"])
    assert [e.path for e in await store.list_dataset_manifest("ds_s1", "ds_s1/undated/é")] == [
        "ds_s1/x"
    ]
    assert await store.list_dataset_manifest("ds_s1", "ds_s1/x") == []
    assert await store.list_dataset_manifest("ds_s3") == []


async def test_entry_of_another_stream_rejects_the_whole_commit(store: StateStore) -> None:
    await store.put_inflight("s1", "w", {"x": 1})
    with pytest.raises(ValueError, match="belongs to"):
        await store.commit_publish(
            Commit(
                "s1",
                [entry("s1/ok"), entry("s2/bad", stream="s2")],
                cursor_time=T0,
                clear_inflight=["w"],
            )
        )
    assert await store.list_manifest() == []
    assert await store.get_inflight("s1") == {"w": {"x": 1}}
    record = await store.get_stream("s1")
    assert record is not None
    assert record.cursor_time is None


async def test_duplicate_path_in_one_commit_is_rejected(store: StateStore) -> None:
    with pytest.raises(ValueError, match="twice"):
        await store.commit_publish(Commit("s1", [entry("s1/a"), entry("s1/a", size=1)]))
    assert await store.list_manifest() == []


async def test_concurrent_commits_and_meta_writes_lose_nothing(store: StateStore) -> None:
    count = 60

    async def publish(i: int) -> None:
        await store.put_inflight("s1", f"w{i}", {"i": i})
        await store.commit_publish(
            Commit(
                "s1",
                [entry(f"s1/{i:03d}.jsonl", start=T0 + timedelta(hours=i))],
                cursor_time=T0 + timedelta(hours=i + 1),
                clear_inflight=[f"w{i}"],
            )
        )

    async def remember(i: int) -> None:
        await store.put_meta("erddap", f"flag{i}", {"i": i})
        await store.note_attempt("s2", "item", "flaky")

    # Interleave in reverse-ish order so late cursors often land before early ones.
    jobs = [publish(i) for i in reversed(range(count))] + [remember(i) for i in range(count)]
    await asyncio.gather(*jobs)

    assert [e.path for e in await store.list_manifest("s1")] == [
        f"s1/{i:03d}.jsonl" for i in range(count)
    ]
    record = await store.get_stream("s1")
    assert record is not None
    assert record.cursor_time == T0 + timedelta(hours=count)  # the maximum, never rewound
    assert await store.get_inflight("s1") == {}
    for i in range(count):
        assert await store.get_meta("erddap", f"flag{i}") == {"i": i}
    assert await store.note_attempt("s2", "item", "flaky") == count + 1
