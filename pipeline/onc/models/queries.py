"""Request-side models: typed queries rendered into the API's camelCase parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from pipeline.onc.models.common import add_given, param_text
from pipeline.onc.parsing import format_time

# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class DataSource:
    """Either a location + device category, or a single device."""

    location_code: str | None = None
    device_category_code: str | None = None
    device_code: str | None = None

    def __post_init__(self) -> None:
        by_location = self.location_code is not None and self.device_category_code is not None
        if by_location == (self.device_code is not None):
            raise ValueError("give either location_code + device_category_code, or device_code")

    @property
    def kind(self) -> str:
        """`location` or `device`: the last path segment of the data endpoints."""
        return "device" if self.device_code is not None else "location"

    def to_params(self) -> dict[str, str]:
        """The addressing query parameters."""
        if self.device_code is not None:
            return {"deviceCode": self.device_code}
        assert self.location_code is not None
        assert self.device_category_code is not None
        return {"locationCode": self.location_code, "deviceCategoryCode": self.device_category_code}


class _BySource:
    """A query of a service addressed by location or by device: `/api/<service>/<kind>`."""

    __slots__ = ()
    service: ClassVar[str]
    source: DataSource

    @property
    def endpoint(self) -> str:
        """API path of this query."""
        return f"/api/{self.service}/{self.source.kind}"


@dataclass(frozen=True, slots=True)
class _RangeQuery(_BySource):
    """A scalardata or rawdata query: a source over [date_from, date_to), by pages."""

    source: DataSource
    date_from: datetime | str
    date_to: datetime | str

    def _range_params(self, row_limit: int) -> dict[str, str]:
        """What every scalardata and rawdata range query sends."""
        params = self.source.to_params()
        params["dateFrom"] = format_time(self.date_from)
        params["dateTo"] = format_time(self.date_to)
        params["rowLimit"] = str(row_limit)
        return params


def _text_or_none(value: bool | None) -> str | None:
    return None if value is None else param_text(value)


@dataclass(frozen=True, slots=True)
class ScalarQuery(_RangeQuery):
    """Parameters of a scalardata range query."""

    service: ClassVar[str] = "scalardata"
    property_codes: Sequence[str] = ()
    sensor_category_codes: Sequence[str] = ()
    quality_control: str | None = None  # "raw" | "clean"
    output_format: str | None = None  # "array" | "object"
    resample_type: str | None = None
    resample_period: int | None = None
    fill_gaps: bool | None = None
    metadata: str | None = None

    def to_params(self, row_limit: int) -> dict[str, str]:
        """The query string (without the token)."""
        params = self._range_params(row_limit)
        if self.property_codes and self.source.kind == "location":
            # /scalardata/device does not document propertyCode (api-python-client
            # src/onc/onc.py getScalardataByDevice) and unknown parameters get error 129:
            # by device, the client picks the properties out of the answer instead.
            params["propertyCode"] = ",".join(self.property_codes)
        if self.sensor_category_codes:
            params["sensorCategoryCodes"] = ",".join(self.sensor_category_codes)
        optional = {
            "qualityControl": self.quality_control,
            "outputFormat": self.output_format,
            "resampleType": self.resample_type,
            "resamplePeriod": None if self.resample_period is None else str(self.resample_period),
            "fillGaps": _text_or_none(self.fill_gaps),
            "metadata": self.metadata,
        }
        return add_given(params, optional)


@dataclass(frozen=True, slots=True)
class RawQuery(_RangeQuery):
    """Parameters of a rawdata range query."""

    service: ClassVar[str] = "rawdata"
    convert_hex_to_decimal: bool | None = None
    skip_errors: bool | None = None

    def to_params(self, row_limit: int) -> dict[str, str]:
        """The query string (without the token)."""
        params = self._range_params(row_limit)
        optional = {
            "convertHexToDecimal": _text_or_none(self.convert_hex_to_decimal),
            "skipErrors": _text_or_none(self.skip_errors),
        }
        return add_given(params, optional)


@dataclass(frozen=True, slots=True)
class ArchiveQuery(_BySource):
    """Parameters of an archive file list query."""

    service: ClassVar[str] = "archivefile"

    source: DataSource
    date_from: datetime | str | None = None
    date_to: datetime | str | None = None
    file_extension: str | None = None
    data_product_code: str | None = None
    return_all: bool = True  # returnOptions=all: sizes and dates, not only names
    # When the archive took the file in (dateArchivedFrom/dateArchivedTo, accepted by both
    # listing services: api-python-client src/onc/onc.py getArchivefileByLocation/ByDevice).
    archived_from: datetime | str | None = None
    archived_to: datetime | str | None = None

    def to_params(self, row_limit: int) -> dict[str, str]:
        """The query string (without the token)."""
        params = self.source.to_params()
        if self.date_from is not None:
            params["dateFrom"] = format_time(self.date_from)
        if self.date_to is not None:
            params["dateTo"] = format_time(self.date_to)
        if self.archived_from is not None:
            params["dateArchivedFrom"] = format_time(self.archived_from)
        if self.archived_to is not None:
            params["dateArchivedTo"] = format_time(self.archived_to)
        params["rowLimit"] = str(row_limit)
        if self.file_extension:
            params["fileExtension"] = self.file_extension
        if self.data_product_code:
            params["dataProductCode"] = self.data_product_code
        if self.return_all:
            params["returnOptions"] = "all"
        return params


@dataclass(frozen=True, slots=True)
class ProductOrder:
    """Parameters of a `dataProductDelivery/request`; `options` are the `dpo_*` settings."""

    source: DataSource
    data_product_code: str
    extension: str
    date_from: datetime | str
    date_to: datetime | str
    property_codes: Sequence[str] = ()
    options: Mapping[str, str] = field(default_factory=dict)

    def to_params(self) -> dict[str, str]:
        """The query string (without the token)."""
        params = self.source.to_params()
        params["dataProductCode"] = self.data_product_code
        params["extension"] = self.extension
        params["dateFrom"] = format_time(self.date_from)
        params["dateTo"] = format_time(self.date_to)
        if self.property_codes:
            params["propertyCode"] = ",".join(self.property_codes)
        for key, value in self.options.items():
            name = key if key.startswith("dpo_") else f"dpo_{key}"
            params[name] = str(value)
        return params


DISCOVERY_PARAM_NAMES = {
    "location_code": "locationCode",
    "device_category_code": "deviceCategoryCode",
    "device_code": "deviceCode",
    "property_code": "propertyCode",
    "data_product_code": "dataProductCode",
    "date_from": "dateFrom",
    "date_to": "dateTo",
    "include_children": "includeChildren",
}


def discovery_params(filters: Mapping[str, object]) -> dict[str, str]:
    """snake_case discovery filters → the API's query parameters (None values dropped)."""
    params = {}
    for key, value in filters.items():
        if value is None:
            continue
        name = DISCOVERY_PARAM_NAMES.get(key)
        if name is None:
            raise ValueError(f"unknown discovery filter {key!r}")
        if isinstance(value, datetime):
            params[name] = format_time(value)
        else:
            params[name] = param_text(value)
    return params
