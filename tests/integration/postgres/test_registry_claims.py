"""Three instances, one PostgreSQL: a burst of new data gives one registry trigger, not three."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

from pipeline.registry.notifier import RegistryNotifier
from tests.integration.postgres.conftest import StoreFactory
from tests.integration.registry.conftest import StartRegistry
from tests.integration.registry.test_notifier import (
    HARVEST_A,
    HARVEST_B,
    MAPPING,
    event,
    fast_state,
    make_notifier,
    running,
    triggered,
    wait_until,
)


async def test_three_instances_trigger_each_harvest_once_per_batch(
    start_registry: StartRegistry, open_store: StoreFactory
) -> None:
    server = await start_registry(fast_state())
    stores = [await open_store() for _ in range(3)]
    notifiers: list[RegistryNotifier] = [
        make_notifier(server, store=store, claims=store) for store in stores
    ]
    async with AsyncExitStack() as stack:
        for notifier in notifiers:
            await stack.enter_async_context(running(notifier))
        # Every instance publishes data of every dataset at once, as three daemons sharing
        # the streams of one platform would.
        datasets = list(MAPPING)
        for n in range(60):
            for notifier in notifiers:
                await notifier.publish(event(datasets[n % len(datasets)], n))
        await wait_until(lambda: len(server.state.triggers) >= 2)
        await asyncio.sleep(1.5)  # several debounce periods: no instance may send another
    assert Counter(triggered(server.state)) == {HARVEST_A: 1, HARVEST_B: 1}
