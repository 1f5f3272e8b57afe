"""ERDDAP `datasets.xml` entries for the configured streams (`onc-pipeline erddap-config`).

One ERDDAP dataset per (stream, ERDDAP-readable format): EDDTableFromMultidimNcFiles over the
NetCDF partitions, EDDTableFromAsciiFiles over the CSV partitions, EDDTableFromParquetFiles
(ERDDAP 2.25+) over the Parquet partitions, EDDTableFromFileNames over archive and product
files. Every enabled stream gets an entry or a comment saying why it has
none (a format ERDDAP has no reader for). Variables are read from the newest file already
harvested, so the snippet lists every sensor; before the first harvest it lists the fixed
variables and says so. File regexes never match the `*.tmp` names used while writing.

What a stock ERDDAP (default setup.xml) refuses, and what each entry does about it:
- every variable needs an `ioos_category` from EDV.IOOS_CATEGORIES (`variablesMustHaveIoosCategory`
  is true by default; ERDDAP/erddap WEB-INF/classes/gov/noaa/pfel/erddap/variable/EDV.java), so
  each dataVariable carries one in addAttributes, which also covers files written before our
  files carried it;
- the combined global attributes must hold title, summary, institution, infoUrl and
  cdm_data_type (EDD.ensureValid; EDDTableFromFileNames.java constructor javadoc), so every
  entry adds them unless the newest file already has them;
- `cdm_data_type=TimeSeries` needs exactly one `cf_role=timeseries_id` variable listed in
  `cdm_timeseries_variables` (erddap.github.io docs/server-admin/datasets.md, "cdm_data_type");
- no `coverage_content_type` on EDDTable variables (datasets.md, "coverage_content_type"):
  NetCDF files keep it for ACDD 1.3, and the entry removes it with the value "null";
- EDDTableFromFileNames takes no `<updateEveryNMillis>` (its fromXml throws
  unexpectedTagException for any tag outside its list) and any column but url, name,
  lastModified and size needs an `extractRegex` of the form `pre(group)post`
  (EDDTableFromFileNames.java constructor).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from pipeline.outputs.cf_names import ioos_category
from pipeline.outputs.manifest import MANIFEST_NAME
from pipeline.outputs.metadata import ONC_LICENSE, ONC_NAME, ONC_URL
from pipeline.outputs.rawtext import JSONL_CSV_SUFFIX
from pipeline.settings import (
    ArchiveFileStream,
    DataProductStream,
    Settings,
    StreamSettings,
    TimeSeriesStream,
)

_INDENT = "    "


@dataclass(frozen=True, slots=True)
class ErddapDataset:
    """One ERDDAP dataset published from a stream: its datasetID and the files it reads."""

    erddap_id: str
    dataset_id: str
    stream: str
    kind: str  # "netcdf" | "csv" | "parquet" | "jsonlcsv" | "files"
    suffix: str | None  # the file suffix that belongs to it; None: any file of the dataset
    file_regex: str


def erddap_datasets(settings: Settings) -> list[ErddapDataset]:
    """Every ERDDAP dataset the configured (enabled) streams feed, in configuration order."""
    return [d for stream in settings.streams if stream.enabled for d in stream_datasets(stream)]


def no_entry_reason(stream: StreamSettings) -> str | None:
    """Why an enabled stream has no ERDDAP dataset, or None when it has one."""
    if stream_datasets(stream) or not isinstance(stream, TimeSeriesStream):
        return None
    formats = ", ".join(stream.formats)
    if stream.kind == "scalardata":
        return (
            f"its formats ({formats}) have no ERDDAP reader: our JSON Lines hold one object per "
            "value, and ERDDAP's EDDTableFromJsonlCSVFiles reads one JSON array per line; "
            "add netcdf, csv or parquet to formats"
        )
    return (
        f"its formats ({formats}) have no ERDDAP reader: raw text is tab-separated with our "
        "own escapes, JSON Lines hold one object per line; add jsonlcsv (JSON Lines CSV) "
        "to formats"
    )


def stream_datasets(stream: StreamSettings) -> list[ErddapDataset]:
    """The ERDDAP datasets one stream feeds (none for formats ERDDAP cannot read)."""
    out: list[ErddapDataset] = []
    dataset = stream.resolved_dataset_id
    if isinstance(stream, TimeSeriesStream):
        formats = stream.formats
        if "netcdf" in formats:
            out.append(ErddapDataset(dataset, dataset, stream.name, "netcdf", ".nc", r".*\.nc"))
        if "csv" in formats:
            csv_id = stream.csv_dataset_id
            out.append(ErddapDataset(csv_id, dataset, stream.name, "csv", ".csv", r".*\.csv"))
        if "parquet" in formats:
            parquet_id = stream.parquet_dataset_id
            out.append(
                ErddapDataset(
                    parquet_id, dataset, stream.name, "parquet", ".parquet", r".*\.parquet"
                )
            )
        if "jsonlcsv" in formats:
            regex = rf".*{re.escape(JSONL_CSV_SUFFIX)}"
            out.append(
                ErddapDataset(dataset, dataset, stream.name, "jsonlcsv", JSONL_CSV_SUFFIX, regex)
            )
    elif isinstance(stream, ArchiveFileStream):
        exts = stream.file_extensions
        # Java regexes, matched against the whole name: never our temporaries (`*.tmp`, and
        # the hidden `.NAME.part` of a download in progress: ONC names never start with a
        # dot, onc/names.py refuses them) nor the manifest written next to the files.
        regex = (
            rf"{_NOT_MANIFEST}.*\.({'|'.join(map(re.escape, exts))})"
            if exts
            else rf"{_NOT_MANIFEST}(?!\.).*(?<!\.tmp)"
        )
        out.append(ErddapDataset(dataset, dataset, stream.name, "files", None, regex))
    elif isinstance(stream, DataProductStream):
        regex = rf"{_NOT_MANIFEST}.*\.{re.escape(stream.extension)}"
        out.append(ErddapDataset(dataset, dataset, stream.name, "files", None, regex))
    return out


_NOT_MANIFEST = rf"(?!{re.escape(MANIFEST_NAME)}$)"


def render_datasets_xml(settings: Settings) -> str:
    """The `datasets.xml` entries for every ERDDAP dataset the enabled streams feed."""
    root = settings.output.root.resolve()
    globals_ = _dataset_globals(settings)
    parts = [
        "<!-- datasets.xml entries generated by onc-pipeline erddap-config.\n"
        "     Paste them inside the erddapDatasets element of ERDDAP's datasets.xml.\n"
        "     New and changed files signal ERDDAP through output.erddap_flag_dir (flag/)\n"
        "     or setDatasetFlag.txt. -->"
    ]
    for stream in settings.streams:
        if not stream.enabled:
            continue
        if (reason := no_entry_reason(stream)) is not None:
            parts.append(f"<!-- stream {stream.name}: no ERDDAP dataset; {_comment(reason)} -->")
            continue
        for dataset in stream_datasets(stream):
            folder = root / dataset.dataset_id
            attrs = globals_(stream)
            if dataset.kind == "netcdf":
                parts.append(_netcdf_entry(dataset, folder, attrs))
            elif dataset.kind == "csv":
                parts.append(_csv_entry(dataset, folder, attrs))
            elif dataset.kind == "parquet":
                parts.append(_parquet_entry(dataset, folder, attrs))
            elif dataset.kind == "jsonlcsv":
                parts.append(_jsonl_csv_entry(dataset, folder, attrs))
            else:
                parts.append(_files_entry(dataset, folder, attrs))
    return "\n\n".join(parts) + "\n"


def _comment(text: str) -> str:
    return text.replace("--", "- -")


def _dataset_globals(settings: Settings) -> Callable[[StreamSettings], dict[str, str]]:
    """The global attributes ERDDAP requires, from the operator's `output.attributes` and ONC's
    defaults, for a stream (without discovery: erddap-config never calls the Oceans API)."""
    configured = settings.output.attributes

    def for_stream(stream: StreamSettings) -> dict[str, str]:
        platform = stream.location_code or stream.device_code or stream.resolved_dataset_id
        what = {
            "scalardata": "scalar sensor data",
            "rawdata": "raw instrument data",
            "archivefile": "archived files",
            "dataproduct": "data product files",
        }[stream.kind]
        instrument = stream.device_category_code or stream.device_code or ""
        return {
            "title": f"{ONC_NAME} {platform} {instrument} {what}".replace("  ", " "),
            "summary": f"{what.capitalize()} from {ONC_NAME} at {platform}"
            f"{f' ({instrument})' if instrument else ''}, harvested from the Oceans 3.0 API "
            "by onc-pipeline.",
            "institution": configured.get("institution", ONC_NAME),
            "infoUrl": configured.get("infoUrl", ONC_URL),
            "license": configured.get("license", ONC_LICENSE),
        }

    return for_stream


def _newest(folder: Path, suffix: str) -> Path | None:
    if not folder.is_dir():
        return None
    files = sorted(folder.rglob(f"*{suffix}"))
    return files[-1] if files else None


def _head(
    dataset: ErddapDataset, kind: str, folder: Path, *, update_every: bool = True
) -> list[str]:
    lines = [
        f'<dataset type="{kind}" datasetID={quoteattr(dataset.erddap_id)} active="true">',
        # Flags reload the dataset when files land; the timed reload is only a safety net.
        f"{_INDENT}<reloadEveryNMinutes>1440</reloadEveryNMinutes>",
    ]
    if update_every:
        lines.append(f"{_INDENT}<updateEveryNMillis>-1</updateEveryNMillis>")
    return [
        *lines,
        f"{_INDENT}<fileDir>{escape(str(folder))}/</fileDir>",
        f"{_INDENT}<fileNameRegex>{escape(dataset.file_regex)}</fileNameRegex>",
        f"{_INDENT}<recursive>true</recursive>",
        f"{_INDENT}<pathRegex>.*</pathRegex>",
    ]


def _attributes(
    attrs: Mapping[str, str], indent: str, types: Mapping[str, str] | None = None
) -> list[str]:
    """`<addAttributes>`; `types` gives ERDDAP's type of the non-String ones (datasets.md
    #attributetype: `type="byte"`, `type="byteList"`, ...)."""
    lines = [f"{indent}<addAttributes>"]
    for name, value in attrs.items():
        typed = f' type="{types[name]}"' if types and name in types else ""
        lines.append(f'{indent}{_INDENT}<att name="{name}"{typed}>{escape(value)}</att>')
    lines.append(f"{indent}</addAttributes>")
    return lines


