"""The ONC -> CF mapping is checked against the CF standard name table and UDUNITS."""

from __future__ import annotations

import pytest
from cf_units import Unit
from compliance_checker.cf.util import StandardNameTable

from pipeline.emulator.catalogue import DEVICES, PROPERTIES
from pipeline.outputs.cf_names import (
    CF_NAMES,
    STANDARD_NAME_TABLE_VERSION,
    cf_name,
    flag_meaning_word,
    udunits,
)

TABLE = StandardNameTable()  # the table packaged with compliance-checker: no network


def test_the_packaged_table_is_the_one_the_mapping_names() -> None:
    # If compliance-checker ships a newer table, re-run these tests against it and bump the
    # version in cf_names.py (files then name the table they were checked against).
    assert int(TABLE._version) >= STANDARD_NAME_TABLE_VERSION


@pytest.mark.parametrize("code", sorted(CF_NAMES))
def test_every_mapped_name_exists_and_its_units_convert(code: str) -> None:
    mapped = CF_NAMES[code]
    assert mapped.standard_name in TABLE
    canonical = TABLE[mapped.standard_name].canonical_units
    assert Unit(mapped.units).is_convertible(Unit(canonical)), (mapped, canonical)


def test_every_emulator_property_is_mapped_with_consistent_units() -> None:
    for prop in PROPERTIES.values():
        mapped = cf_name(prop.code)
        assert mapped is not None, prop.code
        unit = udunits(prop.uom)
        assert unit is not None
        assert Unit(unit).is_convertible(Unit(TABLE[mapped.standard_name].canonical_units))


def test_every_emulator_sensor_unit_is_udunits() -> None:
    for device in DEVICES.values():
        for sensor in device.sensors:
            Unit(udunits(sensor.unit))  # raises ValueError when UDUNITS cannot parse it


@pytest.mark.parametrize(
    ("onc", "cf"),
    [
        ("C", "degree_Celsius"),
        ("S/m", "S m-1"),
        ("decibar", "dbar"),
        ("psu", "1"),
        ("kg/m3", "kg m-3"),
        ("m", "m"),
        ("m/s", "m s-1"),
        (" %", "percent"),
    ],
)
def test_onc_units_to_udunits(onc: str, cf: str) -> None:
    assert udunits(onc) == cf


def test_unknown_units_pass_through_and_none_stays_none() -> None:
    assert udunits("furlongs/fortnight") == "furlongs/fortnight"
    assert udunits(None) is None
    assert udunits("  ") is None


def test_unmapped_properties_get_no_standard_name() -> None:
    assert cf_name(None) is None
    assert cf_name("dart_pressure_residual") is None
    assert cf_name("SeaWaterTemperature") == CF_NAMES["seawatertemperature"]


def test_flag_meanings_are_single_words() -> None:
    assert flag_meaning_word("Data Probably Good") == "data_probably_good"
    word = flag_meaning_word(
        "Insufficient Valid Data for Reliable Down-Sampling (ONC-defined flag)"
    )
    assert word == "insufficient_valid_data_for_reliable_down-sampling_onc-defined_flag"
    assert flag_meaning_word("  ") == "undefined"
