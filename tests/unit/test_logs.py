"""Logging: JSON lines, stdlib routing, and redaction of every kind of secret."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from pipeline.logs import bind, configure_logging, unbind
from pipeline.redaction import REDACTOR, redact_url

TOKEN = "5f1e3c1a-9d2b-4c7e-8a6f-0b1c2d3e4f50"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=out, secrets=[TOKEN, PASSWORD])
    yield out
    REDACTOR.clear()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_with_iso_utc_time_and_context(output: io.StringIO) -> None:
    bind(stream="bacax-ctd", run_id="r1")
    structlog.get_logger("t").info("page_fetched", rows=10)
    unbind("stream", "run_id")
    [line] = lines(output)
    assert line["event"] == "page_fetched"
    assert line["rows"] == 10
    assert line["stream"] == "bacax-ctd"
    assert line["level"] == "info"
    assert str(line["timestamp"]).endswith("Z")


def test_token_in_url_field_and_message_is_removed(output: io.StringIO) -> None:
    log = structlog.get_logger("t")
    url = f"https://data.oceannetworks.ca/api/scalardata/location?locationCode=BACAX&token={TOKEN}"
    log.info("request", url=url, note=f"see {url}")
    log.warning("unregistered", url="https://x/api?token=some-other-token-value&a=1")
    text = output.getvalue()
    assert TOKEN not in text
    assert "some-other-token-value" not in text
    assert "token=REDACTED" in text
    assert "locationCode=BACAX" in text


def test_secret_keys_are_redacted_whatever_their_value(output: io.StringIO) -> None:
    structlog.get_logger("t").info(
        "login", password="p4ss-unregistered", headers={"X-Auth-Token": "abcdef123456"}, user="me"
    )
    [line] = lines(output)
    assert line["password"] == "REDACTED"
    assert line["headers"] == {"X-Auth-Token": "REDACTED"}
    assert line["user"] == "me"


def test_password_hash_is_redacted_too(output: io.StringIO) -> None:
    import hashlib

    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    structlog.get_logger("t").info("body", body=f'{{"password": "{digest}", "hashed": true}}')
    assert digest not in output.getvalue()


def test_exceptions_and_tracebacks_are_scrubbed(output: io.StringIO) -> None:
    def fail(token: str) -> None:
        raise RuntimeError(f"GET failed: https://host/api?token={token}")

    try:
        fail(TOKEN)
    except RuntimeError:
        structlog.get_logger("t").exception("call_failed")
    text = output.getvalue()
    assert "call_failed" in text
    assert "RuntimeError" in text
    assert TOKEN not in text


def test_stdlib_loggers_go_through_the_same_pipeline(output: io.StringIO) -> None:
    logging.getLogger("aiohttp.client").warning("retrying %s", f"/api?token={TOKEN}")
    [line] = lines(output)
    assert line["logger"] == "aiohttp.client"
    assert TOKEN not in json.dumps(line)


def test_level_filters(output: io.StringIO) -> None:
    configure_logging(level="warning", fmt="json", stream=output)
    structlog.get_logger("t").info("hidden")
    structlog.get_logger("t").warning("shown")
    assert [line["event"] for line in lines(output)] == ["shown"]


def test_console_format_is_redacted_too() -> None:
    out = io.StringIO()
    configure_logging(level="info", fmt="console", stream=out, secrets=[TOKEN])
    try:
        structlog.get_logger("t").info("request", url=f"http://h/api?token={TOKEN}")
    finally:
        REDACTOR.clear()
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert "request" in out.getvalue()
    assert TOKEN not in out.getvalue()


def test_redact_url_keeps_other_parameters() -> None:
    assert redact_url("http://h/api?a=1&token=abc&b=2") == "http://h/api?a=1&token=REDACTED&b=2"


def test_console_lines_put_what_a_person_needs_first() -> None:
    """Issue 19 item 8: console lines were 200-300 characters; the rest belongs to JSON."""
    out = io.StringIO()
    configure_logging(level="info", fmt="console", stream=out)
    bind(stream="bacax-ctd", run_id="9a3f6616098d")
    try:
        structlog.get_logger("pipeline.engine.streams.timeseries").info(
            "window_harvested",
            stream="bacax-ctd",
            window="20261205T010000Z_20261205T020000Z",
            fetch_from="2026-12-05T01:00:00+00:00",
            fetch_to="2026-12-05T02:00:00+00:00",
            pages=1,
            new_records=28800,
            records=46080,
            files=3,
            bytes=4044076,
            complete=True,
            elapsed_ms=106,
        )
    finally:
        unbind("stream", "run_id")
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line
    assert len(line) <= 160, (len(line), line)
    assert re.match(r"^\d\d:\d\d:\d\d info +window_harvested bacax-ctd ", line), line
    assert "new_records=28800" in line
    assert "pipeline.engine" not in line
    assert "9a3f6616098d" not in line
