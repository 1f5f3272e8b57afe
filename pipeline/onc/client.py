"""`OncClient`: the small facade the engine uses; it owns the HTTP layer and its limiter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar, Unpack

from pipeline.exceptions import OncRequestError
from pipeline.lifecycle import Facade
from pipeline.onc.archive import DOWNLOAD_ENDPOINT, iter_archive_files
from pipeline.onc.download import FileDownload, StagedFile
from pipeline.onc.errors import OncSchemaError
from pipeline.onc.http import HttpParts, OncHttp
from pipeline.onc.models import (
    ArchiveFileInfo,
    ArchiveQuery,
    AvailabilityPage,
    AvailabilityQuery,
    Deployment,
    Device,
    DeviceCategory,
    Location,
    ProductAvailability,
    Property,
    RawPage,
    RawQuery,
    ScalarPage,
    ScalarQuery,
    discovery_params,
)
from pipeline.onc.options import ClientOptions
from pipeline.onc.paging import iter_pages
from pipeline.onc.parsing import decode_scalardata
from pipeline.onc.products import ProductDriver

M = TypeVar("M")


class OncClient(Facade):
    """Async client of the Oceans API: discovery, paged data, archive files, data products.

    Use as `async with OncClient(options) as onc: ...`. Every call shares one session and one
    limiter (concurrency and rate caps). `repr()` never shows the token.
    """

    def __init__(self, options: ClientOptions, **parts: Unpack[HttpParts]) -> None:
        self.options = options
        self.http = OncHttp(options, **parts)
        super().__init__(self.http)
        self.products = ProductDriver(self.http)

    def __repr__(self) -> str:
        return f"OncClient(base_url={self.options.base_url!r})"

    # ------------------------------------------------------------------ data

    def scalar_pages(
        self, query: ScalarQuery, *, row_limit: int | None = None
    ) -> AsyncIterator[ScalarPage]:
        """Pages of scalar data for `query`, one at a time (no data in range → no pages)."""
        limit = row_limit or self.options.row_limit
        pages = iter_pages(
            self.http,
            query.endpoint,
            query.to_params(limit),
            ScalarPage.from_api,
            decode=decode_scalardata,
        )
        if query.property_codes and query.source.kind == "device":
            return _with_properties(pages, frozenset(query.property_codes))
        return pages

    def raw_pages(self, query: RawQuery, *, row_limit: int | None = None) -> AsyncIterator[RawPage]:
        """Pages of raw instrument lines for `query`, one at a time."""
        limit = row_limit or self.options.row_limit
        return iter_pages(self.http, query.endpoint, query.to_params(limit), RawPage.from_api)

    def archive_files(self, query: ArchiveQuery) -> AsyncIterator[ArchiveFileInfo]:
        """Every archive file of `query`, across pages."""
        return iter_archive_files(self.http, query)

    async def receive_archive_file(
        self,
        filename: str,
        dest_dir: Path,
        *,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        resume: bool = True,
        bulk: bool | None = None,
    ) -> StagedFile:
        """Download archive file `filename` into its verified temp file in `dest_dir`.

        `filename` is checked first (OutputError if unsafe), so nothing is written outside
        `dest_dir`. A `.filename.part` left by an interrupted run is resumed with `Range`. The
        caller makes the file final with `publish()` (fsync, rename) once it has given back
        whatever limits how many downloads run at once: that work needs the disk, not the
        server. A file announced as big is read off the event loop (`FileDownload.bulk`;
        `bulk` forces the choice).
        """
        download = FileDownload(
            dest_dir,
            name=filename,
            expected_size=expected_size,
            expected_sha256=expected_sha256,
            resume=resume,
            bulk=bulk,
        )
        return await self.http.request(
            DOWNLOAD_ENDPOINT,
            {"filename": filename},
            download.receive,
            passthrough=frozenset({416}),
            headers=download.headers,
            streaming=True,
            bulk=download.bulk,
        )

    async def data_availability(
        self, query: AvailabilityQuery
    ) -> AsyncIterator[ProductAvailability]:
        """`/api/dataAvailability/dataproducts`: ONC's count and coverage of the archive files
        of each device, product and extension in range; nothing found (404) yields nothing.

        `next` is followed like every paged service, although no public answer has shown one.
        """
        pages = iter_pages(self.http, query.endpoint, query.to_params(), AvailabilityPage.from_api)
        try:
            async for page in pages:
                for row in page.products:
                    yield row
        except OncRequestError as exc:
            if exc.status != 404:  # "No data found": an empty answer, not a failure
                raise

    # ------------------------------------------------------------------ discovery

    async def locations(self, **filters: object) -> list[Location]:
        """`/api/locations` filtered by snake_case filters (e.g. `location_code="NC89"`)."""
        return await self._discover("/api/locations", filters, Location.from_api)

    async def deployments(self, **filters: object) -> list[Deployment]:
        """`/api/deployments`: where and when devices were deployed (lat, lon, depth)."""
        return await self._discover("/api/deployments", filters, Deployment.from_api)

    async def devices(self, **filters: object) -> list[Device]:
        """`/api/devices`."""
        return await self._discover("/api/devices", filters, Device.from_api)

    async def properties(self, **filters: object) -> list[Property]:
        """`/api/properties`: property codes with their units."""
        return await self._discover("/api/properties", filters, Property.from_api)

    async def device_categories(self, **filters: object) -> list[DeviceCategory]:
        """`/api/deviceCategories`."""
        return await self._discover("/api/deviceCategories", filters, DeviceCategory.from_api)

    async def _discover(
        self,
        endpoint: str,
        filters: dict[str, object],
        parse: Callable[[Any, str], M],
    ) -> list[M]:
        try:
            # Urgent: what asks them (describing a dataset) holds data pages back until they
            # come; they go before data pages waiting for a slot, never past the caps.
            reply = await self.http.get_json(
                endpoint, discovery_params(filters), passthrough=frozenset({404}), urgent=True
            )
        except OncRequestError as exc:
            # Older deployments answer "nothing matches" with 400/127 instead of 404.
            if exc.status == 404:
                return []
            raise
        if reply.status == 404:  # "No metadata/data found": an empty answer, not a failure
            return []
        if not isinstance(reply.data, list):
            raise OncSchemaError(
                f"expected a list, got {type(reply.data).__name__}",
                where="$",
                url=reply.url,
                status=reply.status,
            )
        try:
            return [parse(item, f"[{i}]") for i, item in enumerate(reply.data)]
        except OncSchemaError as exc:
            raise exc.at(url=reply.url, status=reply.status) from None


async def _with_properties(
    pages: AsyncIterator[ScalarPage], wanted: frozenset[str]
) -> AsyncIterator[ScalarPage]:
    """Only the sensors measuring one of `wanted`: what `propertyCode` selects by location,
    done here for /scalardata/device, which does not take the parameter."""
    async for page in pages:
        page.series = [s for s in page.series if s.property_code in wanted]
        yield page
