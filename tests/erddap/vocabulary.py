"""ERDDAP's own lists the loading rules compare against, each with the place it comes from.

Paths are in ERDDAP/erddap under src/main/java/gov/noaa/pfel/erddap/ (the 2.2x `main` branch
as the code index stores it).
"""

from __future__ import annotations

import re

FILE_NAMES_TYPE = "EDDTableFromFileNames"
# Attributes whose values must agree across a dataset's files (datasets.md #missing_value,
# #scale_factor, #units): otherwise ERDDAP accepts the files with one set of values and
# rejects the others as "Bad Files".
CONSISTENT_ATTRIBUTES = ("units", "_FillValue", "missing_value", "scale_factor", "add_offset")
# The EDDTableFromFiles subclasses whose files this suite can read (sources.py).
FROM_FILES_TYPES = frozenset(
    {
        "EDDTableFromMultidimNcFiles",
        "EDDTableFromNcFiles",
        "EDDTableFromNcCFFiles",
        "EDDTableFromAsciiFiles",
        "EDDTableFromJsonlCSVFiles",
        # Since ERDDAP 2.25; it extends EDDTableFromFiles and is built by its fromXml
        # (dataset/EDD.java fromXml: "EDDTableFromParquetFiles.fromXml(erddap, xmlReader)").
        "EDDTableFromParquetFiles",
    }
)
KNOWN_TYPES = FROM_FILES_TYPES | {FILE_NAMES_TYPE}

# dataset/EDDTableFromFiles.java, fromXml(): every tag it accepts; anything else reaches
# `else xmlReader.unexpectedTagException();` (and <altitudeMetersPerSourceUnit> throws).
FROM_FILES_TAGS = frozenset(
    """accessibleTo graphsAccessibleTo reloadEveryNMinutes updateEveryNMillis fileDir
    fileNameRegex recursive pathRegex accessibleViaFiles metadataFrom nDimensions
    preExtractRegex postExtractRegex extractRegex columnNameForExtract sortedColumnSourceName
    sortFilesBySourceNames charset skipHeaderToRegex skipLinesRegex columnNamesRow firstDataRow
    columnSeparator sourceNeedsExpandedFP_EQ specialMode fileTableInMemory onChange fgdcFile
    iso19115File sosOfferingPrefix defaultDataQuery defaultGraphQuery addVariablesWhere isLocal
    removeMVRows standardizeWhat nThreads cacheFromUrl cacheSizeGB
    cachePartialPathRegex""".split()  # noqa: SIM905 (a list copied from the source reads best)
)
# dataset/EDDTableFromFileNames.java, fromXml(): the switch's accepted tags, then
# `default -> xmlReader.unexpectedTagException();`. Its comment: "this doesn't support
# updateEveryNMillis".
FILE_NAMES_TAGS = frozenset(
    """accessibleTo graphsAccessibleTo reloadEveryNMinutes pathRegex recursive fileNameRegex
    fileDir addVariablesWhere defaultGraphQuery defaultDataQuery iso19115File fgdcFile
    onChange""".split()  # noqa: SIM905
)
# dataset/EDD.java getSDADVariableFromXml(): the children a <dataVariable> may have.
VARIABLE_TAGS = frozenset({"sourceName", "destinationName", "dataType", "addAttributes"})

# dataset/EDD.java CDM_TYPES (ensureValid(): "cdm_data_type=... isn't one of the standard CDM
# types"; a difference of case only is corrected, not refused).
CDM_TYPES = (
    "Grid", "MovingGrid", "Other", "Point", "Profile", "RadialSweep", "TimeSeries",
    "TimeSeriesProfile", "Swath", "Trajectory", "TrajectoryProfile",
)  # fmt: skip

# variable/EDV.java IOOS_CATEGORIES, checked by EDV.ensureValid().
IOOS_CATEGORIES = frozenset(
    [
        "Bathymetry", "Biology", "Bottom Character", "CO2", "Colored Dissolved Organic Matter",
        "Contaminants", "Currents", "Dissolved Nutrients", "Dissolved O2", "Ecology",
        "Fish Abundance", "Fish Species", "Heat Flux", "Hydrology", "Ice Distribution",
        "Identifier", "Location", "Meteorology", "Ocean Color", "Optical Properties", "Other",
        "Pathogens", "Physical Oceanography", "Phytoplankton Species", "Pressure",
        "Productivity", "Quality", "Salinity", "Sea Level", "Soils", "Statistics",
        "Stream Flow", "Surface Waves", "Taxonomy", "Temperature", "Time",
        "Total Suspended Matter", "Unknown", "Wind", "Zooplankton Species",
        "Zooplankton Abundance",
    ]
)  # fmt: skip
# Destination names whose EDV subclass sets ioos_category itself before ensureValid()
# (EDVLat/EDVLon/EDVAlt/EDVDepth: "Location"; EDVTime, and EDVTimeStamp for any variable with
# time units: "Time").
SELF_CATEGORIZED = frozenset({"longitude", "latitude", "altitude", "depth", "time"})

# com.cohort.array.PAType.fromCohortString, used by the EDV constructor ("Invalid source
# dataType=..."); "boolean" is accepted and stored as byte.
DATA_TYPES = frozenset(
    {"byte", "ubyte", "short", "ushort", "int", "uint", "long", "ulong", "float", "double",
     "char", "String", "boolean"}
)  # fmt: skip
NUMERIC_TYPES = DATA_TYPES - {"char", "String"}
# variable/EDV.java METERS_VARIANTS, checked by EDVAlt.ensureUnitsAreM for altitude and depth.
METERS_VARIANTS = frozenset({"m", "meter", "meters", "metre", "metres"})

# com.cohort.util.Calendar2.getTimeBaseAndFactor: "<unit> since <base time>".
TIME_UNIT_WORDS = frozenset(
    """ms msec msecs millis millisecond milliseconds s sec secs second seconds m min mins
    minute minutes h hr hrs hour hours d day days week weeks mon mons month months yr yrs year
    years""".split()  # noqa: SIM905
)
SINCE_UNITS = re.compile(
    r"\s*(?P<unit>[A-Za-z]+)\s+since\s+"
    r"-?\d{1,4}-\d{1,2}(-\d{1,2})?([T ]\d{1,2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{1,2}(:?\d{2})?)?\s*",
    re.IGNORECASE,
)
# com.cohort.util.String2.isVariableNameSafe, applied to every combined attribute name by
# Attributes.ensureNamesAreVariableNameSafe: (iso8859Letter|_) then (iso8859Letter|_|0-9).
_LATIN1_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
ATTRIBUTE_NAME = re.compile(f"[{_LATIN1_LETTERS}_][{_LATIN1_LETTERS}_0-9]*")
# com.cohort.util.String2.findInvalidUnicode(s, "\n\t") as Test.ensureSomethingUnicode calls it
# for attributes: valid characters are #32-#126, #160 and up, plus newline and tab.
INVALID_ATTRIBUTE_CHARACTER = re.compile(r"[^\n\t\x20-\x7e\u00a0-\U0010ffff]")
# variable/EDV.java ensureValid(): letters, digits and _, starting with a letter.
DESTINATION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# datasets.md #datasetid: "The datasetIDs MUST be a letter (A-Z, a-z) followed by any number of
# A-Z, a-z, 0-9, and _". (The code, EDD.ensureValid(), refuses less: Test.ensureFileNameSafe,
# i.e. 0-9 A-Z a-z _ - ., then "periods are not allowed in datasetID's".)
DATASET_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
