"""The files a `<dataset>` selects and what ERDDAP reads from each: attributes, columns, values.

File selection follows EDDTableFromFiles / EDDTableFromFileNames (FileVisitorDNLS): every file
directly in `fileDir` whose name fully matches `fileNameRegex` (Java `Matcher.matches()`),
and, with `recursive=true`, files in subdirectories whose path (with a trailing slash) fully
matches `pathRegex`. The regexes our config emits use only syntax Java and Python share.

Per file type, what ERDDAP knows about the source:
- NetCDF (EDDTableFromMultidimNcFiles): global and variable attributes and the variables.
- ASCII/CSV (EDDTableFromAsciiFiles): column names from `columnNamesRow`, data from
  `firstDataRow`; no attributes at all.
- JSON Lines CSV (EDDTableFromJsonlCSVFiles): the first line is a JSON array of column names,
  every other line a JSON array of values; no attributes.
- Parquet (EDDTableFromParquetFiles, ERDDAP 2.25+): the columns and their types; no attributes
  ("There is never any metadata": EDDTableFromParquetFiles.java lowGetSourceDataFromFile), so
  the Arrow schema and field metadata our files carry are not read.
- EDDTableFromFileNames: the columns url, name, lastModified and size of each file.
Values are kept as text (numbers in a canonical form) for the station-position rule.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.erddap.config import DatasetConfig

# EDDTableFromFileNames: the columns every file has (FileVisitorDNLS.URL/NAME/LASTMODIFIED/SIZE).
FILE_NAME_COLUMNS = ("url", "name", "lastModified", "size")


@dataclass(frozen=True, slots=True)
class SourceVariable:
    """A variable (column) as the source file describes it."""

    name: str
    data_type: str  # ERDDAP's name: double, float, int, byte, String, ...
    attributes: dict[str, str] = field(default_factory=dict)
    # NetCDF: the variable's dimensions in order (a char array's string length left out).
    dimensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceTable:
    """What one source file tells ERDDAP."""

    path: Path
    global_attributes: dict[str, str]
    variables: dict[str, SourceVariable]
    values: dict[str, list[str]]  # source name -> values, for the names that were asked for


class SourceReadError(ValueError):
    """A selected file ERDDAP could not read either."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def select_files(config: DatasetConfig) -> list[Path]:
    """The files `fileDir`/`fileNameRegex`/`recursive`/`pathRegex` select, sorted by path."""
    file_dir = config.text("fileDir")
    if not file_dir or not Path(file_dir).is_dir():
        return []
    name_regex = re.compile(config.text("fileNameRegex") or ".*")
    path_regex = re.compile(config.text("pathRegex") or ".*")
    recursive = (config.text("recursive") or "false").lower() == "true"
    root = Path(file_dir)
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        if here != root and not path_regex.fullmatch(f"{here.as_posix()}/"):
            subdirs.clear()
            continue
        found += [here / f for f in files if name_regex.fullmatch(f) and (here / f).is_file()]
        if not recursive:
            subdirs.clear()
    return sorted(found)


