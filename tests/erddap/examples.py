"""Hand-made datasets.xml entries and files that ERDDAP would load, to break one rule at a time.

`Example` holds one `<dataset>` as data; `render` turns it into XML. The builders make a
loadable dataset of each type erddap-config emits (NetCDF, CSV, Parquet, file names), with
their files in a folder; a negative case changes exactly one thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import netCDF4
import numpy as np


@dataclass(frozen=True, slots=True)
class Var:
    """One `<dataVariable>` (an empty data_type leaves the <dataType> tag out)."""

    source: str
    data_type: str
    attributes: dict[str, str] = field(default_factory=dict)
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class Example:
    """One `<dataset>` entry."""

    type: str
    dataset_id: str
    tags: tuple[tuple[str, str], ...]
    attributes: dict[str, str]
    variables: tuple[Var, ...]

    def with_tag(self, tag: str, text: str | None) -> Example:
        """This entry with `<tag>` set to `text` (or removed, for None)."""
        tags = [(t, v) for t, v in self.tags if t != tag]
        return replace(self, tags=(*tags, (tag, text)) if text is not None else tuple(tags))

    def with_attributes(self, **changes: str | None) -> Example:
        """This entry with global added attributes changed (None removes one)."""
        attributes = {**self.attributes, **changes}
        return replace(self, attributes={k: v for k, v in attributes.items() if v is not None})

    def with_variable(
        self,
        source: str,
        attributes: dict[str, str | None] | None = None,
        data_type: str | None = None,
        destination: str | None = None,
    ) -> Example:
        """This entry with the variable of `source` changed (attributes merge; None removes)."""
        variables = []
        for var in self.variables:
            if var.source == source:
                merged = {**var.attributes, **(attributes or {})}
                var = Var(
                    var.source,
                    var.data_type if data_type is None else data_type,
                    {k: v for k, v in merged.items() if v is not None},
                    destination or var.destination,
                )
            variables.append(var)
        return replace(self, variables=tuple(variables))

    def adding(self, *variables: Var) -> Example:
        return replace(self, variables=(*self.variables, *variables))

    def without(self, source: str) -> Example:
        return replace(self, variables=tuple(v for v in self.variables if v.source != source))


def _atts(attributes: dict[str, str], indent: str) -> list[str]:
    lines = [f"{indent}<addAttributes>"]
    lines += [f'{indent}    <att name="{k}">{escape(v)}</att>' for k, v in attributes.items()]
    return [*lines, f"{indent}</addAttributes>"]


def render(*examples: Example) -> str:
    """The datasets.xml fragment of `examples`."""
    out: list[str] = []
    for ex in examples:
        out.append(f'<dataset type="{ex.type}" datasetID={quoteattr(ex.dataset_id)} active="true">')
        out += [f"    <{tag}>{escape(text)}</{tag}>" for tag, text in ex.tags]
        out += _atts(ex.attributes, "    ")
        for var in ex.variables:
            destination = var.destination or var.source
            out += [
                "    <dataVariable>",
                f"        <sourceName>{escape(var.source)}</sourceName>",
                f"        <destinationName>{escape(destination)}</destinationName>",
                *([f"        <dataType>{var.data_type}</dataType>"] if var.data_type else []),
                *_atts(var.attributes, "        "),
                "    </dataVariable>",
            ]
        out.append("</dataset>")
    return "\n".join(out)


GLOBALS = {
    "title": "BACAX CTD",
    "summary": "Readings of a CTD at Barkley Canyon Axis.",
    "institution": "Ocean Networks Canada",
    "infoUrl": "https://data.oceannetworks.ca",
    "cdm_data_type": "TimeSeries",
    "cdm_timeseries_variables": "station,latitude,longitude,depth",
    "subsetVariables": "station,latitude,longitude,depth",
}


def _file_tags(folder: Path, regex: str) -> tuple[tuple[str, str], ...]:
    return (
        ("reloadEveryNMinutes", "1440"),
        ("fileDir", f"{folder}/"),
        ("fileNameRegex", regex),
        ("recursive", "true"),
        ("pathRegex", ".*"),
    )


def write_netcdf(
    path: Path,
    *,
    station: str = "BACAX",
    lat: float = 48.316585,
    temp_units: str = "degree_C",
    temp_attrs: bool = True,
    temp_comment: str = "Sea water temperature.",
    dims: tuple[str, str] = ("station", "time"),
    sal_dims: tuple[str, str] | None = None,
) -> None:
    """A CF timeSeries file like onc-pipeline's, three readings: `temp` on `dims` ((station,
    time) as earlier versions wrote, or (time, station) as NetCDF-3 files are), and `sal` on
    `sal_dims` when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("station", 1)
        ds.createDimension("time", 3)
        ds.featureType = "timeSeries"
        var = ds.createVariable("station", str, ("station",))
        var[0] = station
        var.cf_role = "timeseries_id"
        var.ioos_category = "Identifier"
        for name, value, units in (
            ("latitude", lat, "degrees_north"),
            ("longitude", -126.050798, "degrees_east"),
            ("depth", 985.0, "m"),
        ):
            var = ds.createVariable(name, "f8", ("station",))
            var[:] = [value]
            var.units = units
        var = ds.createVariable("time", "f8", ("time",))
        var[:] = np.array([0.0, 1.0, 2.0]) + 1.7e9
        var.units = "seconds since 1970-01-01T00:00:00Z"
        var = ds.createVariable("temp", "f8", dims)
        readings = np.array([[4.1, 4.2, 4.3]])
        var[:] = readings if dims[0] == "station" else readings.T
        var.units = temp_units
        var.comment = temp_comment
        if temp_attrs:
            var.ioos_category = "Temperature"
        if sal_dims is not None:
            var = ds.createVariable("sal", "f8", sal_dims)
            readings = np.array([[34.4, 34.5, 34.6]])
            var[:] = readings if sal_dims[0] == "station" else readings.T
            var.units = "PSU"
            var.ioos_category = "Salinity"