def _variable(
    source: str,
    data_type: str,
    attrs: Mapping[str, str],
    types: Mapping[str, str] | None = None,
) -> list[str]:
    return [
        f"{_INDENT}<dataVariable>",
        f"{_INDENT * 2}<sourceName>{escape(source)}</sourceName>",
        f"{_INDENT * 2}<destinationName>{escape(source)}</destinationName>",
        f"{_INDENT * 2}<dataType>{data_type}</dataType>",
        *_attributes(attrs, _INDENT * 2, types),
        f"{_INDENT}</dataVariable>",
    ]


_NC_TYPES = {
    "f8": "double",
    "f4": "float",
    "i1": "byte",
    "i2": "short",
    "i4": "int",
    "S1": "String",
}

# The station variables: the timeseries_id and the constant position of each station.
STATION_VARIABLES = "station,latitude,longitude,depth"
_TIME_SERIES = {
    "cdm_data_type": "TimeSeries",
    "cdm_timeseries_variables": STATION_VARIABLES,
    "subsetVariables": STATION_VARIABLES,
    "sourceUrl": "(local files)",
}
# ioos_category of the fixed variables (EDV.java: "Location" for longitude, latitude, altitude
# and depth, "Time" for time; the station id is an "Identifier").
_FIXED_CATEGORY = {
    "station": "Identifier",
    "latitude": "Location",
    "longitude": "Location",
    "depth": "Location",
    "time": "Time",
}


