"""`/api/dataAvailability/dataproducts`: ONC's own account of the archive files that exist.

Shape: onc-samples/dataAvailability_NCBC_BPR_docstring.json and api-python-client 2.6.0
tests/discover_data_availability/test_data_availability.py (coverages are fractions in
[0, 1], counts and sizes integers: `totalFileSize` is the stored size in bytes,
`totalUncompressedFileSize` the size downloads deliver).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.onc.errors import OncSchemaError
from pipeline.onc.models.common import NextPage, add_given, messages_of, query_url_of
from pipeline.onc.models.queries import DataSource
from pipeline.onc.parsing import (
    as_list,
    as_object,
    format_time,
    opt_float,
    opt_time,
    req_int,
    req_str,
)


@dataclass(frozen=True, slots=True)
class AvailabilityQuery:
    """Which products' availability to ask for: a source, optional product, extension, range."""

    source: DataSource
    date_from: datetime | str | None = None
    date_to: datetime | str | None = None
    data_product_code: str | None = None
    extension: str | None = None

    endpoint = "/api/dataAvailability/dataproducts"

    def to_params(self) -> dict[str, str]:
        """The query string (without the token)."""
        params = self.source.to_params()
        optional = {
            "dateFrom": None if self.date_from is None else format_time(self.date_from),
            "dateTo": None if self.date_to is None else format_time(self.date_to),
            "dataProductCode": self.data_product_code,
            "extension": self.extension,
        }
        return add_given(params, optional)


@dataclass(frozen=True, slots=True)
class ProductAvailability:
    """One row: the files of one device, product and extension over a range."""

    device_code: str
    data_product_code: str
    extension: str
    date_from: datetime
    date_to: datetime
    file_count: int
    average_file_coverage: float
    max_file_coverage: float
    max_file_coverage_date: datetime | None
    min_file_coverage: float
    min_file_coverage_date: datetime | None
    total_file_size: int  # bytes as stored (often compressed)
    total_uncompressed_file_size: int  # bytes a download delivers

    @classmethod
    def from_api(cls, raw: Any, where: str) -> ProductAvailability:
        """Parse one `availableDataProducts[]` item."""
        obj = as_object(raw, where)
        return cls(
            device_code=req_str(obj, "deviceCode", where),
            data_product_code=req_str(obj, "dataProductCode", where),
            extension=req_str(obj, "extension", where),
            date_from=_req_time(obj, "dateFrom", where),
            date_to=_req_time(obj, "dateTo", where),
            file_count=req_int(obj, "fileCount", where),
            average_file_coverage=_coverage(obj, "averageFileCoverage", where),
            max_file_coverage=_coverage(obj, "maxFileCoverage", where),
            max_file_coverage_date=opt_time(obj, "maxFileCoverageDate", where),
            min_file_coverage=_coverage(obj, "minFileCoverage", where),
            min_file_coverage_date=opt_time(obj, "minFileCoverageDate", where),
            total_file_size=req_int(obj, "totalFileSize", where),
            total_uncompressed_file_size=req_int(obj, "totalUncompressedFileSize", where),
        )


@dataclass(frozen=True, slots=True)
class AvailabilityPage:
    """One page of `/api/dataAvailability/dataproducts`."""

    products: list[ProductAvailability]
    messages: tuple[str, ...] = ()
    next: NextPage | None = None
    query_url: str | None = None

    @classmethod
    def from_api(cls, raw: Any) -> AvailabilityPage:
        """Parse a whole reply body."""
        obj = as_object(raw, "$")
        if "availableDataProducts" not in obj:
            raise OncSchemaError("missing member", where="availableDataProducts")
        rows = as_list(obj["availableDataProducts"], "availableDataProducts")
        return cls(
            products=[
                ProductAvailability.from_api(r, f"availableDataProducts[{i}]")
                for i, r in enumerate(rows)
            ],
            messages=messages_of(obj.get("messages")),
            next=NextPage.from_api(obj.get("next")),
            query_url=query_url_of(obj),
        )


def _req_time(obj: Any, key: str, where: str) -> datetime:
    value = opt_time(obj, key, where)
    if value is None:
        raise OncSchemaError("missing timestamp", where=f"{where}.{key}")
    return value


def _coverage(obj: Any, key: str, where: str) -> float:
    value = opt_float(obj, key, where)
    if value is None or not 0.0 <= value <= 1.0:
        raise OncSchemaError(
            f"expected a fraction in [0, 1], got {value!r}", where=f"{where}.{key}"
        )
    return value
