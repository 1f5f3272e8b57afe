"""Synthetic readings and metadata for writer unit tests (no emulator, no network)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pipeline.engine.describe import build_dataset_meta
from pipeline.onc.models import Citation, Deployment, DeviceCategory, Location, Property
from pipeline.outputs.metadata import DatasetMeta
from pipeline.records import SensorInfo
from pipeline.settings import OutputSettings, TimeSeriesStream
from pipeline.times import format_onc_time

DAY = datetime(2026, 11, 20, tzinfo=UTC)
TEMP = SensorInfo("Temperature", "Temperature", "C", "seawatertemperature")
COND = SensorInfo("cond", "Conductivity", "S/m", "conductivity")
DEPTH = SensorInfo("depth", "Depth", "m", "depth")
RESIDUAL = SensorInfo("dart_pressure_residual", "DART Pressure Residual", "decibar", None)


def times(start: datetime, count: int, step_s: float = 1.0) -> list[str]:
    """`count` ONC time strings from `start`, `step_s` apart."""
    return [format_onc_time(start + timedelta(seconds=i * step_s)) for i in range(count)]


def ctd_stream() -> TimeSeriesStream:
    return TimeSeriesStream(
        name="bacax-ctd", kind="scalardata", location_code="BACAX", device_category_code="CTD"
    )


def ctd_meta(**attributes: str) -> DatasetMeta:
    """BACAX CTD metadata as discovery answers it (two deployments, the second with a DOI)."""
    return build_dataset_meta(
        ctd_stream(),
        OutputSettings(attributes=attributes),
        base_url="https://data.oceannetworks.ca",
        locations=[
            Location(
                "BACAX", "Barkley Canyon Axis", 48.3, -126.0, 982.0, "Canyon floor.", True, True
            )
        ],
        deployments=[
            Deployment(
                "SBECTD16p6002",
                "BACAX",
                "CTD",
                datetime(2014, 5, 9, tzinfo=UTC),
                datetime(2015, 9, 17, tzinfo=UTC),
                48.316583,
                -126.050796,
                982.0,
                None,
                None,
                None,
                True,
                None,
            ),
            Deployment(
                "SBECTD16p7128",
                "BACAX",
                "CTD",
                datetime(2015, 9, 18, tzinfo=UTC),
                None,
                48.316585,
                -126.050798,
                985.0,
                None,
                None,
                None,
                True,
                Citation(
                    "ONC. 2015. BACAX CTD. https://doi.org/10.80242/abc",
                    "10.80242/abc",
                    "https://doi.org/10.80242/abc",
                ),
            ),
        ],
        categories=[DeviceCategory("CTD", "Conductivity Temperature Depth", "CTD", True)],
        properties=[
            Property("seawatertemperature", "Sea Water Temperature", None, "C", True, True),
            Property("conductivity", "Conductivity", None, "S/m", True, True),
        ],
    )


def race(*targets: Callable[[], None], switch_s: float = 1e-6) -> list[BaseException]:
    """Run `targets` in threads at once, the interpreter switching between threads every
    `switch_s` so that races show; returns what they raised."""
    raised: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # returned to the test
            raised.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(switch_s)
    try:
        threads = [threading.Thread(target=run, args=(target,)) for target in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    return raised