def _category(name: str, standard_name: str | None) -> str:
    if name in _FIXED_CATEGORY:
        return _FIXED_CATEGORY[name]
    if name.endswith("_qc"):
        return "Quality"
    return ioos_category(standard_name, name)


def _netcdf_entry(dataset: ErddapDataset, folder: Path, globals_: dict[str, str]) -> str:
    lines = _head(dataset, "EDDTableFromMultidimNcFiles", folder)
    lines += [
        f"{_INDENT}<metadataFrom>last</metadataFrom>",
        f"{_INDENT}<sortFilesBySourceNames>time</sortFilesBySourceNames>",
        f"{_INDENT}<fileTableInMemory>false</fileTableInMemory>",
    ]
    sample = _newest(folder, ".nc")
    names = ["station", "latitude", "longitude", "depth", "time"]
    types = {"station": "String", "time": "double"}
    standard: dict[str, str | None] = {}
    file_globals: set[str] = set()
    if sample is not None:
        # Imported here: the daemon imports this module for ERDDAP flags, and netCDF4 and
        # numpy add start-up time it does not otherwise need.
        import netCDF4
        import numpy as np

        from pipeline.outputs.netcdf import NETCDF_LOCK

        with NETCDF_LOCK, netCDF4.Dataset(sample) as ds:
            file_globals = set(ds.ncattrs())
            for name, var in ds.variables.items():
                if name not in names:
                    names.append(name)
                types[name] = _NC_TYPES.get(np.dtype(var.dtype).str[1:], "double")
                attrs = var.ncattrs()
                standard[name] = str(var.standard_name) if "standard_name" in attrs else None
    # The newest file's own title/summary/... are better than ours; add only what it lacks.
    lines += _attributes(
        {**{k: v for k, v in globals_.items() if k not in file_globals}, **_TIME_SERIES}, _INDENT
    )
    if sample is None:
        lines.append(f"{_INDENT}<!-- no file yet: sensor variables appear after a harvest -->")
    for name in names:
        var_attrs = {"ioos_category": _category(name, standard.get(name))}
        if name not in _FIXED_CATEGORY:
            # Our files carry ACDD's coverage_content_type; ERDDAP's docs say "don't use this
            # tag for EDDTable datasets" (datasets.md, coverage_content_type), and an added
            # "null" removes a source attribute (EDV.java, combined attributes).
            var_attrs["coverage_content_type"] = "null"
        lines += _variable(name, types.get(name, "double"), var_attrs)
    lines.append("</dataset>")
    return "\n".join(lines)


