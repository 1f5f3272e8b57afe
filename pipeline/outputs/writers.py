"""Writers by output format name, each built on first use.

Light to import on purpose (no HTTP client, no settings models): window worker processes
build their writers from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pipeline.outputs.base import Writer
from pipeline.outputs.jsonl import JsonlWriter
from pipeline.outputs.metadata import DatasetMeta
from pipeline.outputs.partition import PartitionKind

# The module that holds each format's writer, with the libraries it imports (numpy, netCDF4,
# pyarrow): what a window worker's fork server loads once, so its workers share what the
# imports built.
WRITER_MODULES = {
    "jsonl": "pipeline.outputs.jsonl",
    "netcdf": "pipeline.outputs.netcdf",
    "csv": "pipeline.outputs.csv",
    "rawtext": "pipeline.outputs.rawtext",
    "jsonlcsv": "pipeline.outputs.rawtext",
    "parquet": "pipeline.outputs.parquet",
}

# The formats whose window writer, opened over the partition file a build of it has just
# published, appends later records without rendering or rewriting the records already there
# (NetCDF past `numrecs`, header patched; CSV after its last row), while a build holds its
# pages in memory until it publishes: a request series may publish such a partition page by
# page (`pipeline/engine/streams/timeseries.py`). What a continued build reads of the file:
# NetCDF its time variable and flags (records before) and the whole file again for its sha256;
# CSV about 64 KiB of its tail on the worker that wrote it (kept facts and digest; a continued
# build is opened there), the whole file (a scan, then its sha256) on a worker started since.
# Not JSON Lines (a window over an existing file merges its records in a dict, and a new one
# streams its pages to disk anyway: 1.2 GB in a backfill that published page by page),
# Parquet (rewritten whole at each publish) nor the raw formats (not measured).
GROWN_IN_PLACE = frozenset({"netcdf", "csv"})


class LazyWriters(Mapping[str, Writer]):
    """Writers by format name, each built (and its libraries imported) on first use: a
    process that writes only JSON Lines never pays for importing netCDF4, pyarrow and numpy."""

    _NAMES = ("jsonl", "netcdf", "csv", "rawtext", "jsonlcsv", "parquet")

    def __init__(self, metas: dict[str, DatasetMeta], partition: PartitionKind) -> None:
        self._metas = metas
        self._partition = partition
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
        if name == "jsonlcsv":
            from pipeline.outputs.rawtext import JsonlCsvWriter

            return JsonlCsvWriter(partition=self._partition)
        if name == "parquet":
            from pipeline.outputs.parquet import ParquetWriter

            return ParquetWriter(self._metas, partition=self._partition)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)
