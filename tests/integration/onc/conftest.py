"""Fixtures of the client-against-emulator tests: a real emulator on loopback and a client."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.onc import ClientOptions, OncClient, OncMetrics, ScalarPage

TOKEN = "t0k3n-1e9f3c57-8a4b-4d1e-9c3a-7b2f6d0e5a91"


@asynccontextmanager
async def running_emulator(**config: Any) -> AsyncIterator[Emulator]:
    """An emulator on free loopback ports, closed afterwards."""
    values: dict[str, Any] = {"token": TOKEN, "seed": 7, "onc_port": 0, "registry_port": 0}
    values.update(config)
    async with Emulator(EmulatorConfig(**values)) as emu:
        yield emu


def fast_options(emu: Emulator, **overrides: Any) -> ClientOptions:
    """Client options for tests: quick backoff, a generous rate unless a test sets one."""
    values: dict[str, Any] = {
        "token": TOKEN,
        "base_url": emu.onc_url,
        "backoff_base": 0.01,
        "backoff_max": 0.2,
        "max_rate_per_s": 500.0,
        "max_attempts": 12,
        "read_timeout": 10.0,
        "product_poll_min": 0.05,
        "product_poll_max": 0.2,
    }
    values.update(overrides)
    return ClientOptions(**values)


def client(emu: Emulator, *, metrics: OncMetrics | None = None, **overrides: Any) -> OncClient:
    """A client of `emu` (use as an async context manager)."""
    return OncClient(fast_options(emu, **overrides), metrics=metrics)


Columns = dict[str, tuple[list[str], list[float], list[int]]]


def merge_scalar(pages: Iterable[ScalarPage]) -> Columns:
    """Concatenate the pages of a scalar query per sensor code."""
    out: Columns = {}
    for page in pages:
        for series in page.series:
            times, values, flags = out.setdefault(series.sensor_code, ([], [], []))
            times.extend(series.sample_times)
            values.extend(series.values)
            flags.extend(series.qaqc_flags)
    return out


def truth_columns(truth: dict[str, list[Any]]) -> Columns:
    """Ground truth records as the same columns."""
    return {
        code: ([r.time for r in recs], [r.value for r in recs], [r.flag for r in recs])
        for code, recs in truth.items()
    }


def same_values(left: list[float], right: list[float]) -> bool:
    """Equal element by element, NaN equal to NaN."""
    return len(left) == len(right) and all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(left, right, strict=True)
    )


def assert_same_columns(got: Columns, want: Columns) -> None:
    """The client's columns are exactly the ground truth (times, values with NaN, flags)."""
    assert sorted(got) == sorted(want)
    for code, (times, values, flags) in want.items():
        g_times, g_values, g_flags = got[code]
        assert g_times == times, code
        assert g_flags == flags, code
        assert same_values(g_values, values), code