def _csv_entry(dataset: ErddapDataset, folder: Path, globals_: dict[str, str]) -> str:
    lines = _head(dataset, "EDDTableFromAsciiFiles", folder)
    lines += [
        f"{_INDENT}<charset>UTF-8</charset>",
        f"{_INDENT}<columnSeparator>,</columnSeparator>",
        f"{_INDENT}<columnNamesRow>1</columnNamesRow>",
        f"{_INDENT}<firstDataRow>3</firstDataRow>",
        f"{_INDENT}<sortFilesBySourceNames>time</sortFilesBySourceNames>",
    ]
    lines += _attributes({**globals_, **_TIME_SERIES, "featureType": "TimeSeries"}, _INDENT)
    lines += _variable(
        "time",
        "String",
        {"units": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "standard_name": "time", "ioos_category": "Time"},
    )
    lines += _variable(
        "station",
        "String",
        {"cf_role": "timeseries_id", "long_name": "Station", "ioos_category": "Identifier"},
    )
    for axis, axis_units in (("latitude", "degrees_north"), ("longitude", "degrees_east")):
        lines += _variable(
            axis,
            "double",
            {"units": axis_units, "standard_name": axis, "ioos_category": "Location"},
        )
    lines += _variable(
        "depth",
        "double",
        {"units": "m", "positive": "down", "standard_name": "depth", "ioos_category": "Location"},
    )
    sample = _newest(folder, ".csv")
    if sample is None:
        lines.append(f"{_INDENT}<!-- no file yet: sensor columns appear after a harvest -->")
    else:
        with open(sample, encoding="utf-8") as handle:
            names = handle.readline().rstrip("\n").split(",")
            units = handle.readline().rstrip("\n").split(",")
        for name, unit in zip(names, units, strict=False):
            if name in _FIXED_CATEGORY:
                continue
            if name.endswith("_qc"):
                attrs = {"long_name": f"{name[:-3]} ONC QAQC flag", "ioos_category": "Quality"}
                lines += _variable(name, "byte", attrs)
            else:
                attrs = {"units": unit} if unit else {}
                lines += _variable(
                    name, "double", {**attrs, "ioos_category": _category(name, None)}
                )
    lines.append("</dataset>")
    return "\n".join(lines)


# ERDDAP's dataType of the Arrow types our Parquet files use (Parquet INT32 annotated INT(8)
# for int8; dictionary-encoded strings are UTF8 byte arrays).
_ARROW_TYPES = {"double": "double", "float": "float", "int8": "byte", "int32": "int"}
# A flag column's numeric attributes: ERDDAP wants _FillValue of the variable's own type
# (datasets.md #_fillvalue) and flag_values as numbers, not one string.
_FLAG_TYPES = {"_FillValue": "byte", "flag_values": "byteList"}


