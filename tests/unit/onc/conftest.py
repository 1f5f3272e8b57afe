"""Fixtures of the Oceans API client unit tests: real sample payloads and fast options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ujson

from pipeline.onc.options import ClientOptions

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "onc-samples"
TOKEN = "5ecret-70ken-0000-1111-222233334444"
BASE = "http://onc.test"


def sample_bytes(name: str) -> bytes:
    """Raw bytes of one real payload (some are not strict JSON)."""
    return (SAMPLES / name).read_bytes()


def sample(name: str) -> Any:
    """One real payload, parsed the way the client parses (bare NaN allowed)."""
    return ujson.loads(sample_bytes(name))


@pytest.fixture
def options_factory() -> Callable[..., ClientOptions]:
    """ClientOptions with fast retries for tests; override any field by keyword."""

    def make(**overrides: Any) -> ClientOptions:
        values: dict[str, Any] = {
            "token": TOKEN,
            "base_url": BASE,
            "backoff_base": 0.001,
            "backoff_max": 0.01,
            "max_rate_per_s": 1000.0,
            "product_poll_min": 0.001,
            "product_poll_max": 0.01,
            "chunk_size": 4096,
        }
        values.update(overrides)
        return ClientOptions(**values)

    return make
