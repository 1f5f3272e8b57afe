"""What the engine calls on the Oceans API client: the seam its tests fill with a twin in
memory (tests/fakes/onc.py), as procrastinate's InMemoryConnector stands in for PostgreSQL.

`OncClient` satisfies these protocols; nothing here talks to the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path
from typing import Protocol

from pipeline.onc.download import StagedFile
from pipeline.onc.models import (
    ArchiveFileInfo,
    ArchiveQuery,
    AvailabilityQuery,
    ProductAvailability,
    ProductOrder,
    ProductRequest,
    ProductRun,
    RawPage,
    RawQuery,
    ScalarPage,
    ScalarQuery,
)
from pipeline.onc.products import FileDone, ProductFile


class ProductApi(Protocol):
    """dataProductDelivery as the `dataproduct` stream kind drives it."""

    async def request(self, order: ProductOrder) -> ProductRequest:
        """Order a product."""
        ...

    async def restart(self, dp_request_id: int) -> list[ProductRun]:
        """Restart the runs of an order whose files are gone."""
        ...

    async def wait_for_runs(
        self, dp_request_id: int, *, estimated_seconds: float | None = None
    ) -> list[ProductRun]:
        """The order's runs, once every one is complete."""
        ...

    async def download_runs(
        self,
        runs: Sequence[ProductRun],
        dest_dir: Path,
        *,
        skip: Collection[tuple[int, str]] = (),
        on_file: FileDone | None = None,
        estimated_seconds: float | None = None,
    ) -> list[ProductFile]:
        """Download every file of every run not in `skip`, telling `on_file` of each."""
        ...


class OncApi(Protocol):
    """The Oceans API calls of the three stream kinds and of coverage mending."""

    @property
    def products(self) -> ProductApi:
        """The data product driver."""
        ...

    def scalar_pages(
        self, query: ScalarQuery, *, row_limit: int | None = None
    ) -> AsyncIterator[ScalarPage]:
        """The pages of a scalardata query."""
        ...

    def raw_pages(self, query: RawQuery, *, row_limit: int | None = None) -> AsyncIterator[RawPage]:
        """The pages of a rawdata query."""
        ...

    def archive_files(self, query: ArchiveQuery) -> AsyncIterator[ArchiveFileInfo]:
        """The archived files a listing returns."""
        ...

    async def receive_archive_file(
        self, filename: str, dest_dir: Path, *, expected_size: int | None = None
    ) -> StagedFile:
        """Download one archived file into `dest_dir`, verified but not yet published."""
        ...

    def data_availability(self, query: AvailabilityQuery) -> AsyncIterator[ProductAvailability]:
        """What ONC's archive holds (file counts and coverage) over a range."""
        ...
