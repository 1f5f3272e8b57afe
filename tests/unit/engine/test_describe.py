"""DatasetMeta from real discovery payloads: position per deployment, attributes, history."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.describe import build_dataset_meta
from pipeline.onc.models import Deployment, DeviceCategory, Location, Property
from pipeline.outputs.metadata import DEFAULT_ATTRIBUTES
from pipeline.settings import OutputSettings, TimeSeriesStream
from tests.unit.outputs.helpers import ctd_meta

SAMPLES = Path(__file__).parents[2] / "fixtures" / "onc-samples"


def sample(name: str) -> list[Any]:
    data: list[Any] = json.loads((SAMPLES / name).read_text())
    return data


def test_meta_from_the_real_bacax_payloads() -> None:
    stream = TimeSeriesStream(
        name="bacax", kind="scalardata", location_code="BACAX", device_category_code="CTD"
    )
    meta = build_dataset_meta(
        stream,
        OutputSettings(attributes={"license": "CC0"}),
        base_url="https://data.oceannetworks.ca/",
        deployments=[
            Deployment.from_api(d, "d") for d in sample("deployments_BACAX_CTD_docstring.json")
        ],
        categories=[
            DeviceCategory.from_api(c, "c") for c in sample("deviceCategories_CTD_docstring.json")
        ],
        properties=[
            Property.from_api(p, "p")
            for p in sample("properties_BACAX_CTD_conductivity_docstring.json")
        ],
    )
    assert meta.dataset_id == "onc_bacax_ctd"
    assert meta.instrument == "Conductivity Temperature Depth"
    assert meta.attributes["title"] == "Ocean Networks Canada BACAX Conductivity Temperature Depth"
    assert meta.attributes["license"] == "CC0"  # settings override defaults
    assert meta.attributes["doi"] == "10.80242/14d156f2-0146-40e5-a77e-f3637fb6b517"
    assert meta.attributes["platform_id"] == "BACAX"
    assert meta.attributes["Conventions"] == DEFAULT_ATTRIBUTES["Conventions"]
    position = meta.position_at(datetime(2015, 1, 1, tzinfo=UTC))
    assert (position.latitude, position.depth) == (48.316583, 982.0)
    assert meta.properties["conductivity"].uom == "S/m"
    line = meta.history_line(
        datetime(2026, 11, 20, 6, tzinfo=UTC),
        datetime(2026, 11, 20, tzinfo=UTC),
        datetime(2026, 11, 21, tzinfo=UTC),
    )
    assert line == (
        "2026-11-20T06:00:00Z onc-pipeline 0.1.0: harvested https://data.oceannetworks.ca"
        "/api/scalardata/location?locationCode=BACAX&deviceCategoryCode=CTD"
        "&dateFrom=2026-11-20T00:00:00Z&dateTo=2026-11-21T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("when", "device"),
    [
        (datetime(2015, 1, 1, tzinfo=UTC), "SBECTD16p6002"),
        (datetime(2015, 9, 17, 20, tzinfo=UTC), "SBECTD16p6002"),  # between: the one before
        (datetime(2026, 1, 1, tzinfo=UTC), "SBECTD16p7128"),
        (datetime(2000, 1, 1, tzinfo=UTC), "SBECTD16p6002"),  # before all: the first
    ],
)
def test_position_follows_the_deployments(when: datetime, device: str) -> None:
    assert ctd_meta().position_at(when).device_code == device


def test_publisher_defaults_only_without_operator_publisher() -> None:
    assert ctd_meta().attributes["publisher_email"] == "info@oceannetworks.ca"
    mine = ctd_meta(publisher_name="Example RA", publisher_email="data@example.org")
    assert mine.attributes["publisher_email"] == "data@example.org"
    assert "publisher_phone" not in mine.attributes


def test_location_position_when_deployments_have_none() -> None:
    stream = TimeSeriesStream(name="x", kind="rawdata", device_code="BPR-Folger-59")
    meta = build_dataset_meta(
        stream,
        OutputSettings(),
        base_url="https://onc",
        locations=[
            Location.from_api(loc, "l") for loc in sample("locations_NC89_raw_string_booleans.json")
        ],
    )
    assert meta.endpoint == "/api/rawdata/device"
    assert meta.source_params == {"deviceCode": "BPR-Folger-59"}
    assert meta.positions[0].latitude == meta.positions[0].latitude  # a real number
    assert meta.platform_code == "NC89"


def test_no_position_is_an_error_when_asked() -> None:
    stream = TimeSeriesStream(name="x", kind="scalardata", device_code="D-1")
    meta = build_dataset_meta(stream, OutputSettings(), base_url="https://onc")
    assert meta.attributes["platform_id"] == "D1"
    with pytest.raises(ValueError, match="no deployment"):
        meta.position_at(datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_moved_device_is_described_by_where_it_stands_now() -> None:
    """A device that stood at ZZZ01 until 2020 and stands at AAA01 since: the platform is
    AAA01 (the alphabetical order of location codes must not decide)."""
    from types import SimpleNamespace

    from pipeline.engine.describe import discover_dataset_meta

    def deployment(location: str, begin: str, end: str | None) -> Deployment:
        raw = dict(sample("deployments_BACAX_CTD_docstring.json")[0])
        raw.update({"locationCode": location, "deviceCode": "CTD-1", "begin": begin, "end": end})
        return Deployment.from_api(raw, "d")

    def location(code: str, name: str) -> Location:
        return Location.from_api({"locationCode": code, "locationName": name}, "l")

    class Discovery:
        options = SimpleNamespace(base_url="https://data.oceannetworks.ca/")

        async def deployments(self, **_: object) -> list[Deployment]:
            return [
                deployment("ZZZ01", "2018-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z"),
                deployment("AAA01", "2022-01-01T00:00:00.000Z", None),
            ]

        async def locations(self, *, location_code: str) -> list[Location]:
            return [location(location_code, f"Site {location_code}")]

        async def device_categories(self, **_: object) -> list[DeviceCategory]:
            return []

        async def properties(self, **_: object) -> list[Property]:
            return []

    stream = TimeSeriesStream(name="ctd", kind="scalardata", device_code="CTD-1")
    meta = await discover_dataset_meta(Discovery(), stream, OutputSettings())  # type: ignore[arg-type]
    assert meta.platform_code == "AAA01"
    assert meta.platform_name == "Site AAA01"


class _GatedDiscovery:
    """Discovery whose calls are recorded when asked and answered only when `release` is set
    (deployments stand at BACAX, in category CTD)."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.options = SimpleNamespace(base_url="https://data.oceannetworks.ca/")
        self.release = asyncio.Event()
        self.asked: list[str] = []

    async def _answer(self, name: str) -> None:
        self.asked.append(name)
        await self.release.wait()

    async def deployments(self, **_: object) -> list[Deployment]:
        await self._answer("deployments")
        raw = dict(sample("deployments_BACAX_CTD_docstring.json")[0])
        return [Deployment.from_api(raw, "d")]

    async def locations(self, **_: object) -> list[Location]:
        await self._answer("locations")
        return []

    async def device_categories(self, **_: object) -> list[DeviceCategory]:
        await self._answer("device_categories")
        return []

    async def properties(self, **_: object) -> list[Property]:
        await self._answer("properties")
        return []


