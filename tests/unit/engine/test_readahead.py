"""Read-ahead: reservations wait while it is full, in order, and always give room back."""

from __future__ import annotations

import asyncio
from array import array

import pytest

from pipeline.daemon import read_ahead_bytes
from pipeline.engine.readahead import FIRST_PAGE_GUESS, ReadAhead
from pipeline.records import PackedColumn, RawBatch, ScalarBatch, SensorInfo, batch_bytes


def scalar(rows: int) -> ScalarBatch:
    times = "\n".join(f"2026-11-20T00:00:{i % 60:02d}.000Z" for i in range(rows))
    sensor = SensorInfo(code="t", name="Temperature", unit="C", property_code="seawatertemperature")
    column = PackedColumn(sensor, 0, rows, array("d", [1.0] * rows), array("b", [1] * rows))
    return ScalarBatch([times], [column, column])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_batch_counts_its_text_and_arrays() -> None:
    batch = scalar(10)
    # 10 times of 24 characters and 9 newlines, two columns of 10 doubles and 10 flags.
    assert batch_bytes(batch) == 10 * 24 + 9 + 2 * (10 * 8 + 10)
    assert batch_bytes(RawBatch(["ab", "cd"], ["xyz", "w"], ["d", "d"])) == 2 + 2 + 3 + 1 + 2


async def test_a_reservation_waits_while_the_limit_is_reached_and_in_order() -> None:
    ahead = ReadAhead(100)
    first = await ahead.reserve(60)
    admitted: list[str] = []

    async def take(name: str, size: int) -> None:
        reservation = await ahead.reserve(size)
        admitted.append(name)
        await asyncio.Event().wait()  # held until cancelled
        reservation.release()

    big = asyncio.create_task(take("big", 90))
    await settle()
    small = asyncio.create_task(take("small", 20))  # would fit now: waits behind the big one
    await settle()
    assert admitted == []
    assert ahead.held == 60
    first.release()
    first.release()  # idempotent
    await settle()
    assert admitted == ["big"]
    assert ahead.held == 90
    big.cancel()
    small.cancel()
    await asyncio.gather(big, small, return_exceptions=True)


async def test_one_page_larger_than_the_limit_is_fetched_alone() -> None:
    ahead = ReadAhead(10)
    alone = await ahead.reserve(500)
    assert ahead.held == 500
    waiting = asyncio.create_task(ahead.reserve(1))
    await settle()
    assert not waiting.done()
    alone.release()
    (await waiting).release()
    assert ahead.held == 0
    assert ahead.peak == 500


async def test_a_parsed_page_holds_its_real_size_and_sets_the_next_guess() -> None:
    ahead = ReadAhead(10_000_000_000)
    reservation = await ahead.reserve()
    assert reservation.size == FIRST_PAGE_GUESS
    batch = scalar(100)
    assert ahead.parsed(reservation, batch) == batch_bytes(batch)
    assert ahead.held == batch_bytes(batch)
    following = await ahead.reserve()
    assert following.size == batch_bytes(batch)
    reservation.release()
    following.release()
    assert ahead.held == 0


async def test_a_cancelled_wait_leaves_nothing_held() -> None:
    ahead = ReadAhead(100)
    held = await ahead.reserve(100)
    waiting = asyncio.create_task(ahead.reserve(50))
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    held.release()
    assert ahead.held == 0
    # Admitted, then cancelled before it ran: the room goes back too.
    held = await ahead.reserve(100)
    waiting = asyncio.create_task(ahead.reserve(50))
    await settle()
    held.release()  # admits the waiter (its room is taken now)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert ahead.held == 0


def test_read_ahead_needs_room() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReadAhead(0)


def test_the_daemons_read_ahead_feeds_every_request_and_worker() -> None:
    # A page for each allowed request and one merging on each worker (or in the daemon).
    assert read_ahead_bytes(3, 2) == 5 * FIRST_PAGE_GUESS
    assert read_ahead_bytes(3, 0) == 4 * FIRST_PAGE_GUESS
    assert read_ahead_bytes(12, 4) == 16 * FIRST_PAGE_GUESS


async def test_a_cancelled_waiter_lets_the_ones_behind_it_in() -> None:
    ahead = ReadAhead(10)
    held = await ahead.reserve(5)
    big = asyncio.ensure_future(ahead.reserve(8))
    small = asyncio.ensure_future(ahead.reserve(2))
    await asyncio.sleep(0)
    assert not big.done()
    assert not small.done()
    big.cancel()
    for _ in range(3):  # the cancellation reaches `big`, which admits `small`, which returns
        await asyncio.sleep(0)
    assert small.done()  # 5 + 2 fit: it does not wait for a release
    assert ahead.held == 7
    (await small).release()
    held.release()
    assert ahead.held == 0
