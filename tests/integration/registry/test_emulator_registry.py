"""The registry emulator over a real socket: every route, status code and body shape."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from pipeline.emulator.registry import (
    DEFAULT_EMAIL,
    DEFAULT_HARVEST_IDS,
    DEFAULT_PASSWORD,
    DEFAULT_USER_ID,
    METEOR_ID_LENGTH,
    OTHER_HARVEST_ID,
    RegistryState,
    default_registry_state,
    sha256_hex,
)
from tests.clocks import FakeClock
from tests.integration.registry.conftest import RegistryServer, StartRegistry

HARVEST = DEFAULT_HARVEST_IDS[0]


async def login(
    http: aiohttp.ClientSession, server: RegistryServer, **body: Any
) -> tuple[int, dict[str, Any]]:
    payload = {"email": DEFAULT_EMAIL, "password": sha256_hex(DEFAULT_PASSWORD), "hashed": True}
    payload.update(body)
    async with http.post(f"{server.base_url}/api/v2/login", json=payload) as resp:
        return resp.status, await resp.json()


async def auth_headers(http: aiohttp.ClientSession, server: RegistryServer) -> dict[str, str]:
    status, body = await login(http, server)
    assert status == 200
    return {"X-User-Id": body["data"]["userId"], "X-Auth-Token": body["data"]["authToken"]}


async def trigger(
    http: aiohttp.ClientSession, server: RegistryServer, harvest_id: str, headers: dict[str, str]
) -> tuple[int, Any]:
    url = f"{server.base_url}/api/v2/harvests/{harvest_id}/harvest"
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_hashed_json_login_returns_token_and_user_id(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    status, body = await login(http, registry)
    assert status == 200
    assert body["status"] == "success"
    assert body["data"]["userId"] == DEFAULT_USER_ID
    assert registry.state.authenticate(DEFAULT_USER_ID, body["data"]["authToken"]) is not None


@pytest.mark.parametrize("field", ["email", "username", "user"])
async def test_v1_form_login_with_plaintext_and_each_identity_field(
    start_registry: StartRegistry, http: aiohttp.ClientSession, field: str
) -> None:
    state = default_registry_state()
    state.users[DEFAULT_USER_ID].username = "harvester"
    server = await start_registry(state)
    identity = DEFAULT_EMAIL if field in ("email", "user") else "harvester"
    form = {field: identity, "password": DEFAULT_PASSWORD}
    async with http.post(f"{server.base_url}/api/v1/login", data=form) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"]["userId"] == DEFAULT_USER_ID


@pytest.mark.parametrize(
    "body",
    [
        {"password": "wrong", "hashed": False},
        {"password": sha256_hex("wrong")},
        {"password": sha256_hex(DEFAULT_PASSWORD).upper()},  # digest must be lowercase hex
        {"password": DEFAULT_PASSWORD},  # plaintext sent while claiming hashed
        {"email": "nobody@example.org"},
        # Restivus looks the user up with {'emails.address': email}: an exact match, so an
        # email in another case is an unknown user (kahmali/meteor-restivus lib/auth).
        {"email": DEFAULT_EMAIL.upper()},
        {"email": DEFAULT_EMAIL.capitalize()},
        {"password": None},
    ],
)
async def test_login_refusals_are_401_unauthorized(
    registry: RegistryServer, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    status, answer = await login(http, registry, **body)
    assert status == 401
    assert answer == {"status": "error", "message": "Unauthorized"}
    assert registry.state.tokens == {}


async def test_trigger_queues_harvest_and_records_history(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    headers = await auth_headers(http, registry)
    status, body = await trigger(http, registry, HARVEST, headers)
    assert (status, body) == (200, {"status": "harvesting"})
    assert [h for h, _ in registry.state.triggers] == [HARVEST]
    assert registry.state.harvests[HARVEST]["last_harvest_dt"] == "pending"


async def test_trigger_has_no_guard_every_call_is_a_new_job(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    headers = await auth_headers(http, registry)
    for _ in range(3):
        assert (await trigger(http, registry, HARVEST, headers))[0] == 200
    async with http.get(f"{registry.base_url}/_emulator/registry/triggers") as resp:
        history = await resp.json()
    assert [row["harvest_id"] for row in history] == [HARVEST] * 3


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-User-Id": DEFAULT_USER_ID},
        {"X-Auth-Token": "whatever"},
        {"X-User-Id": DEFAULT_USER_ID, "X-Auth-Token": "not-a-token"},
    ],
)
async def test_trigger_without_valid_headers_is_401_not_logged_in(
    registry: RegistryServer, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, body = await trigger(http, registry, HARVEST, headers)
    assert status == 401
    assert body == {"status": "error", "message": "You must be logged in to do this."}
    assert registry.state.triggers == []


async def test_token_of_another_user_id_is_refused(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    registry.state.add_user("other@example.org", "pw", user_id="oThErUsEr23456789")
    headers = await auth_headers(http, registry)
    headers["X-User-Id"] = "oThErUsEr23456789"
    status, _ = await trigger(http, registry, HARVEST, headers)
    assert status == 401


async def test_trigger_of_foreign_organization_is_401_unauthorized(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    headers = await auth_headers(http, registry)
    status, body = await trigger(http, registry, OTHER_HARVEST_ID, headers)
    assert (status, body) == (401, {"status": "Unauthorized"})
    assert registry.state.triggers == []


async def test_admin_may_trigger_any_organization(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    registry.state.add_user("admin@example.org", "admin-pw", admin=True)
    status, body = await login(
        http, registry, email="admin@example.org", password=sha256_hex("admin-pw")
    )
    assert status == 200
    headers = {"X-User-Id": body["data"]["userId"], "X-Auth-Token": body["data"]["authToken"]}
    assert (await trigger(http, registry, OTHER_HARVEST_ID, headers))[0] == 200


async def test_trigger_of_unknown_harvest_is_404(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    headers = await auth_headers(http, registry)
    status, body = await trigger(http, registry, "nOsUcHhArVeSt2345", headers)
    assert (status, body) == (404, {"status": "Not Found"})


async def test_scripted_trigger_error_is_500_html(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    headers = await auth_headers(http, registry)
    url = f"{registry.base_url}/_emulator/registry/trigger-errors"
    async with http.post(url, json={"count": 1}) as resp:
        assert resp.status == 200
    async with http.get(
        f"{registry.base_url}/api/v2/harvests/{HARVEST}/harvest", headers=headers
    ) as resp:
        assert resp.status == 500
        assert resp.content_type == "text/html"
        assert await resp.text() == "Server error."
    assert (await trigger(http, registry, HARVEST, headers))[0] == 200
    assert len(registry.state.triggers) == 1


async def test_logout_revokes_the_token(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    headers = await auth_headers(http, registry)
    async with http.post(f"{registry.base_url}/api/v2/logout", headers=headers) as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "status": "success",
            "data": {"message": "You've been logged out!"},
        }
    assert registry.state.tokens_of(DEFAULT_USER_ID) == []
    assert (await trigger(http, registry, HARVEST, headers))[0] == 401
    async with http.post(f"{registry.base_url}/api/v2/logout", headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["message"] == "You must be logged in to do this."


async def test_invalidate_tokens_endpoint_revokes_every_token(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    first = await auth_headers(http, registry)
    second = await auth_headers(http, registry)
    assert first["X-Auth-Token"] != second["X-Auth-Token"]  # tokens pile up, one per login
    async with http.post(f"{registry.base_url}/_emulator/registry/invalidate-tokens") as resp:
        assert await resp.json() == {"invalidated": 2}
    for headers in (first, second):
        assert (await trigger(http, registry, HARVEST, headers))[0] == 401


async def test_harvest_progresses_pending_harvesting_date_with_the_clock(
    start_registry: StartRegistry, http: aiohttp.ClientSession, clock: FakeClock[datetime]
) -> None:
    server = await start_registry(default_registry_state(clock=clock))
    server.state.pending_duration, server.state.harvesting_duration = 10.0, 20.0
    headers = await auth_headers(http, server)
    await trigger(http, server, HARVEST, headers)
    url = f"{server.base_url}/api/v1/Harvests/{HARVEST}"

    async def document() -> dict[str, Any]:
        async with http.get(url) as resp:
            assert resp.status == 200
            body = await resp.json()
            assert body["status"] == "success"
            return dict(body["data"])

    assert (await document())["last_harvest_dt"] == "pending"
    clock.advance(10)
    assert (await document())["last_harvest_dt"] == "harvesting"
    clock.advance(20)
    doc = await document()
    assert doc["last_harvest_dt"] == "2026-01-01T00:00:30.000Z"
    assert doc["last_harvest_status"] == "ok"
    assert doc["last_record_count"] == doc["last_good_count"] == server.state.record_count
    assert doc["last_bad_count"] == 0


async def test_trigger_resets_counts_and_status_as_the_harvester_does(
    start_registry: StartRegistry, http: aiohttp.ClientSession, clock: FakeClock[datetime]
) -> None:
    # ioos/catalog-harvesting: the trigger (api.py get_harvest) sets last_harvest_dt "pending"
    # and the three counts to 0; the job (harvest.py download_harvest) sets "harvesting" with
    # last_harvest_status None, then the date with "ok" and counts, or "fail" (counts stay 0).
    server = await start_registry(default_registry_state(clock=clock))
    server.state.pending_duration, server.state.harvesting_duration = 10.0, 20.0
    before = server.state.harvest_document(OTHER_HARVEST_ID)
    assert before is not None
    assert before["last_record_count"] > 0
    assert before["last_harvest_status"] == "ok"
    server.state.users[DEFAULT_USER_ID].admin = True
    server.state.fail_next_harvest(OTHER_HARVEST_ID)
    headers = await auth_headers(http, server)
    assert (await trigger(http, server, OTHER_HARVEST_ID, headers))[0] == 200
    pending = server.state.harvest_document(OTHER_HARVEST_ID)
    assert pending is not None
    assert pending["last_harvest_dt"] == "pending"
    assert pending["last_harvest_status"] == "ok"  # left as it was until the job starts
    counts = ("last_record_count", "last_good_count", "last_bad_count")
    assert [pending[key] for key in counts] == [0, 0, 0]
    clock.advance(10)
    running = server.state.harvest_document(OTHER_HARVEST_ID)
    assert running is not None
    assert (running["last_harvest_dt"], running["last_harvest_status"]) == ("harvesting", None)
    clock.advance(20)
    failed = server.state.harvest_document(OTHER_HARVEST_ID)
    assert failed is not None
    assert failed["last_harvest_status"] == "fail"
    assert failed["last_harvest_dt"] == "2026-01-01T00:00:30.000Z"
    assert [failed[key] for key in counts] == [0, 0, 0]


async def test_fail_next_makes_the_next_harvest_fail_with_counts(
    start_registry: StartRegistry, http: aiohttp.ClientSession, clock: FakeClock[datetime]
) -> None:
    server = await start_registry(default_registry_state(clock=clock))
    async with http.post(
        f"{server.base_url}/_emulator/registry/fail-next", json={"harvest_id": HARVEST}
    ) as resp:
        assert resp.status == 200
    headers = await auth_headers(http, server)
    await trigger(http, server, DEFAULT_HARVEST_IDS[1], headers)  # not the one scripted to fail
    await trigger(http, server, HARVEST, headers)
    clock.advance(60)
    failed = server.state.harvest_document(HARVEST)
    other = server.state.harvest_document(DEFAULT_HARVEST_IDS[1])
    assert failed is not None
    assert other is not None
    assert failed["last_harvest_status"] == "fail"
    assert failed["last_record_count"] == failed["last_bad_count"] == 0  # reset by the trigger
    assert other["last_harvest_status"] == "ok"
    assert other["last_record_count"] == server.state.record_count


async def test_queued_jobs_of_one_harvest_run_one_after_another(clock: FakeClock[datetime]) -> None:
    state = default_registry_state(clock=clock)
    state.pending_duration, state.harvesting_duration = 1.0, 10.0
    state.queue_harvest(HARVEST)
    state.queue_harvest(HARVEST)
    clock.advance(11)  # first job done, second started at its end
    doc = state.harvest_document(HARVEST)
    assert doc is not None
    assert doc["last_harvest_dt"] == "harvesting"
    clock.advance(10)
    doc = state.harvest_document(HARVEST)
    assert doc is not None
    assert doc["last_harvest_dt"] == "2026-01-01T00:00:21.000Z"


async def test_harvest_list_and_document_shapes(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{registry.base_url}/api/v1/Harvests") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "success"
    ids = {doc["_id"] for doc in body["data"]}
    assert ids == {*DEFAULT_HARVEST_IDS, OTHER_HARVEST_ID}
    assert all(len(i) == METEOR_ID_LENGTH for i in ids)
    fields = {
        "_id", "name", "url", "organization", "harvest_type", "harvest_interval", "publish",
        "harvest_contact", "last_harvest_dt", "last_harvest_status", "last_record_count",
        "last_good_count", "last_bad_count",
    }  # fmt: skip
    assert all(fields <= doc.keys() for doc in body["data"])
    async with http.get(f"{registry.base_url}/api/v1/Harvests/{OTHER_HARVEST_ID}") as resp:
        assert (await resp.json())["data"]["ckan_harvest_url"].startswith("https://")
    async with http.get(f"{registry.base_url}/api/v1/Harvests/nOsUcHhArVeSt2345") as resp:
        assert resp.status == 404
        assert await resp.json() == {"status": "fail", "message": "Item not found"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/v2/login", "POST"),
        ("DELETE", "/api/v2/logout", "GET, POST"),
        ("POST", f"/api/v2/harvests/{HARVEST}/harvest", "GET"),
        ("POST", "/api/v1/Harvests", "GET"),
        ("PUT", f"/api/v1/Harvests/{HARVEST}", "GET"),
    ],
)
async def test_wrong_method_on_known_path_is_405_with_allow(
    registry: RegistryServer, http: aiohttp.ClientSession, method: str, path: str, allow: str
) -> None:
    async with http.request(method, registry.base_url + path) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == allow
        assert await resp.json() == {"status": "error", "message": "API endpoint does not exist"}


async def test_auth_refusals_wait_for_the_configured_delay(
    start_registry: StartRegistry, http: aiohttp.ClientSession
) -> None:
    server = await start_registry(auth_delay=(0.05, 0.06))
    started = time.monotonic()
    status, _ = await login(http, server, password="wrong", hashed=False)
    assert status == 401
    assert time.monotonic() - started >= 0.05  # a lower bound only: the delay happened


async def test_middlewares_wrap_every_route(
    start_registry: StartRegistry, http: aiohttp.ClientSession
) -> None:
    seen: list[str] = []

    @web.middleware
    async def spy(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(request.path)
        return await handler(request)

    server = await start_registry(RegistryState(), middlewares=[spy])
    async with http.get(f"{server.base_url}/api/v1/Harvests") as resp:
        assert (await resp.json())["data"] == []
    assert seen == ["/api/v1/Harvests"]


async def test_concurrent_logins_issue_distinct_tokens(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    answers = await asyncio.gather(*(login(http, registry) for _ in range(5)))
    tokens = {body["data"]["authToken"] for _, body in answers}
    assert len(tokens) == 5
    assert len(registry.state.tokens_of(DEFAULT_USER_ID)) == 5


async def test_introspection_calls_validate_their_input(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    base = f"{registry.base_url}/_emulator/registry"
    async with http.post(f"{base}/fail-next", json={"harvest_id": "nOsUcHhArVeSt2345"}) as resp:
        assert resp.status == 404
    async with http.post(f"{base}/trigger-errors", json={"count": "many"}) as resp:
        assert resp.status == 400
    async with http.post(f"{base}/fail-next") as resp:  # no body: the next harvest of any id
        assert await resp.json() == {"fail_next": None}
    async with http.get(f"{base}/fail-next") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"


async def test_fail_next_without_id_fails_whichever_harvest_runs_next(
    clock: FakeClock[datetime],
) -> None:
    state = default_registry_state(clock=clock)
    state.fail_next_harvest()
    state.queue_harvest(DEFAULT_HARVEST_IDS[1])
    state.queue_harvest(HARVEST)
    clock.advance(60)
    first = state.harvest_document(DEFAULT_HARVEST_IDS[1])
    second = state.harvest_document(HARVEST)
    assert first is not None
    assert second is not None
    assert (first["last_harvest_status"], second["last_harvest_status"]) == ("fail", "ok")
