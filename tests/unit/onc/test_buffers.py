"""`BodyBuffers` keeps a few body buffers between replies, and drops them when idle."""

from __future__ import annotations

import asyncio

from pipeline.onc.buffers import BodyBuffers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_buffer_given_back_is_taken_again_newest_first() -> None:
    clock = Clock()
    buffers = BodyBuffers(keep=2, hold_s=5.0, clock=clock)
    first, second = buffers.take(), buffers.take()
    assert first is not second
    buffers.give(first)
    clock.now += 1
    buffers.give(second)
    assert buffers.take() is second
    assert buffers.take() is first
    assert len(buffers) == 0


def test_no_more_than_keep_are_kept() -> None:
    buffers = BodyBuffers(keep=2, clock=Clock())
    taken = [buffers.take() for _ in range(3)]
    for buffer in taken:
        buffers.give(buffer)
    assert len(buffers) == 2
    assert {id(buffers.take()), id(buffers.take())} == {id(taken[0]), id(taken[1])}


def test_an_idle_buffer_is_dropped_after_hold() -> None:
    clock = Clock()
    buffers = BodyBuffers(keep=3, hold_s=5.0, clock=clock)
    old, young = bytearray(b"old"), bytearray(b"young")
    buffers.give(old)
    clock.now += 3
    buffers.give(young)
    buffers.expire(clock.now + 2.5)  # old was given back 5.5 s before, young 2.5 s
    assert len(buffers) == 1
    clock.now += 2.5
    assert buffers.take() is young
    clock.now += 10
    buffers.give(young)
    buffers.clear()
    assert len(buffers) == 0


async def test_the_loop_drops_idle_buffers_without_another_request() -> None:
    buffers = BodyBuffers(keep=2, hold_s=0.0)
    buffers.give(bytearray(b"x"))
    assert len(buffers) == 1
    for _ in range(3):
        await asyncio.sleep(0)  # the timer runs on the loop
    assert len(buffers) == 0
