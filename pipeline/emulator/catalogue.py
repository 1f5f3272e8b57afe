"""The emulator's catalogue, built on real ONC codes: locations, deployments, devices, sensors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol, TypeVar

from pipeline.times import epoch_ms, format_onc_time, from_epoch_ms


def ms(text: str) -> int:
    """ISO 8601 UTC text -> integer milliseconds since the epoch."""
    return epoch_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


@dataclass(frozen=True, slots=True)
class Sensor:
    """One scalar sensor of a device; the waveform fields drive the synthetic values."""

    code: str
    name: str
    unit: str
    category: str  # sensorCategoryCode
    property_code: str | None  # None for derived sensors: the key is then absent, as in ONC
    base: float
    amplitude: float
    noise: float
    decimals: int
    period_s: float = 12.42 * 3600  # semi-diurnal tide


@dataclass(frozen=True, slots=True)
class ArchiveSpec:
    """Files a device archives: one every `period_s`, starting `offset_s` into each period."""

    extension: str
    period_s: int
    base_size: int
    data_product_code: str
    suffix: str = ""
    offset_s: int = 0


@dataclass(frozen=True, slots=True)
class Device:
    """An instrument. `raw_kind` selects how rawdata lines look ("hex", "ctd" or None)."""

    code: str
    name: str
    category: str
    device_id: int
    sample_period_ms: int
    sensors: tuple[Sensor, ...] = ()
    raw_kind: str | None = None
    archive: tuple[ArchiveSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Deployment:
    """A device at a location over [begin, end); end None means still deployed."""

    location: str
    device: str
    begin: str
    end: str | None
    lat: float
    lon: float
    depth: float
    doi: str | None = None

    @property
    def begin_ms(self) -> int:
        """Begin as epoch milliseconds."""
        return ms(self.begin)

    @property
    def end_ms(self) -> int | None:
        """End as epoch milliseconds (None: open)."""
        return ms(self.end) if self.end else None


@dataclass(frozen=True, slots=True)
class Location:
    """A site of the observatory."""

    code: str
    name: str
    description: str
    lat: float
    lon: float
    depth: float
    file_prefix: str  # used in data product file names, e.g. BarkleyCanyon_Axis


@dataclass(frozen=True, slots=True)
class Category:
    """A device category (CTD, BPR, ...)."""

    code: str
    name: str
    description: str
    nerc_uri: str
    file_name: str  # CamelCase words used in data product file names


@dataclass(frozen=True, slots=True)
class Property:
    """An observed property."""

    code: str
    name: str
    uom: str
    description: str


@dataclass(frozen=True, slots=True)
class DataProduct:
    """A product of dataProductDelivery, with the extensions it can be delivered as."""

    code: str
    name: str
    extensions: tuple[str, ...]
    bytes_per_day: int


class _Coded(Protocol):
    @property
    def code(self) -> str: ...


_C = TypeVar("_C", bound=_Coded)


def _by_code(*items: _C) -> dict[str, _C]:
    """A catalogue table: each item under its code (the endpoints look them up by code)."""
    return {item.code: item for item in items}


def _ctd_sensors(temp: float, depth: float) -> tuple[Sensor, ...]:
    pres = depth * 1.0065
    return (
        Sensor(
            "cond", "Conductivity", "S/m", "conductivity", "conductivity", 3.355, 0.01, 0.0004, 5
        ),
        Sensor("depth", "Depth", "m", "depth", "depth", depth, 1.2, 0.05, 2),
        Sensor("Pressure", "Pressure", "decibar", "pressure", "pressure", pres, 1.2, 0.05, 3),
        Sensor(
            "salinity", "Practical Salinity", "psu", "salinity", "salinity", 34.06, 0.01, 0.002, 4
        ),
        Sensor(
            "SIGMA_THETA",
            "Sigma-theta (0 dbar)",
            "kg/m3",
            "sigma_theta",
            "sigmatheta",
            26.835,
            0.004,
            0.001,
            12,
        ),
        Sensor(
            "Temperature",
            "Temperature",
            "C",
            "temperature",
            "seawatertemperature",
            temp,
            0.05,
            0.002,
            4,
        ),
        Sensor("density", "Density", "kg/m3", "density", "density", 1033.2, 0.01, 0.001, 12),
        Sensor(
            "soundSpeed", "Sound Speed", "m/s", "sound_speed", "soundspeed", 1479.3, 0.2, 0.02, 3
        ),
    )


def _bpr_sensors(depth: float, with_residual: bool) -> tuple[Sensor, ...]:
    sensors: tuple[Sensor, ...] = (
        Sensor(
            "Pressure",
            "Seafloor Pressure",
            "decibar",
            "pressure",
            "totalpressure",
            depth * 1.0065,
            1.2,
            0.001,
            4,
        ),
        Sensor(
            "Temperature",
            "Housing Temperature",
            "C",
            "temperature",
            "seawatertemperature",
            2.05,
            0.01,
            0.0005,
            4,
        ),
        Sensor(
            "temperature1",
            "Temperature",
            "C",
            "temperature1",
            "seawatertemperature",
            1.98,
            0.01,
            0.0005,
            5,
        ),
        Sensor(
            "temperature2",
            "P-Sensor Temperature",
            "C",
            "temperature2",
            "seawatertemperature",
            1.99,
            0.01,
            0.0005,
            5,
        ),
    )
    if with_residual:
        # Derived sensor with no property: ONC omits `propertyCode` for it.
        sensors += (
            Sensor(
                "dart_pressure_residual",
                "DART Pressure Residual",
                "decibar",
                "dart_pressure_residual",
                None,
                0.0,
                0.004,
                0.001,
                15,
            ),
        )
    return sensors


_DAY = 86_400
_TXT_LOG = ArchiveSpec("txt", _DAY, 40_000, "LF")

CATEGORIES: dict[str, Category] = _by_code(
    Category(
        "CTD",
        "Conductivity Temperature Depth",
        "Conductivity Temperature (and Depth Sensor)",
        "http://vocab.nerc.ac.uk/collection/L05/current/130/",
        "ConductivityTemperatureDepth",
    ),
    Category(
        "BPR",
        "Bottom Pressure Recorder",
        "Bottom Pressure Recorder",
        "http://vocab.nerc.ac.uk/collection/L05/current/WPS/",
        "BottomPressureRecorder",
    ),
    Category(
        "HYDROPHONE",
        "Hydrophone",
        "Hydrophone",
        "http://vocab.nerc.ac.uk/collection/L05/current/LPHY/",
        "Hydrophone",
    ),
    Category(
        "VIDEOCAM",
        "Video Camera",
        "Video Camera",
        "http://vocab.nerc.ac.uk/collection/L05/current/311/",
        "VideoCamera",
    ),
)

DEVICES: dict[str, Device] = _by_code(
    Device(
        "SBECTD16p6002",
        "Sea-Bird SeaCAT SBE16plus 6002",
        "CTD",
        11202,
        1000,
        _ctd_sensors(3.9, 982.0),
        "ctd",
        (_TXT_LOG,),
    ),
    Device(
        "SBECTD16p7128",
        "Sea-Bird SeaCAT SBE16plus 7128",
        "CTD",
        23411,
        1000,
        _ctd_sensors(3.9, 985.0),
        "ctd",
        (_TXT_LOG,),
    ),
    Device(
        "SBECTD19p7027",
        "Sea-Bird SeaCAT SBE19plus V2 7027",
        "CTD",
        22305,
        1000,
        _ctd_sensors(2.4, 1258.0),
        "ctd",
        (_TXT_LOG,),
    ),
    Device(
        "SBECTD16p7119",
        "Sea-Bird SeaCAT SBE16plus 7119",
        "CTD",
        20107,
        250,
        _ctd_sensors(5.82, 394.0)[:6],
        "ctd",
        (_TXT_LOG,),
    ),
    Device(
        "BPR_889",
        "NRCan Bottom Pressure Recorder 88",
        "BPR",
        22503,
        1000,
        _bpr_sensors(1258.0, True),
        "hex",
        (_TXT_LOG,),
    ),
    Device(
        "RBRQUARTZ3BPR203659",
        "RBRquartz3 BPR 203659",
        "BPR",
        24820,
        1000,
        _bpr_sensors(1257.0, True),
        "hex",
        (_TXT_LOG,),
    ),
    Device(
        "BPR-Folger-59",
        "Folger BPR 59",
        "BPR",
        13204,
        1000,
        _bpr_sensors(400.0, False),
        "hex",
        (_TXT_LOG,),
    ),
    Device(
        "ICLISTENHF1560",
        "Ocean Sonics icListen HF 1560",
        "HYDROPHONE",
        23155,
        1000,
        (),
        None,
        (
            ArchiveSpec("wav", 300, 2_000_000, "AD"),
            ArchiveSpec("mat", 300, 60_000, "HSD", suffix="-spect", offset_s=3),
        ),
    ),
    Device(
        "AXISQ6044PTZACCC8E334C53",
        "Axis Q6044 PTZ camera",
        "VIDEOCAM",
        23604,
        1000,
        (),
        None,
        (
            ArchiveSpec("mp4", 900, 8_000_000, "VIDEO"),
            ArchiveSpec("jpg", 900, 150_000, "IMAGE", offset_s=1),
        ),
    ),
)

LOCATIONS: dict[str, Location] = _by_code(
    Location(
        "BACAX",
        "Barkley Canyon Axis",
        " Barkley Canyon Axis is a node location on the canyon floor.",
        48.316583,
        -126.050796,
        982.0,
        "BarkleyCanyon_Axis",
    ),
    Location(
        "BACVP",
        "Barkley Canyon Upper Slope",
        " Barkley Canyon Upper Slope, a vertical profiler site.",
        48.427,
        -126.174,
        394.0,
        "BarkleyCanyon_UpperSlope",
    ),
    Location(
        "NC89",
        "Bullseye",
        " Bullseye is a location at Clayoquot Slope, where gas hydrates, seafloor cold"
        " seeps, and hydrate dynamics are observed.",
        48.670626,
        -126.848013,
        1256.830769,
        "ClayoquotSlope_Bullseye",
    ),
    Location(
        "NCBC",
        "Cascadia Basin",
        " Cascadia Basin, ODP 1026 borehole site.",
        47.7616,
        -127.7591,
        2660.0,
        "CascadiaBasin",
    ),
    Location(
        "SEVIP",
        "Strait of Georgia East VENUS Instrument Platform",
        " Strait of Georgia East VENUS Instrument Platform.",
        49.0428,
        -123.3181,
        170.0,
        "StraitofGeorgia_East",
    ),
    Location(
        "RISS",
        "Ridge Seismic Station",
        " Endeavour, Regional Circulation Mooring.",
        47.9481,
        -129.0982,
        2197.0,
        "Endeavour_RISS",
    ),
)

_BACAX_DOI = "10.80242/14d156f2-0146-40e5-a77e-f3637fb6b517"

DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment(
        "BACAX",
        "SBECTD16p6002",
        "2014-05-09T15:50:42.000Z",
        "2015-09-17T12:59:52.000Z",
        48.316583,
        -126.050796,
        982.0,
        _BACAX_DOI,
    ),
    Deployment(
        "BACAX",
        "SBECTD16p7128",
        "2015-09-18T01:12:09.000Z",
        None,
        48.316585,
        -126.050798,
        985.0,
        "10.80242/8f1e2d3c-1111-4a2b-9c3d-5e6f7a8b9c0d",
    ),
    Deployment("BACVP", "SBECTD16p7119", "2009-08-20T00:00:00.000Z", None, 48.427, -126.174, 394.0),
    Deployment(
        "NC89",
        "SBECTD19p7027",
        "2016-06-24T00:00:00.000Z",
        None,
        48.670626,
        -126.848013,
        1258.0,
        "10.34943/e4166edb-4ce0-4b57-9856-acf4198fad53",
    ),
    Deployment(
        "NC89",
        "BPR_889",
        "2009-09-06T15:05:58.000Z",
        "2022-08-04T19:16:37.000Z",
        48.670835,
        -126.847965,
        1258.0,
    ),
    Deployment(
        "NC89",
        "RBRQUARTZ3BPR203659",
        "2022-08-04T23:38:03.000Z",
        None,
        48.670826,
        -126.847987,
        1257.0,
    ),
    Deployment(
        "NCBC", "BPR-Folger-59", "2019-06-01T00:00:00.000Z", None, 47.7616, -127.7591, 2660.0
    ),
    Deployment(
        "SEVIP", "ICLISTENHF1560", "2018-10-01T00:00:00.000Z", None, 49.0428, -123.3181, 170.0
    ),
    Deployment(
        "RISS",
        "AXISQ6044PTZACCC8E334C53",
        "2016-11-01T00:00:00.000Z",
        None,
        47.9481,
        -129.0982,
        2197.0,
    ),
)

PROPERTIES: dict[str, Property] = _by_code(
    Property("conductivity", "Conductivity", "S/m", "Conductivity: siemens per metre"),
    Property("depth", "Depth", "m", "Depth: metres"),
    Property("pressure", "Pressure", "decibar", "Pressure: decibar"),
    Property("totalpressure", "Total Pressure", "decibar", "Total pressure: decibar"),
    Property("salinity", "Practical Salinity", "psu", "Practical salinity"),
    Property("sigmatheta", "Sigma-theta", "kg/m3", "Sigma-theta (0 dbar)"),
    Property("seawatertemperature", "Sea Water Temperature", "C", "Temperature: degrees C"),
    Property("density", "Density", "kg/m3", "Density: kilograms per cubic metre"),
    Property("soundspeed", "Sound Speed", "m/s", "Sound speed: metres per second"),
)

DATA_PRODUCTS: dict[str, DataProduct] = _by_code(
    DataProduct("TSSD", "Time Series Scalar Data", ("csv", "mat", "json"), 6_000_000),
    DataProduct("TSSP", "Time Series Scalar Plot", ("png", "pdf"), 150_000),
    DataProduct("LF", "Log File", ("txt",), 40_000),
    DataProduct("NTS", "Non-Tidal Series", ("nc",), 2_000_000),
    DataProduct("RADCPTS", "RDI ADCP Time Series", ("nc", "mat"), 3_000_000),
)

QAQC_FLAG_INFO: dict[str, str] = {
    "0": "No Quality Control",
    "1": "Data Passed All Tests",
    "2": "Data Probably Good",
    "3": "Data Probably Bad",
    "4": "Data Bad",
    "6": "Insufficient Valid Data for Reliable Down-Sampling (ONC-defined flag)",
    "7": "Averaged Value (ONC defined flag)",
    "8": "Interpolated Value",
    "9": "Missing Data",
}


@dataclass(frozen=True, slots=True)
class Segment:
    """The part of one deployment inside a query window, in epoch ms over [start, end)."""

    deployment: Deployment
    device: Device
    start: int
    end: int


@dataclass(slots=True)
class Catalogue:
    """Lookups over the static catalogue."""

    locations: dict[str, Location] = field(default_factory=lambda: dict(LOCATIONS))
    devices: dict[str, Device] = field(default_factory=lambda: dict(DEVICES))
    deployments: tuple[Deployment, ...] = DEPLOYMENTS

    def deployments_of(
        self,
        *,
        location: str | None = None,
        category: str | None = None,
        device: str | None = None,
    ) -> list[Deployment]:
        """Deployments matching every filter given, oldest first."""
        found = [
            d
            for d in self.deployments
            if (location is None or d.location == location)
            and (device is None or d.device == device)
            and (category is None or self.devices[d.device].category == category)
        ]
        return sorted(found, key=lambda d: d.begin_ms)

    def redeployed(self, moves: Mapping[str, datetime]) -> Catalogue:
        """This catalogue with each device in `moves` redeployed at its instant.

        ONC ends a deployment and begins the next one at the same location at a slightly
        different position: the real NC89 BPR rows (docs/dev/emulator.md) move 1 m in depth
        and about 1 m in latitude, with a 4-hour gap and a new device. The emulator does what
        hurts a harvester most: no gap, the same device (so a device stream moves too), the
        instant anywhere (inside a window and a partition), and a move of about 50 m and 2 m
        in depth, so a position taken from the wrong deployment is visible.
        """
        if not moves:
            return self
        deployments: list[Deployment] = []
        for dep in self.deployments:
            at = moves.get(dep.device)
            at_ms = epoch_ms(at) if at is not None else None
            if at_ms is None or not (
                dep.begin_ms < at_ms and (dep.end_ms is None or at_ms < dep.end_ms)
            ):
                deployments.append(dep)
                continue
            split = iso_ms(at_ms)
            deployments.append(replace(dep, end=split))
            deployments.append(
                replace(
                    dep,
                    begin=split,
                    lat=round(dep.lat + 0.0004, 6),
                    lon=round(dep.lon - 0.0004, 6),
                    depth=dep.depth + 2.0,
                    doi=None,
                )
            )
        return replace(self, deployments=tuple(deployments))

    def segments(self, deployments: list[Deployment], start: int, end: int) -> list[Segment]:
        """Clip deployments to [start, end); empty parts are dropped."""
        out: list[Segment] = []
        for dep in deployments:
            lo = max(start, dep.begin_ms)
            hi = min(end, dep.end_ms if dep.end_ms is not None else end)
            if lo < hi:
                out.append(Segment(dep, self.devices[dep.device], lo, hi))
        return out


def iso_ms(epoch_ms: int) -> str:
    """Epoch ms -> `yyyy-MM-ddTHH:mm:ss.SSSZ`, the API's one date format."""
    return format_onc_time(from_epoch_ms(epoch_ms))
