"""The token never shows in reprs, redacted URLs or redacted free text."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.onc import OncClient
from pipeline.onc.http import OncHttp
from pipeline.onc.options import ClientOptions
from pipeline.redaction import redact_text, redact_url
from tests.unit.onc.conftest import TOKEN


def test_options_and_client_reprs_hide_the_token(
    options_factory: Callable[..., ClientOptions],
) -> None:
    options = options_factory()
    assert TOKEN not in repr(options)
    assert TOKEN not in repr(OncClient(options))
    assert TOKEN not in repr(OncHttp(options))


def test_redact_url_replaces_only_the_token() -> None:
    url = f"https://data.oceannetworks.ca/api/rawdata/location?locationCode=NC89&token={TOKEN}"
    redacted = redact_url(url)
    assert TOKEN not in redacted
    assert "token=REDACTED" in redacted
    assert "locationCode=NC89" in redacted
    assert redact_url("http://x/api?a=1") == "http://x/api?a=1"


def test_redact_text_handles_urls_in_messages_and_bare_secret() -> None:
    text = f"see https://x/api/deployments?token={TOKEN}&a=1 or {TOKEN}"
    cleaned = redact_text(text, TOKEN)
    assert TOKEN not in cleaned
    assert cleaned.count("REDACTED") == 2


def test_wire_and_display_urls(options_factory: Callable[..., ClientOptions]) -> None:
    http = OncHttp(options_factory(base_url="http://onc.test/prefix/"))
    params = {"deviceCode": "BPR_889", "token": "smuggled"}
    wire = http.wire_url("/api/rawdata/device", params)
    assert wire.path == "/prefix/api/rawdata/device"
    assert wire.query.getall("token") == [TOKEN]  # a caller's token never overrides ours
    shown = http.display_url("/api/rawdata/device", params)
    assert TOKEN not in shown
    assert "smuggled" not in shown
    assert "token=REDACTED" in shown


@pytest.mark.parametrize(
    "overrides",
    [{"token": ""}, {"max_concurrency": 0}, {"max_rate_per_s": 0}, {"row_limit": 100_001}],
)
def test_invalid_options_are_refused(
    options_factory: Callable[..., ClientOptions], overrides: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="invalid ClientOptions") as info:
        options_factory(**overrides)
    assert TOKEN not in str(info.value)
