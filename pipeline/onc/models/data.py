"""Data pages (scalar, raw, archive lists) as whole columns, not one object per reading."""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.onc.errors import OncSchemaError
from pipeline.onc.models.common import (
    Citation,
    NextPage,
    citations_of,
    messages_of,
    query_url_of,
)
from pipeline.onc.parsing import (
    TimeAxis,
    as_list,
    as_object,
    float_values,
    int_values,
    opt_float,
    opt_int,
    opt_str,
    opt_time,
    req_str,
    str_values,
    time_axis,
)

# --------------------------------------------------------------------------- scalar data


@dataclass(slots=True)
class ScalarSeries:
    """One sensor's readings of one page: parallel columns plus the sensor's metadata."""

    sensor_code: str
    sensor_name: str | None
    unit: str | None
    property_code: str | None
    sensor_category_code: str | None
    sample_times: TimeAxis  # joined: one text, not a string a reading
    values: array[float]  # packed: 8 bytes a reading
    qaqc_flags: array[int]
    actual_samples: int | None = None

    def __len__(self) -> int:
        return len(self.sample_times)

    @classmethod
    def from_api(cls, raw: Any, where: str) -> ScalarSeries:
        """Parse one `sensorData[]` item, in `array` or `object` output format."""
        obj = as_object(raw, where)
        data = obj.get("data")
        dwhere = f"{where}.data"
        if data is None:  # returnOptions=excludeScalarData: metadata only
            times = TimeAxis("", 0)
            values: array[float] = array("d")
            flags: array[int] = array("q")
        elif isinstance(data, list):  # outputFormat=object: [{sampleTime, value, qaqcFlag}]
            rows, values, flags = _object_rows(data, dwhere)
            times = TimeAxis.of(rows)
        else:
            cols = as_object(data, dwhere)
            times = time_axis(cols.get("sampleTimes"), f"{dwhere}.sampleTimes")
            values = float_values(cols.get("values"), f"{dwhere}.values")
            flags = int_values(cols.get("qaqcFlags"), f"{dwhere}.qaqcFlags")
            if not flags and times:  # qualityControl absent: flag 0 "no QC"
                flags = array("q", [0]) * len(times)
        if not len(times) == len(values) == len(flags):
            raise OncSchemaError(
                f"column lengths differ: {len(times)} times, {len(values)} values, "
                f"{len(flags)} flags",
                where=dwhere,
            )
        return cls(
            sensor_code=req_str(obj, "sensorCode", where),
            sensor_name=opt_str(obj, "sensorName", where),
            unit=opt_str(obj, "unitOfMeasure", where),
            property_code=opt_str(obj, "propertyCode", where),
            sensor_category_code=opt_str(obj, "sensorCategoryCode", where),
            sample_times=times,
            values=values,
            qaqc_flags=flags,
            actual_samples=opt_int(obj, "actualSamples", where),
        )


def _object_rows(rows: list[Any], where: str) -> tuple[list[str], array[float], array[int]]:
    times: list[str] = []
    values: array[float] = array("d")
    flags: array[int] = array("q")
    for i, row in enumerate(rows):
        item = as_object(row, f"{where}[{i}]")
        times.append(req_str(item, "sampleTime", f"{where}[{i}]"))
        value = opt_float(item, "value", f"{where}[{i}]")
        values.append(math.nan if value is None else value)
        flag = opt_int(item, "qaqcFlag", f"{where}[{i}]")
        flags.append(0 if flag is None else flag)
    return times, values, flags


def _member(obj: Mapping[str, Any], key: str) -> Any:
    """`obj[key]`, which may be null ("no data") but must be there: a reply without its data
    member (`{}`, another endpoint's body) is schema drift, never an empty page, or a window
    would be published empty and its data silently skipped."""
    if key not in obj:
        raise OncSchemaError("missing member (not this endpoint's reply)", where=key)
    return obj[key]


@dataclass(slots=True)
class ScalarPage:
    """One page of `/api/scalardata/*`."""

    series: list[ScalarSeries]
    qaqc_flag_info: dict[str, str] = field(default_factory=dict)
    citations: tuple[Citation, ...] = ()
    messages: tuple[str, ...] = ()
    next: NextPage | None = None
    query_url: str | None = None

    @property
    def rows(self) -> int:
        """Readings in this page, summed over sensors."""
        return sum(len(s) for s in self.series)

    @classmethod
    def from_api(cls, raw: Any) -> ScalarPage:
        """Parse a whole scalardata body."""
        obj = as_object(raw, "$")
        items = as_list(_member(obj, "sensorData"), "sensorData")
        flag_info_raw = obj.get("qaqcFlagInfo")
        flag_info = (
            {str(k): str(v) for k, v in as_object(flag_info_raw, "qaqcFlagInfo").items()}
            if flag_info_raw is not None
            else {}
        )
        return cls(
            series=[ScalarSeries.from_api(s, f"sensorData[{i}]") for i, s in enumerate(items)],
            qaqc_flag_info=flag_info,
            citations=citations_of(obj.get("citations"), "citations"),
            messages=messages_of(obj.get("messages")),
            next=NextPage.from_api(obj.get("next")),
            query_url=query_url_of(obj),
        )


