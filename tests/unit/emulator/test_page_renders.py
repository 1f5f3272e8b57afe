"""The emulator renders a page once for requests that ask for it at once, cache or no cache,
and a render begun under an old gap plan never lands in the new plan's cache."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.emulator import timeseries
from pipeline.emulator.app import PageCache
from pipeline.emulator.responses import dumps


class _Ctx(SimpleNamespace):
    def horizon_ms(self) -> int:
        return 10**15


def _ctx(entries: int) -> Any:
    return _Ctx(cache=PageCache(entries), rendering={})


class _Render:
    """A render that takes a thread and waits for `release`, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, *, cheap_only: bool) -> tuple[int, bytes | None, None]:
        if cheap_only:
            return 200, None, None
        self.calls += 1
        self.release.wait(5)
        return 200, b'{"page": %d}' % self.calls, None


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    bodies: list[bytes] = []

    async def send_json(request: Any, body: bytes, *, status: int) -> bytes:
        bodies.append(body)
        return body

    monkeypatch.setattr(timeseries, "send_json", send_json)
    monkeypatch.setattr(timeseries, "_cache_key", lambda *args: ("page",))
    return bodies


@pytest.mark.parametrize("entries", [0, 8])
async def test_requests_at_once_share_one_render(entries: int, sent: list[bytes]) -> None:
    ctx, render = _ctx(entries), _Render()
    asks = [
        asyncio.create_task(timeseries._cached(ctx, None, None, None, render))  # type: ignore[arg-type]
        for _ in range(3)
    ]
    for _ in range(20):
        await asyncio.sleep(0)
    render.release.set()
    await asyncio.gather(*asks)
    assert render.calls == 1
    assert sent == [b'{"page": 1}'] * 3
    assert ctx.rendering == {}


async def test_a_render_under_an_old_gap_plan_stays_out_of_the_new_cache(
    sent: list[bytes],
) -> None:
    ctx, render = _ctx(8), _Render()
    ask = asyncio.create_task(timeseries._cached(ctx, None, None, None, render))  # type: ignore[arg-type]
    for _ in range(20):
        await asyncio.sleep(0)
    old_cache = ctx.cache
    ctx.cache, ctx.rendering = PageCache(8), {}  # what set_gaps does
    render.release.set()
    await ask
    assert old_cache.get(("page",)) is not None
    assert ctx.cache.get(("page",)) is None


@pytest.mark.parametrize("after", [{}, {"metadata": {"depth": 12.5}, "citations": [None]}])
def test_a_member_spliced_in_as_text_reads_as_dumps_of_the_whole(after: dict[str, Any]) -> None:
    before = {"messages": [], "next": None, "queryUrl": "https://x/api?a=1&b=2"}
    value = [{"values": [1.5, float("nan"), -0.0], "sensorCode": "temp"}]
    spliced = timeseries._with_member(before, "sensorData", dumps(value), after)
    assert spliced == dumps({**before, "sensorData": value, **after})
