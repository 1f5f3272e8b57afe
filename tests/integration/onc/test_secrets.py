"""No log line, exception text or metric ever contains the token, even under faults."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import structlog

from pipeline.exceptions import OncAuthError, OncError, OncRequestError
from pipeline.onc import ClientOptions, DataSource, OncClient, ScalarQuery
from tests.integration.onc.conftest import TOKEN, client, running_emulator
from tests.integration.onc.workload import harvest_and_verify
from tests.unit.onc.recording import RecordingMetrics


def rendered(exc: BaseException) -> str:
    """Everything a traceback of `exc` would print, causes and contexts included."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(vars(exc))


async def test_token_never_leaks(tmp_path: Path) -> None:
    metrics = RecordingMetrics()
    failures: list[BaseException] = []
    with structlog.testing.capture_logs() as logs:
        async with running_emulator(faults="hostile", seed=3) as emu:
            async with client(emu, metrics=metrics) as onc:
                await harvest_and_verify(emu, onc, tmp_path)
                assert TOKEN not in repr(onc)
                assert TOKEN not in repr(onc.options)
                query = ScalarQuery(
                    DataSource(location_code="BACAX", device_category_code="CTD"),
                    "2020-01-02T00:00:00.000Z",
                    "2020-01-01T00:00:00.000Z",
                )
                with pytest.raises(OncRequestError) as bad:
                    _ = [p async for p in onc.scalar_pages(query)]
                failures.append(bad.value)
            wrong = ClientOptions(token=TOKEN[::-1], base_url=emu.onc_url)
            async with OncClient(wrong, metrics=metrics) as onc:
                with pytest.raises(OncAuthError) as auth:
                    await onc.locations()
                failures.append(auth.value)
            emu.faults = {"rules": [{"kind": "status", "endpoint": "*", "status": 500}]}
            async with client(emu, metrics=metrics, max_attempts=2) as onc:
                with pytest.raises(OncError) as down:
                    await onc.devices()
                failures.append(down.value)
    assert metrics.retries  # hostile faults fired, so retry logs exist to be scanned
    assert any(e["event"] == "onc_request_retry" for e in logs)
    for secret in (TOKEN, TOKEN[::-1]):
        assert secret not in repr(logs)
        assert secret not in metrics.text()
        for exc in failures:
            assert secret not in rendered(exc)
    assert all(isinstance(exc, OncError) and exc.url for exc in failures)
    assert all("token=REDACTED" in str(exc) for exc in failures)
