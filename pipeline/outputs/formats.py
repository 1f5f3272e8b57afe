"""The output formats of one process and the per-dataset metadata NetCDF and CSV need."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import structlog

from pipeline.onc import OncClient
from pipeline.outputs.base import Writer
from pipeline.outputs.jsonl import JsonlWriter
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
        self.writers = _LazyWriters(self.metas, output)

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


class _LazyWriters(Mapping[str, Writer]):
    """Writers by format name, each built (and its libraries imported) on first use: a
    process that writes only JSON Lines never pays for importing netCDF4 and numpy."""

    _NAMES = ("jsonl", "netcdf", "csv", "rawtext")

    def __init__(self, metas: dict[str, DatasetMeta], output: OutputSettings) -> None:
        self._metas = metas
        self._partition = output.partition
        self._built: dict[str, Writer] = {}

    def __getitem__(self, name: str) -> Writer:
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def _build(self, name: str) -> Writer:
        if name == "jsonl":
            return JsonlWriter()
        if name == "netcdf":
            from pipeline.outputs.netcdf import NetcdfWriter

            return NetcdfWriter(self._metas, partition=self._partition)
        if name == "csv":
            from pipeline.outputs.csv import CsvWriter

            return CsvWriter(self._metas, partition=self._partition)
        if name == "rawtext":
            from pipeline.outputs.rawtext import RawTextWriter

            return RawTextWriter(partition=self._partition)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)