@pytest.mark.parametrize(
    ("stream", "at_once"),
    [
        # A device stream needs the deployments' answer for its locations and category only.
        (
            TimeSeriesStream(name="ctd", kind="scalardata", device_code="CTD-1"),
            {"deployments", "properties"},
        ),
        # A location stream names everything it asks about.
        (
            TimeSeriesStream(
                name="ctd",
                kind="scalardata",
                location_code="BACAX",
                device_category_code="CTD",
            ),
            {"deployments", "locations", "device_categories", "properties"},
        ),
    ],
)
async def test_describing_asks_what_it_can_at_once(
    stream: TimeSeriesStream, at_once: set[str]
) -> None:
    """Each round trip of describing delays a stream's first page reaching a writer: the
    questions that need no other answer go out together."""
    from pipeline.engine.describe import discover_dataset_meta

    discovery = _GatedDiscovery()
    task = asyncio.create_task(discover_dataset_meta(discovery, stream, OutputSettings()))  # type: ignore[arg-type]
    for _ in range(20):
        await asyncio.sleep(0)
    assert set(discovery.asked) == at_once  # before any answer came back
    discovery.release.set()
    await task
    assert sorted(discovery.asked) == [
        "deployments",
        "device_categories",
        "locations",
        "properties",
    ]


