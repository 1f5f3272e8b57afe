"""The checker itself: hand-made loadable datasets pass; one broken rule is refused by name.

Every rule in rules.RULES has at least one negative case here (a test checks that), and each
case must be refused by exactly that rule, so a case that breaks two rules at once, or a rule
that fires on a loadable dataset, fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.erddap.checker import check_datasets_xml, format_violations
from tests.erddap.dataset import combine
from tests.erddap.examples import (
    Example,
    Var,
    csv_example,
    file_names_example,
    netcdf_example,
    parquet_example,
    render,
    write_netcdf,
)
from tests.erddap.rules import RULES

Case = Callable[[Path], str]  # tmp_path -> datasets.xml fragment


@pytest.mark.parametrize(
    "build", [netcdf_example, csv_example, parquet_example, file_names_example]
)
def test_loadable_examples_pass(tmp_path: Path, build: Callable[[Path], Example]) -> None:
    violations = check_datasets_xml(render(build(tmp_path / "data")))
    assert not violations, format_violations(violations)


def test_added_attributes_override_source_and_null_or_empty_removes() -> None:
    source = {"units": "degree_C", "ioos_category": "Temperature", "comment": "raw", "x": "1"}
    added = {"units": "K", "ioos_category": "null", "x": ""}
    assert combine(source, added) == {"units": "K", "comment": "raw"}


def _nc(tmp: Path) -> Example:
    return netcdf_example(tmp / "nc")


def _csv(tmp: Path) -> Example:
    return csv_example(tmp / "csv")


def _parquet(tmp: Path) -> Example:
    return parquet_example(tmp / "parquet")


def _files(tmp: Path) -> Example:
    return file_names_example(tmp / "files")


def _two_positions(tmp: Path) -> str:
    ex = _nc(tmp)
    # The same station after a redeployment 20 m further north, in the next day's file.
    write_netcdf(tmp / "nc" / "2026" / "ctd_20261121.nc", lat=48.316765)
    return render(ex)


def _units_changed(tmp: Path) -> str:
    ex = _nc(tmp)
    write_netcdf(tmp / "nc" / "2026" / "ctd_20261121.nc", temp_units="K")
    return render(ex)


def _comment_with(tmp: Path, text: str) -> str:
    ex = _nc(tmp)
    write_netcdf(tmp / "nc" / "2026" / "ctd_20261120.nc", temp_comment=text)
    return render(ex)


def _mixed_dimension_order(tmp: Path) -> str:
    ex = _nc(tmp)
    write_netcdf(tmp / "nc" / "2026" / "ctd_20261120.nc", sal_dims=("time", "station"))
    return render(ex.adding(Var("sal", "double")))


def test_time_first_files_pass(tmp_path: Path) -> None:
    # NetCDF-3 files put the unlimited time dimension first: (time, station) throughout.
    ex = _nc(tmp_path)
    dims = ("time", "station")
    write_netcdf(tmp_path / "nc" / "2026" / "ctd_20261120.nc", dims=dims, sal_dims=dims)
    violations = check_datasets_xml(render(ex.adding(Var("sal", "double"))))
    assert not violations, format_violations(violations)


def _unreadable(tmp: Path) -> str:
    ex = _nc(tmp)
    (tmp / "nc" / "2026" / "ctd_20261119.nc").write_bytes(b"not a netcdf file")
    return render(ex)


def _unreadable_parquet(tmp: Path) -> str:
    ex = _parquet(tmp)
    (tmp / "parquet" / "2026" / "ctd_20261119.parquet").write_bytes(b"PAR1 not parquet PAR1")
    return render(ex)


def _category_only_in_file_removed(tmp: Path) -> str:
    return render(_nc(tmp).with_variable("temp", {"ioos_category": "null"}))


def _category_missing_in_file(tmp: Path) -> str:
    ex = _nc(tmp)
    write_netcdf(tmp / "nc" / "2026" / "ctd_20261120.nc", temp_attrs=False)
    return render(ex)


NEGATIVE: list[tuple[str, str, Case]] = [
    ("dataset-type", "unknown type",
     lambda t: render(replace(_csv(t), type="EDDTableFromDatabase"))),
    ("dataset-id", "period", lambda t: render(replace(_csv(t), dataset_id="onc.bacax_ctd"))),
    ("dataset-id", "slash", lambda t: render(replace(_csv(t), dataset_id="onc/bacax"))),
    ("dataset-id", "hyphen", lambda t: render(replace(_csv(t), dataset_id="onc-bacax"))),
    ("dataset-id", "digit first", lambda t: render(replace(_csv(t), dataset_id="2bacax"))),
    ("dataset-id-unique", "twice", lambda t: render(_csv(t), _csv(t))),
    ("dataset-id-unique", "case only",
     lambda t: render(_csv(t), replace(_csv(t), dataset_id="ONC_bacax_ctd_csv"))),
    ("unexpected-tag", "updateEveryNMillis on file names",
     lambda t: render(_files(t).with_tag("updateEveryNMillis", "-1"))),
    ("unexpected-tag", "misspelt tag", lambda t: render(_csv(t).with_tag("fileRegex", ".*"))),
    ("required-global", "no infoUrl", lambda t: render(_csv(t).with_attributes(infoUrl=None))),
    ("required-global", "no institution",
     lambda t: render(_files(t).with_attributes(institution=None))),
    ("cdm-data-type", "Station",
     lambda t: render(_csv(t).with_attributes(cdm_data_type="Station"))),
    ("timeseries-id", "no cf_role", lambda t: render(_csv(t).with_variable(
        "station", {"cf_role": None}))),
    ("timeseries-variables", "missing", lambda t: render(
        _csv(t).with_attributes(cdm_timeseries_variables=None))),
    ("timeseries-variables", "unknown name", lambda t: render(
        _csv(t).with_attributes(cdm_timeseries_variables="station,latitude,longitude,platform"))),
    ("timeseries-coordinates", "Point without time", lambda t: render(_csv(t).without("time")
        .with_attributes(cdm_data_type="Point", cdm_timeseries_variables=None)
        .with_tag("sortFilesBySourceNames", None))),
    ("timeseries-coordinates", "no longitude", lambda t: render(_csv(t).without("longitude")
        .with_attributes(cdm_timeseries_variables="station,latitude,depth",
                         subsetVariables="station,latitude,depth"))),
    ("station-position", "redeployed station", _two_positions),
    ("ioos-category", "missing in file and XML", _category_missing_in_file),
    ("ioos-category", "removed with null", _category_only_in_file_removed),
    ("ioos-category", "invalid", lambda t: render(_csv(t).with_variable(
        "temp", {"ioos_category": "Temp"}))),
    ("destination-name", "hyphen", lambda t: render(_csv(t).with_variable(
        "temp", destination="sea-temp"))),
    ("destination-name", "digit first", lambda t: render(_csv(t).with_variable(
        "temp", destination="1temp"))),
    ("unique-names", "two temps", lambda t: render(_csv(t).with_variable(
        "sal", destination="temp"))),
    ("data-type", "no dataType",
     lambda t: render(_csv(t).with_variable("temp", data_type=""))),
    ("data-type", "numpy name",
     lambda t: render(_csv(t).with_variable("temp", data_type="float64"))),
    ("time-units", "not time units", lambda t: render(_nc(t).with_variable(
        "time", {"units": "seconds after 1970-01-01"}))),
    ("time-units", "unparseable base", lambda t: render(_nc(t).with_variable(
        "time", {"units": "seconds since the epoch"}))),
    # ERDDAP reads no metadata from Parquet: units only in the file's field metadata are lost.
    ("time-units", "Parquet units only in the file", lambda t: render(_parquet(t).with_variable(
        "time", {"units": None}))),
    ("coordinates", "depth in fathoms", lambda t: render(_csv(t).with_variable(
        "depth", {"units": "fathoms"}))),
    ("coordinates", "text latitude", lambda t: render(_csv(t).with_variable(
        "latitude", data_type="String"))),
    ("altitude-and-depth", "both", lambda t: render(_csv(t).adding(
        Var("=0", "double", {"units": "m"}, destination="altitude")))),
    ("extract-regex", "fileType without extractRegex", lambda t: render(_files(t).with_variable(
        "fileType", {"extractRegex": None}))),
    ("extract-regex", "regex without a group", lambda t: render(_files(t).with_variable(
        "fileType", {"extractRegex": r".*\.wav"}))),
    ("files-match", "no file matches",
     lambda t: render(_files(t).with_tag("fileNameRegex", r".*\.mp4"))),
    ("files-readable", "corrupt NetCDF", _unreadable),
    ("files-readable", "corrupt Parquet", _unreadable_parquet),
    ("file-consistency", "units change between files", _units_changed),
    ("temporary-files", "regex matches .tmp", lambda t: render(_csv(t).with_tag(
        "fileNameRegex", r".*\.csv.*"))),
    ("source-name-exists", "column not in file", lambda t: render(_csv(t).adding(
        Var("oxygen", "double", {"units": "ml/l", "ioos_category": "Dissolved O2"})))),
    ("attributes", "hyphen in a name",
     lambda t: render(_csv(t).with_variable("temp", {"qc-flag": "1"}))),
    ("attributes", "carriage return in a file's value", lambda t: _comment_with(t, "a\r\nb")),
    ("attributes", "blank value in a file", lambda t: _comment_with(t, "  ")),
    ("coverage-content-type", "global",
     lambda t: render(_csv(t).with_attributes(coverage_content_type="physicalMeasurement"))),
    ("coverage-content-type", "on a variable", lambda t: render(_nc(t).with_variable(
        "temp", {"coverage_content_type": "physicalMeasurement"}))),
    ("subset-variables", "unknown", lambda t: render(_csv(t).with_attributes(
        subsetVariables="station,platform"))),
    ("dimension-order", "(station, time) beside (time, station)", _mixed_dimension_order),
    ("sort-columns", "unknown sort column", lambda t: render(_csv(t).with_tag(
        "sortFilesBySourceNames", "when"))),
    ("sort-columns", "text sorted column", lambda t: render(_csv(t).with_tag(
        "sortedColumnSourceName", "station"))),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "case"), [(r, c) for r, _, c in NEGATIVE], ids=[f"{r}-{d}" for r, d, _ in NEGATIVE]
)
def test_each_rule_refuses_its_negative_case(tmp_path: Path, rule: str, case: Case) -> None:
    violations = check_datasets_xml(case(tmp_path))
    assert {v.rule for v in violations} == {rule}, format_violations(violations)
    assert all(rule in str(v) and v.source for v in violations)


def test_every_rule_has_a_negative_case() -> None:
    assert {rule.id for rule in RULES} == {rule for rule, _, _ in NEGATIVE}
