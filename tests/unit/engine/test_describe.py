"""DatasetMeta from real discovery payloads: position per deployment, attributes, history."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.describe import OutputFormats, SharedDiscovery, build_dataset_meta
from pipeline.exceptions import OncUnavailable
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


class CountingDiscovery:
    """A fake OncClient's discovery: counts questions; a device's deployments answer only
    when its gate opens (open unless closed by a test)."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.options = SimpleNamespace(base_url="https://onc")
        self.asked: list[tuple[str, str]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.failures = 0

    async def deployments(self, **filters: object) -> list[Deployment]:
        device = str(filters["device_code"])
        self.asked.append(("deployments", device))
        if device in self.gates:
            await self.gates[device].wait()
        if self.failures:
            self.failures -= 1
            raise OncUnavailable("down", url="https://onc/api/deployments", status=503)
        raw = dict(sample("deployments_BACAX_CTD_docstring.json")[0])
        raw.update({"deviceCode": device, "locationCode": "BACAX"})
        return [Deployment.from_api(raw, "d")]

    async def locations(self, **filters: object) -> list[Location]:
        self.asked.append(("locations", str(filters)))
        return [Location.from_api({"locationCode": "BACAX", "locationName": "Barkley"}, "l")]

    async def device_categories(self, **filters: object) -> list[DeviceCategory]:
        self.asked.append(("device_categories", str(filters)))
        return []

    async def properties(self, **filters: object) -> list[Property]:
        self.asked.append(("properties", str(filters)))
        return []


def _nc_stream(name: str, device: str) -> TimeSeriesStream:
    return TimeSeriesStream(
        name=name, kind="scalardata", device_code=device, dataset_id=name, formats=["netcdf"]
    )


async def test_datasets_are_described_independently_of_each_other() -> None:
    """A dataset whose discovery hangs (ONC slow for one device) does not hold back the
    description, hence the first poll, of another."""
    client = CountingDiscovery()
    client.gates["SLOW-1"] = asyncio.Event()
    formats = OutputFormats(OutputSettings(), client)  # type: ignore[arg-type]
    slow = asyncio.create_task(formats.prepare(_nc_stream("a", "SLOW-1")))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):  # a guard: a shared lock would wait for ever
        await formats.prepare(_nc_stream("b", "FAST-1"))
    assert "b" in formats.metas
    assert "a" not in formats.metas
    client.gates["SLOW-1"].set()
    await slow
    assert set(formats.metas) == {"a", "b"}


async def test_streams_of_one_device_share_its_discovery_answers() -> None:
    client = CountingDiscovery()
    client.gates["CTD-1"] = asyncio.Event()
    formats = OutputFormats(OutputSettings(), client)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(formats.prepare(_nc_stream(f"s{i}", "CTD-1"))) for i in range(5)]
    await asyncio.sleep(0)
    client.gates["CTD-1"].set()
    await asyncio.gather(*tasks)
    await formats.prepare(_nc_stream("other", "CTD-2"))
    assert set(formats.metas) == {"s0", "s1", "s2", "s3", "s4", "other"}
    assert [q for q in client.asked if q[0] == "deployments"] == [
        ("deployments", "CTD-1"),
        ("deployments", "CTD-2"),
    ]
    # Four questions for CTD-1; CTD-2 stands at the same location, in the same category.
    assert len(client.asked) == 6


async def test_a_shared_answer_expires_and_a_failed_question_is_asked_again() -> None:
    client = CountingDiscovery()
    now = [0.0]
    shared = SharedDiscovery(client, ttl_s=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    client.failures = 1
    with pytest.raises(OncUnavailable):
        await shared.deployments(device_code="CTD-1")
    first = await shared.deployments(device_code="CTD-1")  # asked again: the failure is not kept
    first.clear()  # a caller's list is its own
    now[0] = 59.0
    assert len(await shared.deployments(device_code="CTD-1")) == 1
    assert len(client.asked) == 2
    now[0] = 61.0
    await shared.deployments(device_code="CTD-1")
    assert len(client.asked) == 3
