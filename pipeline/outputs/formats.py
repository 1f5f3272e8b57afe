"""The output formats of one process and the per-dataset metadata NetCDF and CSV need."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from pipeline.onc import OncClient
from pipeline.outputs.writers import LazyWriters
from pipeline.settings import OutputSettings, StreamSettings, TimeSeriesStream

if TYPE_CHECKING:
    from pipeline.outputs.metadata import DatasetMeta

log = structlog.get_logger(__name__)

# Formats that describe their dataset (position, units, attributes) from discovery.
DESCRIBED = frozenset({"netcdf", "csv"})


class OutputFormats:
    """Every writer by format name, plus the discovery metadata they share by reference.

    Metadata is fetched lazily, the first time a stream that needs it runs, so a daemon
    whose upstream is down at start-up still starts, and a stream added by a reload is
    described on its first pass.
    """

    def __init__(self, output: OutputSettings, client: OncClient) -> None:
        self._output = output
        self._client = client
        self._lock = asyncio.Lock()
        self.metas: dict[str, DatasetMeta] = {}
        self.writers = LazyWriters(self.metas, output.partition)

    async def prepare(self, stream: StreamSettings) -> None:
        """Make sure the writers `stream` uses can describe its dataset."""
        if not isinstance(stream, TimeSeriesStream) or not DESCRIBED & set(stream.formats):
            return
        dataset = stream.resolved_dataset_id
        if dataset in self.metas:
            return
        from pipeline.outputs.metadata import discover_dataset_meta

        async with self._lock:
            if dataset not in self.metas:
                self.metas[dataset] = await discover_dataset_meta(
                    self._client, stream, self._output
                )
                log.info("dataset_described", stream=stream.name, dataset=dataset)