# --------------------------------------------------------------------------- raw data


@dataclass(slots=True)
class RawPage:
    """One page of `/api/rawdata/*`: instrument lines as received."""

    times: list[str]
    readings: list[str]
    line_types: list[str]
    citations: tuple[Citation, ...] = ()
    messages: tuple[str, ...] = ()
    next: NextPage | None = None
    query_url: str | None = None

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def from_api(cls, raw: Any) -> RawPage:
        """Parse a whole rawdata body."""
        obj = as_object(raw, "$")
        data_raw = _member(obj, "data")
        data = as_object(data_raw, "data") if data_raw is not None else {}
        times = str_values(data.get("times"), "data.times")
        readings = str_values(data.get("readings"), "data.readings")
        line_types = str_values(data.get("lineTypes"), "data.lineTypes")
        if not line_types and times:
            line_types = [" "] * len(times)
        if not len(times) == len(readings) == len(line_types):
            raise OncSchemaError(
                f"column lengths differ: {len(times)} times, {len(readings)} readings, "
                f"{len(line_types)} line types",
                where="data",
            )
        return cls(
            times=times,
            readings=readings,
            line_types=line_types,
            citations=citations_of(obj.get("citations"), "citations"),
            messages=messages_of(obj.get("messages")),
            next=NextPage.from_api(obj.get("next")),
            query_url=query_url_of(obj),
        )


# --------------------------------------------------------------------------- archive files


@dataclass(frozen=True, slots=True)
class ArchiveFileInfo:
    """One archived file; only `filename` is present unless the list used returnOptions=all.

    `size` is the size a download delivers: downloads come back uncompressed although "many
    files in the archive are compressed for storage" (api-python-client src/onc/onc.py,
    downloadArchivefile), and ONC's tools show `uncompressedFileSize` as a file's size. It is
    None when the row has no `uncompressedFileSize`: `fileSize` may be the stored size, so the
    download is then checked against the server's Content-Length only. `stored_size` is the
    size in the archive (`compressedFileSize`, else `fileSize`), kept for information.
    """

    filename: str
    date_from: datetime | None = None
    date_to: datetime | None = None
    size: int | None = None
    stored_size: int | None = None
    data_product_code: str | None = None
    archived_date: datetime | None = None
    modify_date: datetime | None = None

    @classmethod
    def from_api(cls, raw: Any, where: str) -> ArchiveFileInfo:
        """Parse a `files[]` item: a bare file name or an object."""
        if isinstance(raw, str):
            return cls(filename=raw)
        obj = as_object(raw, where)
        return cls(
            filename=req_str(obj, "filename", where),
            date_from=opt_time(obj, "dateFrom", where),
            date_to=opt_time(obj, "dateTo", where),
            size=opt_int(obj, "uncompressedFileSize", where),
            stored_size=_first_int(obj, ("compressedFileSize", "fileSize"), where),
            data_product_code=opt_str(obj, "dataProductCode", where),
            archived_date=opt_time(obj, "archivedDate", where),
            modify_date=opt_time(obj, "modifyDate", where),
        )


def _first_int(obj: Mapping[str, Any], keys: tuple[str, ...], where: str) -> int | None:
    for key in keys:
        value = opt_int(obj, key, where)
        if value is not None:
            return value
    return None


@dataclass(slots=True)
class ArchiveListPage:
    """One page of `/api/archivefile/location|device`."""

    files: list[ArchiveFileInfo]
    next: NextPage | None = None
    query_url: str | None = None

    @classmethod
    def from_api(cls, raw: Any) -> ArchiveListPage:
        """Parse a whole archive file list body."""
        obj = as_object(raw, "$")
        files = as_list(_member(obj, "files"), "files")
        return cls(
            files=[ArchiveFileInfo.from_api(f, f"files[{i}]") for i, f in enumerate(files)],
            next=NextPage.from_api(obj.get("next")),
            query_url=query_url_of(obj),
        )
