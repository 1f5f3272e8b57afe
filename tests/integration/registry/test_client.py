"""RegistryClient against the registry emulator over a real socket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.emulator.registry import (
    DEFAULT_EMAIL,
    DEFAULT_HARVEST_IDS,
    DEFAULT_PASSWORD,
    OTHER_HARVEST_ID,
)
from pipeline.exceptions import RegistryAuthError, RegistryError
from pipeline.registry import HarvestPhase, RegistryClient, password_digest
from tests.integration.registry.conftest import RegistryServer, StartRegistry

HARVEST = DEFAULT_HARVEST_IDS[0]


def make_client(server: RegistryServer, password: str = DEFAULT_PASSWORD) -> RegistryClient:
    return RegistryClient(
        server.base_url, DEFAULT_EMAIL, password, attempts=3, backoff_base=0.01, backoff_cap=0.05
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_login_sends_only_the_lowercase_sha256_digest(start_registry: StartRegistry) -> None:
    bodies: list[bytes] = []

    @web.middleware
    async def spy(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        bodies.append(await request.read())
        return await handler(request)

    server = await start_registry(middlewares=[spy])
    async with make_client(server) as client:
        await client.trigger(HARVEST)
    login = json.loads(next(body for body in bodies if body))  # the trigger reads first
    assert login == {
        "email": DEFAULT_EMAIL,
        "password": password_digest(DEFAULT_PASSWORD),
        "hashed": True,
    }
    assert login["password"] == login["password"].lower()
    assert not any(DEFAULT_PASSWORD.encode() in body for body in bodies)


async def test_token_is_cached_and_reused(registry: RegistryServer) -> None:
    async with make_client(registry) as client:
        await client.trigger(HARVEST)
        await client.trigger(DEFAULT_HARVEST_IDS[1])
    assert registry.state.logins == 1
    assert [h for h, _ in registry.state.triggers] == [HARVEST, DEFAULT_HARVEST_IDS[1]]


async def test_invalidated_token_costs_exactly_one_relogin(registry: RegistryServer) -> None:
    async with make_client(registry) as client:
        await client.trigger(HARVEST)
        registry.state.invalidate_tokens()
        await client.trigger(HARVEST)
        await client.trigger(HARVEST)
    assert registry.state.logins == 2
    assert len(registry.state.triggers) == 3


async def test_wrong_password_is_a_clear_auth_error_without_secrets(
    registry: RegistryServer,
) -> None:
    async with make_client(registry, password="not-the-password") as client:
        with pytest.raises(RegistryAuthError) as caught:
            await client.trigger(HARVEST)
    message = str(caught.value)
    assert caught.value.status == 401
    assert "wrong email or password" in message
    assert DEFAULT_EMAIL in message
    assert "not-the-password" not in message
    assert password_digest("not-the-password") not in message
    assert "not-the-password" not in repr(client)
    assert registry.state.triggers == []


async def test_non_member_is_auth_error_after_one_relogin(registry: RegistryServer) -> None:
    # The 401 body differs ({"status":"Unauthorized"}) but the status code decides.
    async with make_client(registry) as client:
        with pytest.raises(RegistryAuthError, match="may not trigger"):
            await client.trigger(OTHER_HARVEST_ID)
    assert registry.state.logins == 2
    assert registry.state.triggers == []


async def test_unknown_harvest_is_registry_error_404(registry: RegistryServer) -> None:
    async with make_client(registry) as client:
        with pytest.raises(RegistryError) as caught:
            await client.trigger("nOsUcHhArVeSt2345")
        assert caught.value.status == 404
        with pytest.raises(RegistryError) as read:
            await client.harvest("nOsUcHhArVeSt2345")
        assert read.value.status == 404


async def test_transient_500_is_retried_then_succeeds(registry: RegistryServer) -> None:
    registry.state.fail_next_triggers(2)
    async with make_client(registry) as client:
        await client.trigger(HARVEST)
    assert len(registry.state.triggers) == 1


async def test_retries_are_bounded(registry: RegistryServer) -> None:
    registry.state.fail_next_triggers(10)
    async with make_client(registry) as client:
        with pytest.raises(RegistryError) as caught:
            await client.trigger(HARVEST)
    assert caught.value.status == 500
    assert "after 3 attempts" in str(caught.value)
    assert not isinstance(caught.value, RegistryAuthError)


async def test_connection_refused_is_retried_then_registry_error() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    async with RegistryClient(
        base, DEFAULT_EMAIL, DEFAULT_PASSWORD, attempts=2, backoff_base=0.01
    ) as client:
        with pytest.raises(RegistryError, match="unavailable after 2 attempts") as caught:
            await client.harvest(HARVEST)
    assert caught.value.status is None


async def test_harvest_document_is_typed_and_keeps_unknown_fields(
    registry: RegistryServer,
) -> None:
    async with make_client(registry) as client:
        other = await client.harvest(OTHER_HARVEST_ID)
        fresh = await client.harvest(HARVEST)
        await client.trigger(HARVEST)
        queued = await client.harvest(HARVEST)
    assert other.id == OTHER_HARVEST_ID
    assert other.phase is HarvestPhase.FINISHED
    assert other.model_extra == {"ckan_harvest_url": "https://data.ioos.us/harvest/other-ra-waf"}
    assert other.raw()["_id"] == OTHER_HARVEST_ID
    assert fresh.phase is HarvestPhase.NEVER
    assert queued.phase is HarvestPhase.PENDING
    assert queued.in_progress
    assert registry.state.logins == 1  # reading documents needs no login


async def test_close_logs_out_and_revokes_token(registry: RegistryServer) -> None:
    client = make_client(registry)
    await client.trigger(HARVEST)
    assert len(registry.state.tokens) == 1
    await client.close()
    assert registry.state.tokens == {}
    assert registry.state.logouts == 1
    assert not client.logged_in


async def test_close_without_login_sends_nothing(registry: RegistryServer) -> None:
    async with make_client(registry):
        pass
    assert registry.state.logins == registry.state.logouts == 0


async def test_logout_after_server_side_invalidation_does_not_raise(
    registry: RegistryServer,
) -> None:
    client = make_client(registry)
    await client.login()
    registry.state.invalidate_tokens()
    await client.close()
    assert not client.logged_in
    assert registry.state.logouts == 0


async def test_given_session_is_left_open(registry: RegistryServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with RegistryClient(
            registry.base_url, DEFAULT_EMAIL, DEFAULT_PASSWORD, session
        ) as client:
            await client.trigger(HARVEST)
        assert not session.closed
        async with session.get(f"{registry.base_url}/api/v1/Harvests") as resp:
            body: dict[str, Any] = await resp.json()
        assert len(body["data"]) == 3


async def test_concurrent_triggers_after_invalidation_share_one_relogin(
    registry: RegistryServer,
) -> None:
    async with make_client(registry) as client:
        await client.login()
        registry.state.invalidate_tokens()
        await asyncio.gather(*(client.trigger(HARVEST) for _ in range(5)))
    assert registry.state.logins == 2
    assert len(registry.state.triggers) == 5


@pytest.mark.parametrize("kind", ["reset", "truncate"])
async def test_trigger_whose_answer_is_lost_is_not_sent_again(kind: str) -> None:
    # Each trigger queues a harvest job (ioos/catalog-harvest-registry harvests/api.js calls
    # the harvester, whose api.py enqueues with no guard). Here the registry queues the job,
    # then the answer is cut: the client must see "pending" and not queue a second job.
    rule = {"kind": kind, "endpoint": "registry:/api/v2/harvests/{id}/harvest", "times": 1}
    if kind == "truncate":
        rule["fraction"] = 0.5
    config = EmulatorConfig(
        seed=3, onc_port=0, registry_port=0, auth_delay=(0.0, 0.0), faults={"rules": [rule]}
    )
    async with Emulator(config) as emu:
        client = RegistryClient(
            emu.registry_url, DEFAULT_EMAIL, DEFAULT_PASSWORD, backoff_base=0.01, backoff_cap=0.05
        )
        async with client:
            await client.trigger(HARVEST)
            document = await client.harvest(HARVEST)
        triggers = [h for h, _ in emu.registry.triggers]
    assert triggers == [HARVEST]
    assert document.in_progress
