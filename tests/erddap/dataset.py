"""A `<dataset>` as ERDDAP would assemble it: its files, read, and its attributes combined.

Combining follows the EDD/EDV constructors: the source attributes (from the file
`metadataFrom` names, default "last") are overlaid by `<addAttributes>`, which take
precedence; an added value of "null" removes the attribute
(`new LocalizedAttributes(addGlobalAttributes, sourceGlobalAttributes)` then
`removeValue("\"null\"")` in EDDTableFromFileNames.java; EDV.makeCombinedAttributes), and so
does an empty added value (datasets.md #global-attributes: "The empty cwhdf_version attribute
causes the source cwhdf_version attribute (if any) to be removed").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.erddap.config import NULL, DatasetConfig, DataVariable
from tests.erddap.sources import (
    SourceReadError,
    SourceTable,
    SourceVariable,
    read_source,
    select_files,
)
from tests.erddap.vocabulary import KNOWN_TYPES


def combine(source: dict[str, str], add: dict[str, str]) -> dict[str, str]:
    """Source attributes overlaid by added ones; an added "null" or "" removes the attribute."""
    removed = {name for name, value in add.items() if value in (NULL, "")}
    combined = {**source, **add}
    return {n: v for n, v in combined.items() if n not in removed and v != NULL}


@dataclass(frozen=True, slots=True)
class Variable:
    """One data variable with its combined attributes."""

    config: DataVariable
    source: SourceVariable | None  # as described by the metadata file, if it has it
    attributes: dict[str, str]

    @property
    def destination_name(self) -> str:
        return self.config.destination_name

    @property
    def source_name(self) -> str:
        return self.config.source_name

    @property
    def data_type(self) -> str | None:
        """The declared `<dataType>`, else the type the metadata file gives."""
        if self.config.data_type:
            return self.config.data_type
        return self.source.data_type if self.source else None


@dataclass(frozen=True, slots=True)
class LoadedDataset:
    """Everything the rules look at for one dataset."""

    config: DatasetConfig
    files: list[Path]
    tables: list[SourceTable]
    read_errors: list[SourceReadError]
    global_attributes: dict[str, str]
    variables: list[Variable]
    duplicate_id: bool = False

    @property
    def dataset_id(self) -> str:
        return self.config.dataset_id

    def variable(self, destination_name: str) -> Variable | None:
        for var in self.variables:
            if var.destination_name == destination_name:
                return var
        return None

    def names(self) -> list[str]:
        return [v.destination_name for v in self.variables]

    def source_names_in_files(self) -> set[str]:
        return {name for table in self.tables for name in table.variables}


def _metadata_table(config: DatasetConfig, tables: list[SourceTable]) -> SourceTable | None:
    if not tables:
        return None
    # EDDTableFromFiles: metadataFrom "first" or "last" (the default, MF_LAST) file.
    return tables[0] if (config.text("metadataFrom") or "last") == "first" else tables[-1]


def station_variables(attributes: dict[str, str], variables: Iterable[Variable]) -> list[str]:
    """Destination names that describe a station: cdm_timeseries_variables and its location.

    datasets.md #cdm_timeseries_variables: "the latitude and longitude (and altitude or depth,
    if present) location of the station MUST be constant".
    """
    listed = [n.strip() for n in attributes.get("cdm_timeseries_variables", "").split(",")]
    location = ["latitude", "longitude", "altitude", "depth"]
    names = {v.destination_name for v in variables}
    return [n for n in dict.fromkeys([*listed, *location]) if n in names]


def _station_source_names(global_attributes: dict[str, str], variables: list[Variable]) -> set[str]:
    """Source names whose values the station-position rule needs."""
    wanted: set[str] = set()
    by_destination = {v.destination_name: v.source_name for v in variables}
    for var in variables:
        if var.attributes.get("cf_role") == "timeseries_id":
            wanted.add(var.source_name)
    for name in station_variables(global_attributes, variables):
        if name in by_destination:
            wanted.add(by_destination[name])
    return wanted


def load(config: DatasetConfig, duplicate_id: bool = False) -> LoadedDataset:
    """Select and read the dataset's files and combine attributes as ERDDAP does."""
    files = select_files(config) if config.type in KNOWN_TYPES else []
    tables: list[SourceTable] = []
    errors: list[SourceReadError] = []
    for path in files:
        try:
            tables.append(read_source(config, path, ()))
        except SourceReadError as exc:
            errors.append(exc)
    meta = _metadata_table(config, tables)
    source_globals = meta.global_attributes if meta else {}
    global_attributes = combine(source_globals, config.add_attributes)
    variables = []
    for var in config.variables:
        source = meta.variables.get(var.source_name) if meta else None
        attributes = combine(source.attributes if source else {}, var.add_attributes)
        variables.append(Variable(var, source, attributes))
    # Second pass for the values the station rule needs, now that cf_role is known.
    wanted = _station_source_names(global_attributes, variables)
    if wanted:
        tables = [read_source(config, table.path, wanted) for table in tables]
    return LoadedDataset(
        config, files, tables, errors, global_attributes, variables, duplicate_id=duplicate_id
    )
