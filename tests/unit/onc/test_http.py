"""OncHttp against scripted odd replies: retries, typed errors, redaction.

Most go through the transport seam (`ScriptedTransport`, no socket); dropped connections and
cut bodies need a real socket (`ScriptedServer`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import structlog
import ujson

from pipeline.exceptions import OncAuthError, OncRequestError, OncUnavailable
from pipeline.onc.errors import OncMalformedReply
from pipeline.onc.http import OncHttp
from pipeline.onc.options import ClientOptions
from pipeline.onc.parsing import decode_json
from pipeline.onc.transport import HandlerTransport, SentRequest, StaticResponse
from tests.unit.onc.conftest import TOKEN, sample
from tests.unit.onc.recording import RecordingMetrics
from tests.unit.onc.scripted import Reply, ScriptedServer, ScriptedTransport

LOCATIONS = "/api/locations"


@pytest.fixture
def server() -> ScriptedTransport:
    return ScriptedTransport()


@pytest.fixture
async def socket_server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


async def test_503_twice_then_success_counts_retries(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    metrics = RecordingMetrics()
    server.add(LOCATIONS, Reply(status=503, headers={"Retry-After": "0"}, body="down"))
    server.add(LOCATIONS, Reply(status=503, body="<html>maintenance</html>"))
    server.add(LOCATIONS, Reply(status=200, json=[{"locationCode": "NC89"}]))
    async with OncHttp(
        options_factory(base_url=server.url), metrics=metrics, transport=server.transport
    ) as http:
        reply = await http.get_json("/api/locations", {"locationCode": "NC89"})
    assert reply.data == [{"locationCode": "NC89"}]
    assert [r[1] for r in metrics.requests] == [503, 503, 200]
    assert metrics.retries == [("/api/locations", "status_503")] * 2


async def test_400_is_typed_with_details_and_not_retried(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(
        LOCATIONS, Reply(status=400, json=sample("error_400_errorCode127_reconstructed.json"))
    )
    async with OncHttp(options_factory(base_url=server.url), transport=server.transport) as http:
        with pytest.raises(OncRequestError) as info:
            await http.get_json("/api/locations", {"locationCode": "BACVP"})
    assert server.count(LOCATIONS) == 1
    err = info.value
    assert err.status == 400
    assert any(e.code == 127 for e in err.errors)
    assert err.errors[0].parameter == "locationCode, deviceCategoryCode, dateFrom, dateTo"
    assert err.url is not None
    assert "token=REDACTED" in err.url
    assert TOKEN not in str(err)


async def test_400_without_errors_key_is_still_clear(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(LOCATIONS, Reply(status=400, json={"message": "cancelled request"}))
    async with OncHttp(options_factory(base_url=server.url), transport=server.transport) as http:
        with pytest.raises(OncRequestError, match="without an errors list: cancelled request"):
            await http.get_json("/api/locations", {})


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_typed_and_not_retried(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport, status: int
) -> None:
    server.add(LOCATIONS, Reply(status=status, json=sample("error_401_invalid_token_wiki.json")))
    async with OncHttp(options_factory(base_url=server.url), transport=server.transport) as http:
        with pytest.raises(OncAuthError) as info:
            await http.get_json("/api/locations", {})
    assert server.count(LOCATIONS) == 1
    assert info.value.status == status


async def test_truncated_json_is_retried(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(LOCATIONS, Reply(status=200, body='[{"locationCode": "NC'))
    server.add(LOCATIONS, Reply(status=200, body='[{"locationCode": "NC89"}]'))
    async with OncHttp(options_factory(base_url=server.url), transport=server.transport) as http:
        reply = await http.get_json("/api/locations", {})
    assert reply.data == [{"locationCode": "NC89"}]
    assert server.count(LOCATIONS) == 2


async def test_html_200_gives_up_after_max_attempts(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(LOCATIONS, Reply(status=200, body="<html>proxy error</html>"))
    async with OncHttp(
        options_factory(base_url=server.url, max_attempts=3), transport=server.transport
    ) as http:
        with pytest.raises(OncMalformedReply, match="HTML"):
            await http.get_json("/api/locations", {})
    assert server.count(LOCATIONS) == 3


async def test_connection_drops_are_retried_then_surface_as_unavailable(
    options_factory: Callable[..., ClientOptions], socket_server: ScriptedServer
) -> None:
    socket_server.add(LOCATIONS, Reply(json=[1, 2, 3], cut_after=3))
    async with OncHttp(options_factory(base_url=socket_server.url, max_attempts=2)) as http:
        with pytest.raises(OncUnavailable, match="network failure") as info:
            await http.get_json("/api/locations", {})
    assert socket_server.count(LOCATIONS) == 2
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert info.value.url is not None
    assert TOKEN not in info.value.url


async def test_404_passthrough(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(LOCATIONS, Reply(status=404, json=sample("error_404_no_data_reconstructed.json")))
    server.add(LOCATIONS, Reply(status=404, json=sample("error_404_no_data_reconstructed.json")))
    async with OncHttp(options_factory(base_url=server.url), transport=server.transport) as http:
        reply = await http.get_json("/api/locations", {}, passthrough=frozenset({404}))
        assert reply.status == 404
        with pytest.raises(OncRequestError) as info:
            await http.get_json("/api/locations", {})
    assert info.value.status == 404
    assert "No metadata/data found" in str(info.value)


async def test_retry_sleep_releases_the_concurrency_slot(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    slow = "/api/devices"
    server.add(slow, Reply(status=503, headers={"Retry-After": "0.3"}, body=""))
    server.add(slow, Reply(status=200, json=["a"]))
    server.add(LOCATIONS, Reply(status=200, json=["b"]))
    finished: list[str] = []
    async with OncHttp(
        options_factory(base_url=server.url, max_concurrency=1), transport=server.transport
    ) as http:

        async def fetch(endpoint: str) -> None:
            reply = await http.get_json(endpoint, {})
            finished.append(reply.data[0])

        first = asyncio.create_task(fetch("/api/devices"))
        await asyncio.sleep(0.05)  # let the first request take the only slot and fail
        await fetch("/api/locations")
        await first
    # With the slot held while sleeping, "b" could only finish after "a".
    assert finished == ["b", "a"]


async def test_no_token_in_logs_errors_or_metrics(
    options_factory: Callable[..., ClientOptions], socket_server: ScriptedServer
) -> None:
    metrics = RecordingMetrics()
    leak = {"errors": [{"errorCode": 127, "errorMessage": f"see ?token={TOKEN}", "parameter": "x"}]}
    socket_server.add(LOCATIONS, Reply(status=500, body=f"boom token={TOKEN}"))
    socket_server.add(LOCATIONS, Reply(body=b"[" * 100, cut_after=10))
    socket_server.add(LOCATIONS, Reply(status=400, json=leak))
    with structlog.testing.capture_logs() as logs:
        async with OncHttp(options_factory(base_url=socket_server.url), metrics=metrics) as http:
            with pytest.raises(OncRequestError) as info:
                await http.get_json("/api/locations", {"locationCode": "NC89"})
    assert len(logs) >= 3
    assert TOKEN not in repr(logs)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value.errors)
    assert TOKEN not in metrics.text()
    assert any(e["event"] == "onc_request_retry" for e in logs)


async def test_retry_after_is_honoured(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(LOCATIONS, Reply(status=429, headers={"Retry-After": "0.3"}, body="slow down"))
    server.add(LOCATIONS, Reply(status=200, json=[]))
    with structlog.testing.capture_logs() as logs:
        async with OncHttp(
            options_factory(base_url=server.url), transport=server.transport
        ) as http:
            await http.get_json(LOCATIONS, {})
    (retry,) = [e for e in logs if e["event"] == "onc_request_retry"]
    assert retry["reason"] == "status_429"
    assert retry["delay_s"] >= 0.3  # backoff_max is 0.01 here: only Retry-After explains it


async def test_maintenance_does_not_use_up_attempts(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    maintenance = Reply(status=503, headers={"Retry-After": "0"}, body="<html>maintenance</html>")
    server.add(LOCATIONS, maintenance, maintenance, maintenance, maintenance, Reply(json=["ok"]))
    async with OncHttp(
        options_factory(base_url=server.url, max_attempts=1), transport=server.transport
    ) as http:
        reply = await http.get_json(LOCATIONS, {})
    assert reply.data == ["ok"]
    assert server.count(LOCATIONS) == 5


async def test_max_attempts_one_means_no_retry_of_5xx(
    options_factory: Callable[..., ClientOptions], server: ScriptedTransport
) -> None:
    server.add(LOCATIONS, Reply(status=500, body="boom"), Reply(json=["ok"]))
    async with OncHttp(
        options_factory(base_url=server.url, max_attempts=1), transport=server.transport
    ) as http:
        with pytest.raises(OncUnavailable) as info:
            await http.get_json(LOCATIONS, {})
    assert info.value.status == 500
    assert server.count(LOCATIONS) == 1


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        # Our own origin: our token, whatever the Location carried.
        ("/api/archivefile/download?filename=a.wav&token=other", "token=" + TOKEN),
        # Another port, host or scheme: no token at all.
        ("http://data.example:8081/f?filename=a.wav&token=" + TOKEN, None),
        ("http://files.example/f?filename=a.wav&token=" + TOKEN, None),
        ("https://data.example/f?filename=a.wav&token=" + TOKEN, None),
    ],
)
def test_a_redirect_carries_the_token_only_to_our_origin(
    location: str, expected: str | None
) -> None:
    from yarl import URL

    http = OncHttp(ClientOptions(token=TOKEN, base_url="http://data.example"))
    current = URL("http://data.example/api/archivefile/download?filename=a.wav&token=" + TOKEN)
    target = http.redirect_target(current, location)
    assert target.query.get("filename") == "a.wav"
    if expected is None:
        assert "token" not in target.query
        assert TOKEN not in str(target)
    else:
        assert target.query.getall("token") == [TOKEN]


async def test_a_followed_redirect_sends_no_token_to_another_origin(
    options_factory: Callable[..., ClientOptions],
) -> None:
    sent: list[SentRequest] = []

    async def handle(request: SentRequest) -> StaticResponse:
        sent.append(request)
        if request.url.host == "onc.test":
            return StaticResponse(302, {"location": f"http://files.example/f?token={TOKEN}"})
        return StaticResponse(200, body=b'["moved"]')

    transport = HandlerTransport(handle)
    async with OncHttp(options_factory(), transport=transport) as http:
        reply = await http.get_json(LOCATIONS, {})
    assert reply.data == ["moved"]
    assert [r.url.host for r in sent] == ["onc.test", "files.example"]
    assert sent[0].url.query["token"] == TOKEN
    assert "token" not in sent[1].url.query


async def test_a_failed_send_is_a_retried_network_error(
    options_factory: Callable[..., ClientOptions],
) -> None:
    metrics = RecordingMetrics()
    failures = [aiohttp.ServerDisconnectedError(), TimeoutError()]

    async def handle(request: SentRequest) -> StaticResponse:
        if failures:
            raise failures.pop(0)
        return StaticResponse(200, body=b"[]")

    transport = HandlerTransport(handle)
    async with OncHttp(options_factory(), metrics=metrics, transport=transport) as http:
        reply = await http.get_json(LOCATIONS, {})
    assert reply.data == []
    assert metrics.retries == [(LOCATIONS, "network")] * 2
    assert [r[1] for r in metrics.requests] == [None, None, 200]


async def test_bodies_are_read_into_one_reused_buffer_cut_to_each_size(
    options_factory: Callable[..., ClientOptions],
) -> None:
    # Longer, shorter (under half: the buffer shrinks), then longer again; several chunks each.
    bodies = [ujson.dumps(list(range(n))).encode() for n in (3000, 1000, 100, 2500)]
    replies = iter(bodies)

    async def handle(request: SentRequest) -> StaticResponse:
        return StaticResponse(200, body=next(replies))

    seen: list[tuple[bytes | bytearray, bytes]] = []  # what the decoder got, kept alive

    def decode(body: bytes | bytearray, *, url: str, status: int | None = None) -> Any:
        seen.append((body, bytes(body)))
        return decode_json(body, url=url, status=status)

    options = options_factory(chunk_size=1024)
    async with OncHttp(options, transport=HandlerTransport(handle)) as http:
        data = [(await http.get_json(LOCATIONS, {}, decode=decode)).data for _ in bodies]
    assert data == [ujson.loads(body) for body in bodies]
    assert [body for _, body in seen] == bodies
    # One request at a time: one buffer for every body of several chunks; the body of one
    # chunk (100 numbers, under 1 kB) is decoded from its chunk and leaves the buffer alone.
    several = [buffer for (buffer, _), body in zip(seen, bodies, strict=True) if len(body) > 1024]
    assert len(several) == 3
    assert all(buffer is several[0] for buffer in several)
    assert not isinstance(seen[2][0], bytearray)


async def test_a_decode_that_raises_does_not_give_its_buffer_back(
    options_factory: Callable[..., ClientOptions],
) -> None:
    # A view of the buffer may live on in the failure's traceback: the buffer is not reused.
    body = ujson.dumps(list(range(3000))).encode()

    async def handle(request: SentRequest) -> StaticResponse:
        return StaticResponse(200, body=body)

    views: list[memoryview] = []

    def failing(raw: bytes | bytearray, *, url: str, status: int | None = None) -> Any:
        views.append(memoryview(raw))
        raise OncMalformedReply("refused", url=url, status=status)

    options = options_factory(chunk_size=1024, max_attempts=1)
    async with OncHttp(options, transport=HandlerTransport(handle)) as http:
        with pytest.raises(OncMalformedReply):
            await http.get_json(LOCATIONS, {}, decode=failing)
        assert len(http.buffers) == 0
        reply = await http.get_json(LOCATIONS, {})  # a fresh buffer: nothing to resize
    assert reply.data == list(range(3000))
    assert views[0].obj is not None