def read_source(config: DatasetConfig, path: Path, wanted: Iterable[str]) -> SourceTable:
    """What ERDDAP reads from `path` for a dataset of `config.type`, values of `wanted` too."""
    names = set(wanted)
    reader = _READERS.get(config.type)
    if reader is None:
        raise SourceReadError(path, f"no reader for dataset type {config.type!r}")
    try:
        return reader(config, path, names)
    except SourceReadError:
        raise
    except (OSError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise SourceReadError(path, f"{type(exc).__name__}: {exc}") from exc


def canonical(value: Any) -> str:
    """A value as text, numbers in one form, so equal positions compare equal."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        try:
            return repr(float(text))
        except ValueError:
            return text
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


_NC_TYPES = {
    "f8": "double",
    "f4": "float",
    "i1": "byte",
    "u1": "ubyte",
    "i2": "short",
    "u2": "ushort",
    "i4": "int",
    "u4": "uint",
    "i8": "long",
    "u8": "ulong",
    "S1": "String",  # a char array: ERDDAP reads it as String
}


def _attribute_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return ", ".join(canonical(v) for v in value)
    except TypeError:
        return canonical(value)


def _read_netcdf(config: DatasetConfig, path: Path, wanted: set[str]) -> SourceTable:
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        global_attributes = {k: _attribute_text(ds.getncattr(k)) for k in ds.ncattrs()}
        variables: dict[str, SourceVariable] = {}
        values: dict[str, list[str]] = {}
        for name, var in ds.variables.items():
            dtype = "String" if var.dtype is str else _NC_TYPES.get(np.dtype(var.dtype).str[1:])
            attributes = {k: _attribute_text(var.getncattr(k)) for k in var.ncattrs()}
            dims = tuple(var.dimensions)
            if np.dtype(var.dtype).str[1:] == "S1" and dims:
                dims = dims[:-1]  # the string length: ERDDAP reads the array as Strings
            variables[name] = SourceVariable(name, dtype or "double", attributes, dims)
            if name in wanted:
                data = var[:]
                if np.dtype(var.dtype).str[1:] == "S1":
                    data = netCDF4.chartostring(data)
                values[name] = [canonical(v) for v in np.ravel(data).tolist()]
    return SourceTable(path, global_attributes, variables, values)


def _table(path: Path, header: list[str], rows: list[list[Any]], wanted: set[str]) -> SourceTable:
    variables = {name: SourceVariable(name, "String") for name in header if name}
    values: dict[str, list[str]] = {}
    for index, name in enumerate(header):
        if name in wanted:
            values[name] = [canonical(row[index]) if index < len(row) else "" for row in rows]
    return SourceTable(path, {}, variables, values)


def _separator(configured: str | None, header: str) -> str:
    """The column separator: as configured ("\\t" spelled out is a tab), else guessed from the
    column names row: tab, comma, semicolon, else space (our reading of Table.readASCII's
    guess; erddap-config always sets the separator, so this only serves hand-written XML)."""
    if configured:
        return "\t" if configured == "\\t" else configured
    return next((c for c in ("\t", ",", ";") if c in header), " ")


def _read_ascii(config: DatasetConfig, path: Path, wanted: set[str]) -> SourceTable:
    names_row = int(config.text("columnNamesRow") or "1")
    first_data_row = int(config.text("firstDataRow") or "2")
    charset = config.text("charset") or "ISO-8859-1"  # EDDTableFromFiles' default charset
    with open(path, encoding=charset, newline="") as handle:
        text = handle.read().splitlines()
    if names_row < 1 or len(text) < names_row:
        raise SourceReadError(path, f"no column names on row {names_row}")
    separator = _separator(config.text("columnSeparator"), text[names_row - 1])
    lines = list(csv.reader(text, delimiter=separator))
    header = [name.strip() for name in lines[names_row - 1]]
    return _table(path, header, lines[first_data_row - 1 :], wanted)


def _read_jsonl_csv(config: DatasetConfig, path: Path, wanted: set[str]) -> SourceTable:
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    if not lines or not isinstance(lines[0], list):
        raise SourceReadError(path, "the first line is not a JSON array of column names")
    rows = lines[1:]
    bad = [i + 2 for i, row in enumerate(rows) if not isinstance(row, list)]
    if bad:
        raise SourceReadError(path, f"line {bad[0]} is not a JSON array")
    return _table(path, [str(name) for name in lines[0]], rows, wanted)


# ERDDAP's names of the Arrow types a Parquet column may have (Parquet INT32 annotated INT(8)
# reads as int8; UTF8 byte arrays, dictionary-encoded or not, as String).
_ARROW_TYPES = {
    "double": "double",
    "float": "float",
    "int8": "byte",
    "int16": "short",
    "int32": "int",
    "int64": "long",
    "uint8": "ubyte",
    "uint16": "ushort",
    "uint32": "uint",
    "uint64": "ulong",
    "bool": "boolean",
}


def _read_parquet(config: DatasetConfig, path: Path, wanted: set[str]) -> SourceTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as exc:
        raise SourceReadError(path, f"not a Parquet file ERDDAP could read: {exc}") from exc
    variables: dict[str, SourceVariable] = {}
    values: dict[str, list[str]] = {}
    for column in table.schema:
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            data_type = "String"
        else:
            data_type = _ARROW_TYPES.get(str(kind), "String")
        variables[column.name] = SourceVariable(column.name, data_type)
        if column.name in wanted:
            values[column.name] = [canonical(v) for v in table.column(column.name).to_pylist()]
    return SourceTable(path, {}, variables, values)


def _read_file_name(config: DatasetConfig, path: Path, wanted: set[str]) -> SourceTable:
    stat = path.stat()
    row = [path.as_uri(), path.name, str(int(stat.st_mtime * 1000)), str(stat.st_size)]
    return _table(path, list(FILE_NAME_COLUMNS), [row], wanted)


_READERS = {
    "EDDTableFromMultidimNcFiles": _read_netcdf,
    "EDDTableFromNcFiles": _read_netcdf,
    "EDDTableFromNcCFFiles": _read_netcdf,
    "EDDTableFromAsciiFiles": _read_ascii,
    "EDDTableFromJsonlCSVFiles": _read_jsonl_csv,
    "EDDTableFromParquetFiles": _read_parquet,
    "EDDTableFromFileNames": _read_file_name,
}
