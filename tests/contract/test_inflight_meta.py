"""Contract: in-flight work records and the generic metadata area."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pipeline.state import StateStore


async def test_inflight_put_get_replace_delete(store: StateStore) -> None:
    payload: dict[str, Any] = {
        "dpRequestId": 123,
        "dpRunId": [456, 457],
        "downloaded": {"1": "file.csv", "2": None},
        "ratio": 0.25,
        "ok": True,
        "name": "ünïcode",
    }
    await store.put_inflight("s1", "2026-11-24", payload)
    await store.put_inflight("s1", "2026-11-23", {"n": 0})
    assert await store.get_inflight("s1") == {"2026-11-23": {"n": 0}, "2026-11-24": payload}
    assert list(await store.get_inflight("s1")) == ["2026-11-23", "2026-11-24"]

    await store.put_inflight("s1", "2026-11-24", {"dpRequestId": 123, "downloaded": {}})
    assert (await store.get_inflight("s1"))["2026-11-24"] == {"dpRequestId": 123, "downloaded": {}}

    await store.delete_inflight("s1", "2026-11-24")
    await store.delete_inflight("s1", "not-there")
    assert await store.get_inflight("s1") == {"2026-11-23": {"n": 0}}
    assert await store.get_inflight("other") == {}


async def test_inflight_payload_is_a_copy(store: StateStore) -> None:
    payload: dict[str, Any] = {"files": ["a"]}
    await store.put_inflight("s1", "k", payload)
    payload["files"].append("b")
    got = await store.get_inflight("s1")
    got["k"]["files"].append("c")
    assert await store.get_inflight("s1") == {"k": {"files": ["a"]}}


async def test_non_json_payloads_are_refused_and_nothing_is_stored(store: StateStore) -> None:
    with pytest.raises(TypeError):
        await store.put_inflight("s1", "k", {"when": object()})
    with pytest.raises(ValueError, match="JSON"):
        await store.put_inflight("s1", "k", {"x": math.nan})
    with pytest.raises(TypeError):
        await store.put_meta("ns", "k", {"s": {1, 2}})
    assert await store.get_inflight("s1") == {}
    assert await store.get_meta("ns", "k") is None


async def test_meta_put_get_replace_and_namespaces(store: StateStore) -> None:
    assert await store.get_meta("registry", "ds1") is None
    await store.put_meta("registry", "ds1", {"pending": ["2026-11-24"], "count": 1})
    await store.put_meta("erddap", "ds1", {"flag": "hard"})
    assert await store.get_meta("registry", "ds1") == {"pending": ["2026-11-24"], "count": 1}
    await store.put_meta("registry", "ds1", {"pending": []})
    assert await store.get_meta("registry", "ds1") == {"pending": []}
    assert await store.get_meta("erddap", "ds1") == {"flag": "hard"}
    assert await store.get_meta("erddap", "ds2") is None
