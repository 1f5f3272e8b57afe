"""The maintained mapping from ONC property codes and units to CF standard names and UDUNITS.

Only mappings that are right are listed: a property missing here gets a `long_name` and no
standard name, never an invented one. Every standard name below exists in the CF Standard Name
Table named by STANDARD_NAME_VOCABULARY and every unit converts to that name's canonical units
(tests/unit/outputs/test_cf_names.py checks both against the table and UDUNITS). To add a
property: add a row, run that test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# The table version the mapping was checked against; written as `standard_name_vocabulary`.
STANDARD_NAME_TABLE_VERSION = 93
STANDARD_NAME_VOCABULARY = f"CF Standard Name Table v{STANDARD_NAME_TABLE_VERSION}"


@dataclass(frozen=True, slots=True)
class CfName:
    """The CF identity of an ONC property: its standard name and the units ONC's values use."""

    standard_name: str
    units: str


# ONC property code (lower case, as `propertyCode` answers it) -> CF standard name and the
# UDUNITS form of ONC's usual unit for it. Units on data still come from each sensor's
# `unitOfMeasure` through `udunits()`; these are the fallback when a sensor has none.
CF_NAMES: Mapping[str, CfName] = {
    "conductivity": CfName("sea_water_electrical_conductivity", "S m-1"),
    "depth": CfName("depth", "m"),
    # CTD pressure is gauge ("sea") pressure: zero at the surface, atmosphere excluded.
    "pressure": CfName("sea_water_pressure_due_to_sea_water", "dbar"),
    # Bottom pressure recorders measure absolute pressure, atmosphere included.
    "totalpressure": CfName("sea_water_pressure", "dbar"),
    "salinity": CfName("sea_water_practical_salinity", "1"),
    "practicalsalinity": CfName("sea_water_practical_salinity", "1"),
    "absolutesalinity": CfName("sea_water_absolute_salinity", "g kg-1"),
    "sigmatheta": CfName("sea_water_sigma_theta", "kg m-3"),
    "sigmat": CfName("sea_water_sigma_t", "kg m-3"),
    "seawatertemperature": CfName("sea_water_temperature", "degree_Celsius"),
    "density": CfName("sea_water_density", "kg m-3"),
    "soundspeed": CfName("speed_of_sound_in_sea_water", "m s-1"),
    "oxygen": CfName("volume_fraction_of_oxygen_in_sea_water", "mL L-1"),
    "oxygensaturation": CfName("fractional_saturation_of_oxygen_in_sea_water", "percent"),
    "chlorophyll": CfName("mass_concentration_of_chlorophyll_in_sea_water", "ug L-1"),
    "ph": CfName("sea_water_ph_reported_on_total_scale", "1"),
    "airtemperature": CfName("air_temperature", "degree_Celsius"),
    "relativehumidity": CfName("relative_humidity", "percent"),
    "absolutebarometricpressure": CfName("air_pressure", "hPa"),
    "windspeed": CfName("wind_speed", "m s-1"),
    "winddirection": CfName("wind_from_direction", "degree"),
    "solarradiation": CfName("surface_downwelling_shortwave_flux_in_air", "W m-2"),
    "par": CfName("downwelling_photosynthetic_photon_flux_in_sea_water", "umol m-2 s-1"),
    "partialpressureofco2": CfName("partial_pressure_of_carbon_dioxide_in_sea_water", "uatm"),
    "significantwaveheight": CfName("sea_surface_wave_significant_height", "m"),
}