def _parquet_entry(dataset: ErddapDataset, folder: Path, globals_: dict[str, str]) -> str:
    # Parquet files carry no attributes ERDDAP reads (EDDTableFromParquetFiles.java: "There is
    # never any metadata"), so every attribute is added here: from the newest file's Arrow
    # metadata, where our writer keeps them, else the fixed variables' own.
    lines = [
        "<!-- EDDTableFromParquetFiles needs ERDDAP 2.25 or later. ERDDAP reads a whole "
        "Parquet file into memory\n     for each file a request touches: keep "
        "output.partition daily (or hourly). -->"
    ]
    lines += _head(dataset, "EDDTableFromParquetFiles", folder)
    lines += [
        f"{_INDENT}<sortFilesBySourceNames>time</sortFilesBySourceNames>",
        f"{_INDENT}<fileTableInMemory>false</fileTableInMemory>",
    ]
    # Imported here: the daemon imports this module for ERDDAP flags, and never needs pyarrow.
    from pipeline.outputs.parquet import (
        FIXED_ATTRIBUTES,
        field_attributes,
        global_attributes,
        schema_of,
    )

    sample = _newest(folder, ".parquet")
    file_globals: dict[str, str] = {}
    if sample is not None:
        schema = schema_of(sample)
        file_globals = global_attributes(schema)
        columns = field_attributes(schema)
    else:
        columns = [
            (name, "string" if name == "station" else "double", dict(attrs))
            for name, attrs in FIXED_ATTRIBUTES.items()
        ]
    # Per-file attributes would describe the newest file only, not the dataset.
    per_file = {
        "time_coverage_start",
        "time_coverage_end",
        "date_created",
        "date_modified",
        "history",
        "onc_device_code",
    }
    kept = {k: v for k, v in file_globals.items() if k not in per_file and v.strip()}
    lines += _attributes({**globals_, **kept, **_TIME_SERIES, "featureType": "TimeSeries"}, _INDENT)
    if sample is None:
        lines.append(f"{_INDENT}<!-- no file yet: sensor columns appear after a harvest -->")
    for name, arrow_type, attrs in columns:
        data_type = "String" if "string" in arrow_type else _ARROW_TYPES.get(arrow_type, "double")
        var_attrs = dict(attrs)
        var_attrs.setdefault("ioos_category", _category(name, var_attrs.get("standard_name")))
        lines += _variable(name, data_type, var_attrs, _FLAG_TYPES if data_type == "byte" else None)
    lines.append("</dataset>")
    return "\n".join(lines)


def _jsonl_csv_entry(dataset: ErddapDataset, folder: Path, globals_: dict[str, str]) -> str:
    # Raw instrument lines are text, not a time series of values: cdm_data_type Other.
    lines = _head(dataset, "EDDTableFromJsonlCSVFiles", folder)
    lines.append(f"{_INDENT}<sortFilesBySourceNames>time</sortFilesBySourceNames>")
    lines += _attributes(
        {**globals_, "cdm_data_type": "Other", "sourceUrl": "(local files)"}, _INDENT
    )
    lines += _variable(
        "time",
        "String",
        {"units": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "standard_name": "time", "ioos_category": "Time"},
    )
    lines += _variable(
        "lineType", "String", {"long_name": "ONC raw line type", "ioos_category": "Identifier"}
    )
    lines += _variable(
        "reading",
        "String",
        {"long_name": "The instrument's output, as received", "ioos_category": "Other"},
    )
    lines.append("</dataset>")
    return "\n".join(lines)


def _files_entry(dataset: ErddapDataset, folder: Path, globals_: dict[str, str]) -> str:
    # No <updateEveryNMillis>: EDDTableFromFileNames reads the directory on every request.
    lines = _head(dataset, "EDDTableFromFileNames", folder, update_every=False)
    lines += _attributes(
        {
            **globals_,
            "summary": globals_["summary"] + " Files are kept byte-for-byte as Ocean Networks "
            f"Canada archived them; sizes and SHA-256 digests are in {MANIFEST_NAME} next to them.",
            "cdm_data_type": "Other",
            "subsetVariables": "fileType",
            "sourceUrl": "(local files)",
        },
        _INDENT,
    )
    lines += _variable("url", "String", {"ioos_category": "Identifier", "long_name": "URL"})
    lines += _variable("name", "String", {"ioos_category": "Identifier", "long_name": "File Name"})
    lines += _variable(
        "lastModified",
        "long",
        {
            "ioos_category": "Time",
            "long_name": "Last Modified",
            "units": "milliseconds since 1970-01-01T00:00:00Z",
        },
    )
    lines += _variable(
        "size", "long", {"ioos_category": "Other", "long_name": "Size", "units": "bytes"}
    )
    # Extracted from the file name: EDDTableFromFileNames requires extractRegex for it.
    lines += _variable(
        "fileType",
        "String",
        {
            "extractRegex": r".*\.([A-Za-z0-9]+)",
            "extractGroup": "1",
            "ioos_category": "Identifier",
            "long_name": "File Type",
        },
    )
    lines.append("</dataset>")
    return "\n".join(lines)