def netcdf_example(folder: Path) -> Example:
    """An EDDTableFromMultidimNcFiles over one file; attributes mostly from the file."""
    write_netcdf(folder / "2026" / "ctd_20261120.nc")
    return Example(
        "EDDTableFromMultidimNcFiles",
        "onc_bacax_ctd",
        (*_file_tags(folder, r".*\.nc"), ("metadataFrom", "last")),
        dict(GLOBALS),
        (
            Var("station", "String"),
            Var("latitude", "double"),
            Var("longitude", "double"),
            Var("depth", "double"),
            Var("time", "double"),
            Var("temp", "double"),
        ),
    )


CSV_TEXT = (
    "station,time,latitude,longitude,depth,temp,sal\n"
    ",UTC,degrees_north,degrees_east,m,degree_C,PSU\n"
    "BACAX,2026-11-20T00:00:00.000Z,48.316585,-126.050798,985.0,4.1,34.4\n"
    "BACAX,2026-11-20T00:00:01.000Z,48.316585,-126.050798,985.0,4.2,34.5\n"
)


def csv_example(folder: Path) -> Example:
    """An EDDTableFromAsciiFiles over one CSV file; every attribute from the XML."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ctd_20261120.csv").write_text(CSV_TEXT)
    return Example(
        "EDDTableFromAsciiFiles",
        "onc_bacax_ctd_csv",
        (
            *_file_tags(folder, r".*\.csv"),
            ("charset", "UTF-8"),
            ("columnSeparator", ","),
            ("columnNamesRow", "1"),
            ("firstDataRow", "3"),
            ("sortFilesBySourceNames", "time"),
        ),
        dict(GLOBALS),
        (
            Var("station", "String", {"cf_role": "timeseries_id", "ioos_category": "Identifier"}),
            Var("time", "String", {"units": "yyyy-MM-dd'T'HH:mm:ss.SSSZ"}),
            Var("latitude", "double", {"units": "degrees_north"}),
            Var("longitude", "double", {"units": "degrees_east"}),
            Var("depth", "double", {"units": "m"}),
            Var("temp", "double", {"units": "degree_C", "ioos_category": "Temperature"}),
            Var("sal", "double", {"units": "PSU", "ioos_category": "Salinity"}),
        ),
    )


def write_parquet(path: Path) -> None:
    """A Parquet table like onc-pipeline's, two readings; units only in the field metadata
    (which ERDDAP does not read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [
            pa.field(
                "time", pa.float64(), metadata={"units": "seconds since 1970-01-01T00:00:00Z"}
            ),
            pa.field("station", pa.string()),
            pa.field("latitude", pa.float64()),
            pa.field("longitude", pa.float64()),
            pa.field("depth", pa.float64()),
            pa.field("temp", pa.float64(), metadata={"units": "degree_C"}),
            pa.field("temp_qc", pa.int8()),
        ]
    )
    columns = [
        [1.7e9, 1.7e9 + 1],
        ["BACAX", "BACAX"],
        [48.316585] * 2,
        [-126.050798] * 2,
        [985.0] * 2,
        [4.1, float("nan")],
        [1, 9],
    ]
    pq.write_table(pa.table(columns, schema=schema), path)


def parquet_example(folder: Path) -> Example:
    """An EDDTableFromParquetFiles over one file; every attribute from the XML."""
    write_parquet(folder / "2026" / "ctd_20261120.parquet")
    return Example(
        "EDDTableFromParquetFiles",
        "onc_bacax_ctd_parquet",
        (*_file_tags(folder, r".*\.parquet"), ("sortFilesBySourceNames", "time")),
        dict(GLOBALS),
        (
            Var("time", "double", {"units": "seconds since 1970-01-01T00:00:00Z"}),
            Var("station", "String", {"cf_role": "timeseries_id", "ioos_category": "Identifier"}),
            Var("latitude", "double", {"units": "degrees_north"}),
            Var("longitude", "double", {"units": "degrees_east"}),
            Var("depth", "double", {"units": "m"}),
            Var("temp", "double", {"units": "degree_C", "ioos_category": "Temperature"}),
            Var("temp_qc", "byte", {"_FillValue": "-127", "ioos_category": "Quality"}),
        ),
    )


def file_names_example(folder: Path) -> Example:
    """An EDDTableFromFileNames over two archived files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (
        "ICLISTENHF1560_20261120T000000.000Z.wav",
        "ICLISTENHF1560_20261120T000500.000Z.wav",
    ):
        (folder / name).write_bytes(b"RIFF0000WAVE")
    return Example(
        "EDDTableFromFileNames",
        "onc_sevip_hydrophone",
        _file_tags(folder, r".*\.wav"),
        {
            "title": "SEVIP hydrophone files",
            "summary": "Archived hydrophone recordings.",
            "institution": "Ocean Networks Canada",
            "infoUrl": "https://data.oceannetworks.ca",
            "cdm_data_type": "Other",
        },
        (
            Var("url", "String", {"ioos_category": "Identifier"}),
            Var("name", "String", {"ioos_category": "Identifier"}),
            Var(
                "lastModified",
                "double",
                {"units": "milliseconds since 1970-01-01T00:00:00Z", "ioos_category": "Time"},
            ),
            Var("size", "double", {"units": "bytes", "ioos_category": "Other"}),
            Var(
                "fileType",
                "String",
                {"extractRegex": r".*\.(\w+)", "extractGroup": "1", "ioos_category": "Identifier"},
            ),
        ),
    )