# ONC `unitOfMeasure` / `uom` text -> UDUNITS-2 text. Practical salinity is dimensionless in
# CF ("1"); "psu" is not a unit and PSS-78 values need no scaling.
_UNITS: Mapping[str, str] = {
    "c": "degree_Celsius",
    "°c": "degree_Celsius",
    "deg c": "degree_Celsius",
    "degc": "degree_Celsius",
    "degrees c": "degree_Celsius",
    "s/m": "S m-1",
    "ms/cm": "mS cm-1",
    "decibar": "dbar",
    "decibars": "dbar",
    "dbar": "dbar",
    "psu": "1",
    "pss-78": "1",
    "g/kg": "g kg-1",
    "kg/m3": "kg m-3",
    "kg/m^3": "kg m-3",
    "kg m-3": "kg m-3",
    "m": "m",
    "metres": "m",
    "meters": "m",
    "m/s": "m s-1",
    "cm/s": "cm s-1",
    "ml/l": "mL L-1",
    "umol/l": "umol L-1",
    "µmol/l": "umol L-1",
    "umol/kg": "umol kg-1",
    "µmol/kg": "umol kg-1",
    "ug/l": "ug L-1",
    "µg/l": "ug L-1",
    "mg/m3": "mg m-3",
    "%": "percent",
    "percent": "percent",
    "deg": "degree",
    "degrees": "degree",
    "hpa": "hPa",
    "mbar": "mbar",
    "kpa": "kPa",
    "pa": "Pa",
    "w/m^2": "W m-2",
    "w/m2": "W m-2",
    "umol/m2/s": "umol m-2 s-1",
    "µmol/m²/s": "umol m-2 s-1",
    "uatm": "uatm",
    "µatm": "uatm",
    "v": "V",
    "a": "A",
    "hz": "Hz",
    "s": "s",
}

_FLAG_WORD = re.compile(r"[^A-Za-z0-9_.+@-]+")


def cf_name(property_code: str | None) -> CfName | None:
    """The CF identity of an ONC property code, or None when it has no mapping."""
    if not property_code:
        return None
    return CF_NAMES.get(property_code.strip().lower())


def udunits(onc_unit: str | None) -> str | None:
    """ONC's unit text in UDUNITS form; unknown text passes through unchanged, None stays None."""
    if onc_unit is None:
        return None
    text = onc_unit.strip()
    if not text:
        return None
    return _UNITS.get(text.lower(), text)


def flag_meaning_word(meaning: str) -> str:
    """One blank-free `flag_meanings` word: "Data Probably Good" -> "data_probably_good"."""
    word = _FLAG_WORD.sub("_", meaning.strip().lower()).strip("_")
    return word or "undefined"


# ERDDAP refuses a variable without `ioos_category` while `variablesMustHaveIoosCategory` is
# true, its default, and accepts only the categories EDV.IOOS_CATEGORIES lists (ERDDAP/erddap
# WEB-INF/classes/gov/noaa/pfel/erddap/variable/EDV.java). A sensor's category comes from its
# CF standard name where we have one, else from words of its name; "Other" is ERDDAP's own
# fallback for a variable outside the predefined categories.
_IOOS_BY_WORD: tuple[tuple[str, str], ...] = (
    ("temperature", "Temperature"),
    ("salinity", "Salinity"),
    ("conductivity", "Salinity"),
    ("pressure", "Pressure"),
    ("oxygen", "Dissolved O2"),
    ("chlorophyll", "Ocean Color"),
    ("carbon_dioxide", "CO2"),
    ("ph_reported", "CO2"),
    ("wave", "Surface Waves"),
    ("wind", "Wind"),
    ("humidity", "Meteorology"),
    ("air_", "Meteorology"),
    ("photon", "Optical Properties"),
    ("shortwave", "Optical Properties"),
    ("density", "Physical Oceanography"),
    ("sigma", "Physical Oceanography"),
    ("sound", "Physical Oceanography"),
    ("depth", "Location"),
)


def ioos_category(standard_name: str | None, name: str = "") -> str:
    """The ERDDAP `ioos_category` of a sensor: by standard name, else by name, else Other."""
    for text in (standard_name or "", name.lower()):
        for word, category in _IOOS_BY_WORD:
            if text and word in text:
                return category
    return "Other"


# Names the file layouts use themselves (NetCDF, CSV, Parquet); a sensor code equal to one
# gets a suffix.
RESERVED_NAMES = frozenset({"time", "station", "latitude", "longitude", "depth", "name_strlen"})
_NAME_BAD = re.compile(r"[^A-Za-z0-9_]")


def variable_name(sensor_code: str) -> str:
    """A NetCDF/ERDDAP-safe variable (or column) name for a sensor code, stable across files
    and the same in every format."""
    name = _NAME_BAD.sub("_", sensor_code) or "sensor"
    if not name[0].isalpha():
        name = "s_" + name
    if name in RESERVED_NAMES:
        name += "_measured"
    return name
