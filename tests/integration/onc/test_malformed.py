"""Malformed and schema-drifted replies become clear typed errors with the URL redacted."""

from __future__ import annotations

import pytest

from pipeline.exceptions import OncError
from pipeline.onc import DataSource, ScalarQuery
from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from tests.integration.onc.conftest import TOKEN, client, running_emulator

QUERY = ScalarQuery(
    source=DataSource(location_code="BACAX", device_category_code="CTD"),
    date_from="2026-11-20T00:00:00.000Z",
    date_to="2026-11-20T00:10:00.000Z",
)


@pytest.mark.parametrize(
    ("body", "error", "says"),
    [
        ("html", OncMalformedReply, "JSON"),
        ("empty", OncMalformedReply, "empty"),
        ("truncated-json", OncMalformedReply, "JSON"),
        ("wrong-types", OncSchemaError, "sensorData"),
    ],
)
async def test_malformed_pages_raise_typed_errors(
    body: str, error: type[OncError], says: str
) -> None:
    async with running_emulator() as emu:
        emu.faults = {"rules": [{"kind": "malformed", "endpoint": "scalardata.*", "body": body}]}
        async with client(emu, max_attempts=2) as onc:
            with pytest.raises(error) as info:
                async for _ in onc.scalar_pages(QUERY):
                    pass
    text = str(info.value)
    assert says.lower() in text.lower()
    assert TOKEN not in text
    assert info.value.url is not None
    assert "REDACTED" in info.value.url
