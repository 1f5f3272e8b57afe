"""The example datasets.xml: one well-formed entry per ERDDAP dataset, regexes that never
match temporaries, variables read from harvested files."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import yaml

from pipeline.outputs.csv import CsvWriter
from pipeline.outputs.datasets_xml import erddap_datasets, render_datasets_xml
from pipeline.outputs.netcdf import NetcdfWriter
from pipeline.records import Window
from pipeline.settings import Settings, load_settings
from tests.unit.outputs.helpers import DAY, DEPTH, TEMP, ctd_meta, times

STREAMS = [
    {
        "name": "ctd",
        "kind": "scalardata",
        "location_code": "BACAX",
        "device_category_code": "CTD",
        "formats": ["netcdf", "csv"],
    },
    {"name": "raw", "kind": "rawdata", "device_code": "BPR-Folger-59", "formats": ["rawtext"]},
    {"name": "raw-default", "kind": "rawdata", "device_code": "BPR_889"},  # jsonlcsv
    {
        "name": "wav",
        "kind": "archivefile",
        "location_code": "SEVIP",
        "device_category_code": "HYDROPHONE",
        "file_extensions": ["wav", "mat"],
    },
    {"name": "cam", "kind": "archivefile", "device_code": "AXISQ6044PTZACCC8E334C53"},
    {
        "name": "tssd",
        "kind": "dataproduct",
        "location_code": "NC89",
        "device_category_code": "CTD",
        "data_product_code": "TSSD",
        "extension": "csv",
    },
]


def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {"onc": {"token": "t"}, "output": {"root": str(tmp_path / "out")}, "streams": STREAMS}
        )
    )
    return load_settings(path, environ={}, secrets_dirs=[])


def parse(text: str) -> ET.Element:
    return ET.fromstring(f"<erddapDatasets>{text}</erddapDatasets>")


def test_one_entry_per_erddap_dataset(tmp_path: Path) -> None:
    root = parse(render_datasets_xml(settings(tmp_path)))
    found = [(d.get("type"), d.get("datasetID")) for d in root.findall("dataset")]
    assert found == [
        ("EDDTableFromMultidimNcFiles", "onc_bacax_ctd"),
        ("EDDTableFromAsciiFiles", "onc_bacax_ctd_csv"),
        ("EDDTableFromJsonlCSVFiles", "onc_bpr889"),
        ("EDDTableFromFileNames", "onc_sevip_hydrophone"),
        ("EDDTableFromFileNames", "onc_axisq6044ptzaccc8e334c53"),
        ("EDDTableFromFileNames", "onc_nc89_ctd_tssd"),
    ]
    nc = root.find("dataset")
    assert nc is not None
    assert nc.findtext("fileDir") == f"{(tmp_path / 'out' / 'onc_bacax_ctd').resolve()}/"
    names = [v.findtext("sourceName") for v in nc.findall("dataVariable")]
    assert names == ["station", "latitude", "longitude", "depth", "time"]  # no file yet


def test_regexes_match_final_names_only(tmp_path: Path) -> None:
    regexes = {d.erddap_id: d.file_regex for d in erddap_datasets(settings(tmp_path))}

    def matches(erddap_id: str, name: str) -> bool:
        # ERDDAP matches the whole name (Java String.matches); these regexes are also Python.
        return re.fullmatch(regexes[erddap_id], name) is not None

    assert matches("onc_bacax_ctd", "onc_bacax_ctd_20261120.nc")
    assert not matches("onc_bacax_ctd", "onc_bacax_ctd_20261120.nc.tmp")
    assert matches("onc_bacax_ctd_csv", "onc_bacax_ctd_20261120.csv")
    assert not matches("onc_bacax_ctd_csv", "onc_bacax_ctd_20261120.csv.tmp")
    assert matches("onc_sevip_hydrophone", "ICLISTENHF1560_20261120T000000.000Z.wav")
    assert not matches("onc_sevip_hydrophone", "ICLISTENHF1560_20261120T000000.000Z.wav.tmp")
    assert matches("onc_axisq6044ptzaccc8e334c53", "AXIS_20261120T000000.000Z.mp4")
    assert not matches("onc_axisq6044ptzaccc8e334c53", "AXIS_20261120T000000.000Z.mp4.tmp")
    assert not matches("onc_axisq6044ptzaccc8e334c53", "manifest.tsv")
    # A download in progress (onc/names.py part_path) is hidden from every pattern.
    assert not matches("onc_axisq6044ptzaccc8e334c53", ".AXIS_20261120T000000.000Z.mp4.part")
    assert not matches("onc_sevip_hydrophone", ".ICLISTENHF1560_20261120T000000.000Z.wav.part")
    assert not matches("onc_nc89_ctd_tssd", "x.csv.tmp")


def test_variables_come_from_the_newest_harvested_files(tmp_path: Path) -> None:
    config = settings(tmp_path)
    meta = ctd_meta()
    window = Window(DAY, DAY + timedelta(hours=1))
    for writer in (NetcdfWriter({meta.dataset_id: meta}), CsvWriter({meta.dataset_id: meta})):
        w = writer.open_window(config.output.root, meta.dataset_id, window)
        w.add_scalar(TEMP, times(DAY, 2), [1.0, math.nan], [1, 9])
        w.add_scalar(DEPTH, times(DAY, 2), [985.0, 985.1], [1, 1])
        w.publish()
    root = parse(render_datasets_xml(config))
    nc, csv = root.findall("dataset")[:2]
    nc_vars = {v.findtext("sourceName"): v.findtext("dataType") for v in nc.findall("dataVariable")}
    assert nc_vars["Temperature"] == "double"
    assert nc_vars["Temperature_qc"] == "byte"
    assert nc_vars["depth_measured"] == "double"
    assert nc_vars["station"] == "String"
    csv_vars = [v.findtext("sourceName") for v in csv.findall("dataVariable")]
    assert csv_vars == [
        "time",
        "station",
        "latitude",
        "longitude",
        "depth",
        "Temperature",
        "Temperature_qc",
        "depth_measured",
        "depth_measured_qc",
    ]
    units = {
        v.findtext("sourceName"): v.findtext("addAttributes/att[@name='units']")
        for v in csv.findall("dataVariable")
    }
    assert units["Temperature"] == "degree_Celsius"
    assert csv.findtext("firstDataRow") == "3"


def test_what_a_stock_erddap_requires_is_in_every_entry(tmp_path: Path) -> None:
    root = parse(render_datasets_xml(settings(tmp_path)))
    for dataset in root.findall("dataset"):
        glob = {a.get("name"): a.text for a in dataset.findall("addAttributes/att")}
        for key in ("title", "summary", "institution", "infoUrl", "cdm_data_type"):
            assert glob.get(key), (dataset.get("datasetID"), key)
        for var in dataset.findall("dataVariable"):
            assert var.findtext("addAttributes/att[@name='ioos_category']"), var.findtext(
                "sourceName"
            )
        if dataset.get("type") == "EDDTableFromFileNames":
            # Not a tag EDDTableFromFileNames accepts; fileType is extracted from the name.
            assert dataset.find("updateEveryNMillis") is None
            file_type = next(
                v for v in dataset.findall("dataVariable") if v.findtext("sourceName") == "fileType"
            )
            regex = file_type.findtext("addAttributes/att[@name='extractRegex']") or ""
            assert re.fullmatch(regex, "ICLISTENHF1560_20261120T000000.000Z.wav")
            assert re.fullmatch(regex, "a.wav").group(1) == "wav"  # type: ignore[union-attr]
        if glob.get("cdm_data_type") == "TimeSeries":
            ids = [
                v.findtext("sourceName")
                for v in dataset.findall("dataVariable")
                if v.findtext("addAttributes/att[@name='cf_role']") == "timeseries_id"
            ]
            csv = dataset.get("type") == "EDDTableFromAsciiFiles"
            # The CSV names its cf_role column; NetCDF files carry cf_role themselves.
            assert ids == (["station"] if csv else [])
            assert glob["cdm_timeseries_variables"].split(",")[0] == "station"


def test_every_enabled_stream_has_an_entry_or_a_reason(tmp_path: Path) -> None:
    config = settings(tmp_path)
    text = render_datasets_xml(config)
    # The raw stream publishes rawtext only: no reader, said so by name.
    assert "<!-- stream raw: no ERDDAP dataset; its formats (rawtext) have no ERDDAP reader" in (
        text
    )
    parse(text)  # the comments keep the fragment well-formed