class _SlowDiscovery:
    """Discovery whose `deployments` waits until `release` is set, counting calls in flight."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.options = SimpleNamespace(base_url="https://data.oceannetworks.ca/")
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    async def deployments(self, **_: object) -> list[Deployment]:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return []

    async def locations(self, **_: object) -> list[Location]:
        return []

    async def device_categories(self, **_: object) -> list[DeviceCategory]:
        return []

    async def properties(self, **_: object) -> list[Property]:
        return []


async def test_datasets_are_described_side_by_side_and_each_once() -> None:
    from pipeline.engine.describe import OutputFormats

    discovery = _SlowDiscovery()
    formats = OutputFormats(OutputSettings(), discovery)  # type: ignore[arg-type]
    streams = [
        TimeSeriesStream(name=name, kind="scalardata", device_code=device, dataset_id=dataset)
        for name, device, dataset in (("a", "D1", "ds_a"), ("b", "D2", "ds_b"), ("c", "D3", "ds_a"))
    ]
    tasks = [asyncio.create_task(formats.prepare(stream)) for stream in streams]
    for _ in range(50):  # let every task run up to its first wait
        await asyncio.sleep(0)
    discovery.release.set()
    await asyncio.gather(*tasks)
    assert discovery.most_in_flight == 2  # ds_a and ds_b at once
    assert discovery.calls == 2  # ds_a described once for both of its streams
    assert set(formats.metas) == {"ds_a", "ds_b"}


class _CountingClient:
    """Discovery calls that count their requests and wait for `release`; `fail` raises once."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.options = SimpleNamespace(base_url="https://onc")
        self.release = asyncio.Event()
        self.release.set()
        self.asked: list[tuple[str, dict[str, object]]] = []
        self.fail = False

    async def _answer(self, name: str, filters: dict[str, object]) -> list[Location]:
        self.asked.append((name, filters))
        await self.release.wait()
        if self.fail:
            self.fail = False
            raise RuntimeError("upstream down")
        return [Location.from_api({"locationCode": str(filters.get("location_code"))}, "l")]

    async def locations(self, **filters: object) -> list[Location]:
        return await self._answer("locations", filters)

    async def deployments(self, **filters: object) -> list[Location]:
        return await self._answer("deployments", filters)


async def test_shared_discovery_asks_once_for_the_same_question_at_once() -> None:
    from pipeline.engine.describe import SharedDiscovery

    client = _CountingClient()
    client.release.clear()
    shared = SharedDiscovery(client)  # type: ignore[arg-type]
    same = [asyncio.create_task(shared.locations(location_code="BACAX")) for _ in range(3)]
    other = asyncio.create_task(shared.locations(location_code="NC89"))
    kind = asyncio.create_task(shared.deployments(location_code="BACAX"))
    for _ in range(20):
        await asyncio.sleep(0)
    client.release.set()
    answers = await asyncio.gather(*same)
    assert [a[0].location_code for a in answers] == ["BACAX"] * 3
    assert answers[0] is not answers[1]  # each caller gets its own list
    assert (await other)[0].location_code == "NC89"
    assert await kind
    assert sorted(client.asked, key=str) == sorted(
        [
            ("locations", {"location_code": "BACAX"}),
            ("locations", {"location_code": "NC89"}),
            ("deployments", {"location_code": "BACAX"}),
        ],
        key=str,
    )


async def test_shared_discovery_shares_a_failure_with_its_waiters_and_asks_again_after() -> None:
    from pipeline.engine.describe import SHARED_ANSWER_S, SharedDiscovery

    now = [0.0]
    client = _CountingClient()
    client.release.clear()
    client.fail = True
    shared = SharedDiscovery(client, clock=lambda: now[0])  # type: ignore[arg-type]
    first = asyncio.create_task(shared.locations(location_code="X"))
    waiter = asyncio.create_task(shared.locations(location_code="X"))
    for _ in range(20):
        await asyncio.sleep(0)
    client.release.set()
    with pytest.raises(RuntimeError, match="upstream down"):
        await first
    # Waiting on the failed question, it shares the failure: one request in an outage.
    with pytest.raises(RuntimeError, match="upstream down"):
        await waiter
    assert len(client.asked) == 1
    # The failure is not kept: the next caller asks.
    assert (await shared.locations(location_code="X"))[0].location_code == "X"
    assert len(client.asked) == 2
    now[0] = SHARED_ANSWER_S - 1
    await shared.locations(location_code="X")
    assert len(client.asked) == 2  # still fresh: shared
    now[0] = SHARED_ANSWER_S + 1
    await shared.locations(location_code="X")
    assert len(client.asked) == 3  # stale: asked afresh


async def test_a_cancelled_first_caller_does_not_cancel_the_others() -> None:
    from pipeline.engine.describe import SharedDiscovery

    client = _CountingClient()
    client.release.clear()
    shared = SharedDiscovery(client)  # type: ignore[arg-type]
    first = asyncio.create_task(shared.locations(location_code="X"))
    waiter = asyncio.create_task(shared.locations(location_code="X"))
    for _ in range(20):
        await asyncio.sleep(0)
    first.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    client.release.set()
    assert (await waiter)[0].location_code == "X"
    assert first.cancelled()
    assert len(client.asked) == 2
