"""ERDDAP's loading rules for the dataset types onc-pipeline emits, one function per rule.

Each rule names its source: a file of ERDDAP/erddap (paths under src/main/java/gov/noaa/pfel/
erddap/) with the method and the statement that enforces it, or a section of
ERDDAP/erddap.github.io docs/server-admin/datasets.md; docs/dev/erddap-rules.md says which
versions were read. A rule yields one message per problem; no message means the dataset passes
it. Defaults are those of a stock setup.xml (EDStatic).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.outputs.publish import temp_path_for
from tests.erddap.dataset import LoadedDataset, station_variables
from tests.erddap.sources import FILE_NAME_COLUMNS
from tests.erddap.vocabulary import (
    ATTRIBUTE_NAME,
    CDM_TYPES,
    CONSISTENT_ATTRIBUTES,
    DATA_TYPES,
    DATASET_ID,
    DESTINATION_NAME,
    FILE_NAMES_TAGS,
    FILE_NAMES_TYPE,
    FROM_FILES_TAGS,
    FROM_FILES_TYPES,
    INVALID_ATTRIBUTE_CHARACTER,
    IOOS_CATEGORIES,
    KNOWN_TYPES,
    METERS_VARIANTS,
    NUMERIC_TYPES,
    SELF_CATEGORIZED,
    SINCE_UNITS,
    TIME_UNIT_WORDS,
    VARIABLE_TAGS,
)

Check = Callable[[LoadedDataset], Iterator[str]]
# Suffixes of the files onc-pipeline writes; each is written as `<name>.tmp` first.
_OUR_SUFFIXES = (".nc", ".csv", ".jsonl", ".txt", ".wav", ".mp4", ".png", ".mat", "")


@dataclass(frozen=True, slots=True)
class Rule:
    """One loading rule: a stable id, what it checks, where ERDDAP says so, and the check."""

    id: str
    summary: str
    source: str
    check: Check


def is_time_units(units: str | None) -> bool:
    """Calendar2.isTimeUnits: numeric " since " units or a date-time pattern with the year."""
    if not units:
        return False
    return " since " in units or "yyyy" in units or "YYYY" in units


def _cdm_type(ds: LoadedDataset) -> str | None:
    value = ds.global_attributes.get("cdm_data_type") or ds.global_attributes.get("featureType")
    if not value:
        return None
    matches = [t for t in CDM_TYPES if t.lower() == value.lower()]
    return matches[0] if matches else value


def _timeseries_ids(ds: LoadedDataset) -> list[str]:
    return [
        v.destination_name for v in ds.variables if v.attributes.get("cf_role") == "timeseries_id"
    ]


def _csv_names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


# --- rules --------------------------------------------------------------------------------


def dataset_type(ds: LoadedDataset) -> Iterator[str]:
    if ds.config.type not in KNOWN_TYPES:
        yield f"type={ds.config.type!r} is not one of the types this suite knows"


def dataset_id(ds: LoadedDataset) -> Iterator[str]:
    if not DATASET_ID.fullmatch(ds.dataset_id):
        yield (f"datasetID={ds.dataset_id!r} must be a letter followed by A-Z, a-z, 0-9 or _")


def dataset_id_unique(ds: LoadedDataset) -> Iterator[str]:
    if ds.duplicate_id:
        yield f"datasetID={ds.dataset_id!r} is used by another <dataset> (ignoring case)"


def unexpected_tags(ds: LoadedDataset) -> Iterator[str]:
    allowed = FILE_NAMES_TAGS if ds.config.type == FILE_NAMES_TYPE else FROM_FILES_TAGS
    if ds.config.type not in KNOWN_TYPES:
        return
    for tag, _ in ds.config.tags:
        if tag not in allowed:
            yield f"<{tag}> is an unexpected tag for {ds.config.type}"
    for var in ds.config.variables:
        for tag in var.tags:
            if tag not in VARIABLE_TAGS:
                yield f"<dataVariable> {var.source_name!r} has an unexpected tag <{tag}>"


def required_global_attributes(ds: LoadedDataset) -> Iterator[str]:
    attrs = ds.global_attributes
    for name in ("title", "summary", "infoUrl"):
        if not attrs.get(name, "").strip():
            yield f"global attribute {name!r} is missing or empty"
    if not (attrs.get("institution", "").strip() or attrs.get("creator_institution", "").strip()):
        yield "global attribute 'institution' (or 'creator_institution') is missing or empty"
    if not _cdm_type(ds):
        yield "global attribute 'cdm_data_type' (or 'featureType') is missing or empty"


def cdm_data_type(ds: LoadedDataset) -> Iterator[str]:
    value = _cdm_type(ds)
    if value and value not in CDM_TYPES:
        yield f"cdm_data_type={value!r} isn't one of {', '.join(CDM_TYPES)}"


def timeseries_id(ds: LoadedDataset) -> Iterator[str]:
    if _cdm_type(ds) != "TimeSeries":
        return
    ids = _timeseries_ids(ds)
    if len(ids) != 1:
        yield (
            "cdm_data_type=TimeSeries needs exactly one variable with cf_role=timeseries_id, "
            f"found {ids or 'none'}"
        )


def timeseries_variables(ds: LoadedDataset) -> Iterator[str]:
    if _cdm_type(ds) != "TimeSeries":
        return
    listed = _csv_names(ds.global_attributes.get("cdm_timeseries_variables", ""))
    if not listed:
        yield "cdm_data_type=TimeSeries needs the global attribute cdm_timeseries_variables"
    unknown = [n for n in listed if n not in ds.names()]
    if unknown:
        yield f"cdm_timeseries_variables names {unknown}, which are not dataVariables"
    ids = _timeseries_ids(ds)
    if listed and ids and ids[0] not in listed:
        yield f"cdm_timeseries_variables must include the timeseries_id variable {ids[0]!r}"


def timeseries_coordinates(ds: LoadedDataset) -> Iterator[str]:
    if _cdm_type(ds) in (None, "Other"):
        return
    for name in ("longitude", "latitude", "time"):
        if ds.variable(name) is None:
            yield f"cdm_data_type={_cdm_type(ds)} needs a {name!r} variable"


def station_position(ds: LoadedDataset) -> Iterator[str]:
    if _cdm_type(ds) != "TimeSeries":
        return
    ids = _timeseries_ids(ds)
    station = ds.variable(ids[0]) if len(ids) == 1 else None
    if station is None:
        return  # timeseries_id reports it
    names = [n for n in station_variables(ds.global_attributes, ds.variables) if n != ids[0]]
    sources = [v.source_name for n in names if (v := ds.variable(n)) is not None]
    seen: dict[str, dict[tuple[str, ...], str]] = defaultdict(dict)
    for table in ds.tables:
        columns = [table.values.get(station.source_name)] + [table.values.get(s) for s in sources]
        if any(c is None for c in columns):
            continue
        for row in zip(*columns, strict=False):
            seen[row[0]].setdefault(tuple(row[1:]), table.path.name)
    for station_id, positions in seen.items():
        if len(positions) > 1:
            shown = "; ".join(
                f"{dict(zip(names, p, strict=True))} in {f}" for p, f in list(positions.items())[:3]
            )
            yield (
                f"station {station_id!r} has {len(positions)} different values of {names}: {shown}"
            )


def ioos_category(ds: LoadedDataset) -> Iterator[str]:
    for var in ds.variables:
        if var.destination_name in SELF_CATEGORIZED or is_time_units(var.attributes.get("units")):
            continue
        category = var.attributes.get("ioos_category", "").strip()
        if not category:
            yield f"variable {var.destination_name!r} has no ioos_category"
        elif category not in IOOS_CATEGORIES:
            yield f"variable {var.destination_name!r}: ioos_category={category!r} isn't valid"


def destination_names(ds: LoadedDataset) -> Iterator[str]:
    for var in ds.variables:
        if not var.source_name:
            yield "a <dataVariable> has no <sourceName>"
        if not DESTINATION_NAME.fullmatch(var.destination_name):
            yield (
                f"destinationName={var.destination_name!r} must start with a letter and "
                "contain only A-Z, a-z, 0-9 or _"
            )


def unique_names(ds: LoadedDataset) -> Iterator[str]:
    for kind, names in (
        ("sourceName", [v.source_name for v in ds.variables if not v.source_name.startswith("=")]),
        ("destinationName", ds.names()),
    ):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            yield f"duplicate {kind}s: {duplicates}"


def data_types(ds: LoadedDataset) -> Iterator[str]:
    for var in ds.variables:
        if var.config.data_type is None and ds.config.type in KNOWN_TYPES:
            yield f"variable {var.source_name!r} has no <dataType>"
        elif var.data_type is not None and var.data_type not in DATA_TYPES:
            yield f"variable {var.source_name!r}: dataType={var.data_type!r} isn't supported"


def time_units(ds: LoadedDataset) -> Iterator[str]:
    for var in ds.variables:
        units = var.attributes.get("units")
        if var.destination_name != "time" and not is_time_units(units):
            continue
        if not units:
            yield f"time variable {var.destination_name!r} has no units"
            continue
        if not is_time_units(units):
            yield (
                f"time variable {var.destination_name!r}: units={units!r} is neither "
                "'<unit> since <date>' nor a date-time pattern with yyyy"
            )
            continue
        if " since " in units:
            match = SINCE_UNITS.fullmatch(units)
            if not match or match["unit"].lower() not in TIME_UNIT_WORDS:
                yield f"time variable {var.destination_name!r}: units={units!r} can't be parsed"
            elif var.data_type in ("String", "char"):
                yield f"time variable {var.destination_name!r} is text but has numeric units"
        elif var.data_type in NUMERIC_TYPES:
            yield f"time variable {var.destination_name!r} is numeric but has a text pattern"


def coordinate_variables(ds: LoadedDataset) -> Iterator[str]:
    for name in ("longitude", "latitude", "altitude", "depth"):
        var = ds.variable(name)
        if var is None:
            continue
        if var.data_type not in NUMERIC_TYPES:
            yield f"{name} must have a numeric dataType, not {var.data_type!r}"
        if name in ("altitude", "depth") and var.attributes.get("units") not in METERS_VARIANTS:
            yield f"{name} units MUST be 'm', not {var.attributes.get('units')!r}"


def altitude_and_depth(ds: LoadedDataset) -> Iterator[str]:
    if ds.variable("altitude") is not None and ds.variable("depth") is not None:
        yield "the dataset has both an altitude and a depth variable"


def file_names_extract_regex(ds: LoadedDataset) -> Iterator[str]:
    if ds.config.type != FILE_NAMES_TYPE:
        return
    for var in ds.config.variables:
        name = var.source_name
        if name.startswith("=") or name in FILE_NAME_COLUMNS:
            continue
        regex = var.add_attributes.get("extractRegex", "")
        group = var.add_attributes.get("extractGroup", "1")
        if not regex:
            yield f"'extractRegex' attribute wasn't specified for sourceName={name}"
        elif "(" not in regex or ")" not in regex:
            yield f"extractRegex={regex} for sourceName={name} needs a (group)"
        if not group.strip().lstrip("-").isdigit() or int(group) < 1:
            yield f"extractGroup={group} for sourceName={name} must be >= 1"


def files_match(ds: LoadedDataset) -> Iterator[str]:
    if ds.config.type not in KNOWN_TYPES:
        return
    if not ds.config.text("fileDir"):
        yield "fileDir wasn't specified"
    elif not ds.files:
        yield f"no file in {ds.config.text('fileDir')} matches {ds.config.text('fileNameRegex')!r}"


def files_readable(ds: LoadedDataset) -> Iterator[str]:
    for error in ds.read_errors:
        yield f"selected file can't be read: {error}"


def temporary_files(ds: LoadedDataset) -> Iterator[str]:
    regex = ds.config.text("fileNameRegex")
    if regex is None:
        return
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        yield f"fileNameRegex={regex!r} is not a valid regex: {exc}"
        return
    finals = [*ds.files, *(Path(f"part-0001{suffix}") for suffix in _OUR_SUFFIXES)]
    matched = sorted({t for f in finals if pattern.fullmatch(t := temp_path_for(f).name)})
    if matched:
        yield f"fileNameRegex={regex!r} matches files still being written: {matched}"


def source_names_exist(ds: LoadedDataset) -> Iterator[str]:
    if not ds.tables:
        return  # files_match reports it
    present = ds.source_names_in_files()
    for var in ds.config.variables:
        name = var.source_name
        if name.startswith("="):
            continue
        if ds.config.type == FILE_NAMES_TYPE and name not in FILE_NAME_COLUMNS:
            continue  # extracted from the name: file_names_extract_regex covers it
        if name not in present:
            yield f"sourceName={name!r} is in no selected file (columns: {sorted(present)[:12]})"


def _attribute_problems(owner: str, attributes: dict[str, str]) -> Iterator[str]:
    for name, value in attributes.items():
        if not ATTRIBUTE_NAME.fullmatch(name):
            yield f"{owner}: attribute name {name!r} isn't variable-name safe"
        if not value.strip():
            yield f"{owner}: attribute {name!r} has an empty value"
        elif bad := INVALID_ATTRIBUTE_CHARACTER.search(value):
            yield f"{owner}: attribute {name!r} has an invalid character #{ord(bad.group())}"


def attributes(ds: LoadedDataset) -> Iterator[str]:
    yield from _attribute_problems("global", ds.global_attributes)
    for var in ds.variables:
        yield from _attribute_problems(f"variable {var.destination_name!r}", var.attributes)


def coverage_content_type(ds: LoadedDataset) -> Iterator[str]:
    if "coverage_content_type" in ds.global_attributes:
        yield "the global attributes have coverage_content_type (not for EDDTable)"
    for var in ds.variables:
        if "coverage_content_type" in var.attributes:
            yield f"variable {var.destination_name!r} has coverage_content_type (not for EDDTable)"


def consistent_files(ds: LoadedDataset) -> Iterator[str]:
    for var in ds.variables:
        for name in CONSISTENT_ATTRIBUTES:
            values: dict[str, str] = {}
            for table in ds.tables:
                source = table.variables.get(var.source_name)
                if source is not None:
                    values.setdefault(source.attributes.get(name, "(none)"), table.path.name)
            if len(values) > 1:
                shown = "; ".join(f"{v!r} in {f}" for v, f in list(values.items())[:3])
                yield f"variable {var.source_name!r} has different {name} across files: {shown}"


def subset_variables(ds: LoadedDataset) -> Iterator[str]:
    listed = _csv_names(ds.global_attributes.get("subsetVariables", ""))
    unknown = [n for n in listed if n not in ds.names()]
    if unknown:
        yield f"subsetVariables {unknown} aren't dataVariables"


def sort_columns(ds: LoadedDataset) -> Iterator[str]:
    if ds.config.type not in FROM_FILES_TYPES:
        return
    sources = {v.source_name: v for v in ds.variables}
    for name in re.split(r"[\s,]+", ds.config.text("sortFilesBySourceNames") or ""):
        if name and name not in sources:
            yield f"sortFilesBySourceNames names {name!r}, which is no dataVariable's sourceName"
    sorted_column = ds.config.text("sortedColumnSourceName")
    if sorted_column:
        var = sources.get(sorted_column)
        if var is None:
            yield f"sortedColumnSourceName={sorted_column!r} is no dataVariable's sourceName"
        elif var.data_type not in NUMERIC_TYPES and not is_time_units(var.attributes.get("units")):
            yield f"sortedColumnSourceName={sorted_column!r} must be a numeric variable"


def dimension_order(ds: LoadedDataset) -> Iterator[str]:
    wanted = {v.source_name for v in ds.variables}
    for table in ds.tables:
        dims = [v.dimensions for n, v in table.variables.items() if n in wanted and v.dimensions]
        if not dims:
            continue
        most = max(len(d) for d in dims)
        # The first variable using every dimension sets the order; the others must match it.
        first = next(d for d in dims if len(d) == most)
        other = sorted(
            n
            for n, v in table.variables.items()
            if n in wanted
            and len(v.dimensions) == most
            and v.dimensions != first
            and set(v.dimensions) == set(first)
        )
        if other:
            yield (
                f"{table.path.name}: {other} use the dimensions ({', '.join(first)}) in another "
                "order than the first variable using them"
            )


DOCS = "ERDDAP/erddap.github.io docs/server-admin/datasets.md"
SRC = "ERDDAP/erddap src/main/java/gov/noaa/pfel/erddap"

RULES: tuple[Rule, ...] = (
    Rule(
        "dataset-type",
        "the <dataset type> is one this suite models",
        "the types erddap-config emits (vocabulary.KNOWN_TYPES); others are not checked",
        dataset_type,
    ),
    Rule(
        "dataset-id",
        "datasetID is file-name safe and has no period",
        f"{SRC}/dataset/EDD.java ensureValid(): Test.ensureFileNameSafe(datasetID, ...) and "
        '"periods are not allowed in datasetID\'s"',
        dataset_id,
    ),
    Rule(
        "dataset-id-unique",
        "no two <dataset>s share a datasetID",
        f'{SRC}/dataset/EDD.java datasetID() javadoc: "The datasetID must be unique, as '
        'datasetID is used as the virtual directory for this dataset"',
        dataset_id_unique,
    ),
    Rule(
        "unexpected-tag",
        "every tag is one the class's fromXml() accepts",
        f"{SRC}/dataset/EDDTableFromFiles.java and EDDTableFromFileNames.java fromXml(): "
        "xmlReader.unexpectedTagException(); EDD.getSDADVariableFromXml() for <dataVariable>",
        unexpected_tags,
    ),
    Rule(
        "required-global",
        "title, summary, institution, infoUrl and cdm_data_type are set",
        f"{SRC}/dataset/EDD.java ensureValid(): Test.ensureSomethingUnicode(title(), summary(), "
        "institution() [else creator_institution], infoUrl(), cdm_data_type [else featureType]); "
        f'{DOCS} #title, #summary, #infourl, #cdm_data_type ("MUST include this attribute")',
        required_global_attributes,
    ),
    Rule(
        "cdm-data-type",
        "cdm_data_type is one of EDD.CDM_TYPES",
        f'{SRC}/dataset/EDD.java ensureValid(): "isn\'t one of the standard CDM types"',
        cdm_data_type,
    ),
    Rule(
        "timeseries-id",
        "TimeSeries: exactly one variable has cf_role=timeseries_id",
        f'{DOCS} #timeseries: "One of the variables ... MUST have the variable attribute '
        "cf_role=timeseries_id\"; #cdm_data_type: a dataset whose metadata doesn't comply "
        '"will fail to load"',
        timeseries_id,
    ),
    Rule(
        "timeseries-variables",
        "TimeSeries: cdm_timeseries_variables is set, names dataVariables and the id variable",
        f'{DOCS} #cdm_timeseries_variables: "The dataset MUST include the globalAttribute '
        'cdm_timeseries_variables" ... "The list MUST include the cf_role=timeseries_id '
        'variable"',
        timeseries_variables,
    ),
    Rule(
        "timeseries-coordinates",
        "every cdm_data_type but Other has longitude, latitude and time",
        f'{DOCS} #related-notes: "All EDDTable datasets with a cdm_data_type other than '
        "'Other' MUST have longitude, latitude, and time variables\"",
        timeseries_coordinates,
    ),
    Rule(
        "station-position",
        "each station has one value of its cdm_timeseries_variables and of lat/lon/depth",
        f'{DOCS} #cdm_timeseries_variables: "For a given station, the values of these '
        'variables MUST be constant", "the latitude and longitude (and altitude or depth, if '
        'present) location of the station MUST be constant"; #cdm_data_type: otherwise "some '
        'requests for data will return incorrect data"',
        station_position,
    ),
    Rule(
        "ioos-category",
        "every variable has a valid ioos_category (variablesMustHaveIoosCategory=true)",
        f'{SRC}/variable/EDV.java ensureValid(): "if (EDStatic.variablesMustHaveIoosCategory)" '
        f'then ioos_category in IOOS_CATEGORIES; {DOCS} #ioos_category: "REQUIRED ... if '
        '<variablesMustHaveIoosCategory> is set to true (the default) in setup.xml"',
        ioos_category,
    ),
    Rule(
        "destination-name",
        "destinationName starts with a letter, then A-Z a-z 0-9 _",
        f"{SRC}/variable/EDV.java ensureValid(): \"must contain only A-Z, a-z, 0-9, or '_'\", "
        f'"must start with a letter"; {DOCS} #destinationname-1',
        destination_names,
    ),
    Rule(
        "unique-names",
        "sourceNames and destinationNames are unique",
        f'{SRC}/dataset/EDD.java ensureValid(): ensureNoDuplicates("Duplicate '
        'dataVariableSourceNames" / "Duplicate dataVariableDestinationNames")',
        unique_names,
    ),
    Rule(
        "data-type",
        "each variable has a <dataType> ERDDAP supports",
        f"{DOCS} #datatype: REQUIRED for EDDTableFromXxxFiles; "
        f"{SRC}/dataset/EDDTableFromFileNames.java constructor (\"<sourceType> wasn't "
        'specified"); variable/EDV.java constructor ("Invalid source dataType")',
        data_types,
    ),
    Rule(
        "time-units",
        "time variables have parseable time units matching their type",
        f"{SRC}/variable/EDVTimeStamp.java constructor: \"'units' wasn't set\", "
        'Calendar2.isTimeUnits ("isn\'t a valid time format"), Calendar2.getTimeBaseAndFactor; '
        f'{DOCS} #units ("REQUIRED ... for time variables")',
        time_units,
    ),
    Rule(
        "coordinates",
        "longitude/latitude/altitude/depth are numeric; altitude/depth units are m",
        f'{SRC}/variable/EDVLat.java, EDVLon.java, EDVDepth.java ("must be a numeric '
        'dataType"), EDVAlt.ensureUnitsAreM ("units MUST be \'m\'")',
        coordinate_variables,
    ),
    Rule(
        "altitude-and-depth",
        "not both an altitude and a depth variable",
        f'{SRC}/dataset/EDDTable.java ensureValid(): "The dataset has both an altitude and a '
        'depth variable"',
        altitude_and_depth,
    ),
    Rule(
        "extract-regex",
        "EDDTableFromFileNames: columns other than url/name/lastModified/size have extractRegex",
        f"{SRC}/dataset/EDDTableFromFileNames.java constructor: \"'extractRegex' attribute "
        'wasn\'t specified", "must have the form: preRegex(groupRegex)postRegex", '
        '"extractGroup ... must be >= 1"',
        file_names_extract_regex,
    ),
    Rule(
        "files-match",
        "fileDir is set and the regexes select at least one file",
        f'{SRC}/dataset/EDDTableFromFileNames.java constructor ("fileDir wasn\'t specified"; '
        'getDataForDapQuery "throws exception if 0 files"); EDDTableFromFiles refuses a '
        "dataset without data files (from memory; the statement was not located in the index)",
        files_match,
    ),
    Rule(
        "files-readable",
        "every selected file can be read by the class's reader",
        f'{DOCS} #missing_value / #units: files ERDDAP can\'t use are rejected as "Bad Files" '
        "and their data is not served",
        files_readable,
    ),
    Rule(
        "file-consistency",
        "units, _FillValue, missing_value, scale_factor, add_offset agree across files",
        f'{DOCS} #missing_value, #scale_factor, #units: "must be consistent; otherwise, ERDDAP '
        "will accept files with one set of values and reject all of the other files as Bad "
        'Files"',
        consistent_files,
    ),
    Rule(
        "temporary-files",
        "fileNameRegex never matches the *.tmp names written before an atomic rename",
        "a file matched while still being written is read half-written; onc-pipeline's "
        "pipeline/outputs/publish.py temp_path_for() names it <final>.tmp until os.replace",
        temporary_files,
    ),
    Rule(
        "source-name-exists",
        "every dataVariable sourceName is a column/variable of some selected file",
        f"{DOCS} #add-_fillvalue-attributes: a variable absent from a file is served as all "
        "missing values; one absent from every file is a configuration error, never data",
        source_names_exist,
    ),
    Rule(
        "attributes",
        "combined attribute names are variable-name safe; values non-empty, valid characters",
        f"{SRC}/dataset/EDD.java and variable/EDV.java ensureValid(): "
        'Test.ensureSomethingUnicode(combined attributes) ("names and attributes ... are '
        "something (not null or '') and are valid Unicode\": #32-#126, #160+, newline, tab) and "
        'ensureNamesAreVariableNameSafe ("must start with iso8859Letter|_ and contain only '
        'iso8859Letter|_|0-9")',
        attributes,
    ),
    Rule(
        "coverage-content-type",
        "no coverage_content_type in an EDDTable dataset",
        f'{DOCS} #coverage_content_type: "(Don\'t use this tag for EDDTable datasets.)"',
        coverage_content_type,
    ),
    Rule(
        "subset-variables",
        "subsetVariables name dataVariables",
        f"{SRC}/dataset/EDDTable.java ensureValid(): \"column=... in subsetVariables isn't in "
        f'dataVariables"; {DOCS} #subsetvariables (a list of destinationNames)',
        subset_variables,
    ),
    Rule(
        "dimension-order",
        "NetCDF: the variables using the most dimensions use them in one order (either order)",
        "ERDDAP/erddap coastwatch/pointdata/TableFromMultidimNcFile.java readMultidimNc(), "
        'which EDDTableFromMultidimNcFiles.lowGetSourceDataFromFile() calls: "first var with '
        'all dims: set loadDims to be in that order", then loads the variables that have "all '
        'of the dimensions in the expected order"; CF 1.8 9.3.1 lets the orthogonal '
        'representation give its dimensions "in any order"',
        dimension_order,
    ),
    Rule(
        "sort-columns",
        "sortFilesBySourceNames/sortedColumnSourceName name (numeric) sourceNames",
        f"{DOCS} #sortfilesbysourcenames, #sortedcolumnsourcename; "
        f'{SRC}/dataset/EDDTableFromMultidimNcFiles.java javadoc ("The sortedColumnSourceName '
        "can't be for a char/String variable\")",
        sort_columns,
    ),
)
