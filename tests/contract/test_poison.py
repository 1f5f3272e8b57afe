"""Contract: attempt counting and the quarantine of poison items."""

from __future__ import annotations

from datetime import timedelta

from pipeline.state import QuarantineRecord, StateStore
from tests.contract.conftest import T0, Backend


async def test_attempts_count_per_item(store: StateStore) -> None:
    assert await store.note_attempt("s1", "page-1", "bad json") == 1
    assert await store.note_attempt("s1", "page-1", "bad json") == 2
    assert await store.note_attempt("s1", "page-2", "bad json") == 1
    assert await store.note_attempt("s2", "page-1", "bad json") == 1
    assert await store.note_attempt("s1", "page-1", "timeout") == 3


async def test_clear_attempts_resets_the_count(store: StateStore) -> None:
    await store.note_attempt("s1", "f", "sha mismatch")
    await store.note_attempt("s1", "f", "sha mismatch")
    await store.clear_attempts("s1", "f")
    await store.clear_attempts("s1", "never")
    assert await store.note_attempt("s1", "f", "sha mismatch") == 1


async def test_clear_attempts_resets_several_items_at_once(store: StateStore) -> None:
    for key in ("h05", "h06", "h07"):
        await store.note_attempt("s1", key, "timeout")
    await store.note_attempt("s2", "h05", "timeout")
    await store.clear_attempts("s1", "h05", "h06", "never")
    await store.clear_attempts("s1")  # no items: nothing to do
    assert await store.note_attempt("s1", "h05", "timeout") == 1
    assert await store.note_attempt("s1", "h06", "timeout") == 1
    assert await store.note_attempt("s1", "h07", "timeout") == 2  # not named
    assert await store.note_attempt("s2", "h05", "timeout") == 2  # another stream's


async def test_quarantine_records_reason_attempts_and_time(
    backend: Backend, store: StateStore
) -> None:
    backend.clock.now = T0 + timedelta(minutes=7)
    for _ in range(3):
        await store.note_attempt("s1", "file-9.wav", "sha256 mismatch")
    await store.quarantine("s1", "file-9.wav", "sha256 mismatch", "expected ab, got cd")

    assert await store.is_quarantined("s1", "file-9.wav")
    assert not await store.is_quarantined("s2", "file-9.wav")
    assert not await store.is_quarantined("s1", "file-10.wav")
    assert await store.list_quarantine() == [
        QuarantineRecord(
            stream="s1",
            item_key="file-9.wav",
            reason="sha256 mismatch",
            detail="expected ab, got cd",
            attempts=3,
            at=T0 + timedelta(minutes=7),
        )
    ]
    # The count starts again, so a released item would get its full retry budget.
    assert await store.note_attempt("s1", "file-9.wav", "sha256 mismatch") == 1


async def test_quarantine_without_attempts_and_requarantine(store: StateStore) -> None:
    await store.quarantine("s1", "p", "unparseable")
    await store.note_attempt("s1", "p", "still bad")
    await store.quarantine("s1", "p", "still bad", "details")
    [record] = await store.list_quarantine("s1")
    assert (record.reason, record.detail, record.attempts) == ("still bad", "details", 1)


async def test_clear_attempts_does_not_release_a_quarantined_item(store: StateStore) -> None:
    await store.quarantine("s1", "p", "unparseable")
    await store.clear_attempts("s1", "p")
    assert await store.is_quarantined("s1", "p")


async def test_list_quarantine_order_and_filter(store: StateStore) -> None:
    for stream, key in [("s2", "b"), ("s1", "z"), ("s2", "a"), ("s1", "a")]:
        await store.quarantine(stream, key, "r")
    assert [(r.stream, r.item_key) for r in await store.list_quarantine()] == [
        ("s1", "a"),
        ("s1", "z"),
        ("s2", "a"),
        ("s2", "b"),
    ]
    assert [r.item_key for r in await store.list_quarantine("s2")] == ["a", "b"]
    assert await store.list_quarantine("s3") == []


async def test_an_operator_releases_one_quarantined_item(store: StateStore) -> None:
    for key in ("file-9.wav", "file-10.wav"):
        await store.note_attempt("s1", key, "sha256 mismatch")
        await store.quarantine("s1", key, "sha256 mismatch")
    await store.note_attempt("s1", "file-9.wav", "retried after")

    assert await store.release_quarantine("s1", "file-9.wav")
    assert not await store.is_quarantined("s1", "file-9.wav")
    assert [r.item_key for r in await store.list_quarantine()] == ["file-10.wav"]
    # Its attempts start again from zero: the next failure is the first.
    assert await store.note_attempt("s1", "file-9.wav", "sha256 mismatch") == 1
    # Releasing what is not quarantined says so and changes nothing.
    assert not await store.release_quarantine("s1", "file-9.wav")
    assert not await store.release_quarantine("s2", "file-10.wav")
    assert await store.is_quarantined("s1", "file-10.wav")
